"""Every `python bench/….py` and `python -m bortlab.…` command in the README and docs/ works as written.

The `python train.py` lines are test_documented_commands.py's and the `python pipeline.py` ones test_pipeline.py's;
this file takes the rest, read from the docs themselves (a new command is tested the day it is written), in file
order, from a copy of the checkout's bench/, docs/ and conf/ beside a link `shared` -> the shared data, so that
`../shared/data` and the benches' default paths resolve as from a clone. Each command is one of:

- **run** (the default): as written, exit 0, no traceback. These are the reports, which must rewrite the
  committed tables from the committed rows byte for byte; the resumable benches whose rows are all committed,
  which must find nothing to run and write nothing; and corpus building. After each, no .csv or .jsonl under
  docs/figures or bench/results may differ from before it, or be new.
- **refused**: as written, exit 2 with the one clear message the state of the checkout calls for (a report on
  rows never made; a bench that needs a package the `test` extra does not install).
- **parse**: hours of training or minutes of timing. The program runs under tests/apps/parse_only.py up to its
  first argument parse: the command line is accepted as written (placeholders filled), and nothing else runs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from doc_commands import REPO, documented_commands, expand

CASES = documented_commands(r"\bpython\s+(?=bench/|-m bortlab)")

NOT_COMMANDS = {   # pattern -> why it is not a command to run
    r"^-m bortlab\.report$": "a module named in the README's layout table",
    r"\.\.\.|…": "elided: the arguments are in the text around it",
}
REFUSED = {        # pattern -> the words of its exit-2 message
    r"^bench/bench_agora_controls\.py --report$": "run the bench first",       # the hard-label rows are not kept
    r"^bench/bench_agora_theta\.py --rank-on run --report": "run the bench first",   # not run yet (docs/agora.md)
}
PARSE = {          # pattern -> why it is not run here
    r"^-m bortlab\.export ": "needs a fine-tuned run (tests/test_export.py exports real ones)",
    r"^-m bortlab\.report \S": "reads a sweep made earlier (tests/test_report.py reports on real runs)",
    r"^-m bortlab\.agora\.torus ": "trains for ~40 s; tests/test_torus.py runs the same functions",
    r"^bench/bench_agora\.py ": "fine-tunes 3 seeds per arm after a labeller run",
    r"^bench/bench_agora_controls\.py( --seeds 0 1 2)?$": "hard labels: trains a labeller (~20-30 min) and 50 arms",
    r"^bench/bench_agora_theta\.py --rank-on run --": "not run yet: 33 jobs, about 1.5 hours",
    r"^bench/bench_(encoder|presets|roofline)\.py ": "times models for minutes",
    r"^bench/bench_precision\.py ": "times three fine-tuned runs",
    r"^bench/bench_fidelity\.py ": "a minute or more of MiniLM on every RTE and SST-2 dev row",
    r"^bench/bench_finetune\.py --task superglue/": "fine-tunes for an hour or more, with no --out to resume from",
    r"^bench/multirc_truncation\.py ": "scores a MultiRC run",
    r"^bench/bench_fptas\.py synthetic": "a minute of synthetic instances; tests/test_fptas.py checks the search",
}
NEEDS_OPTUNA = r"^bench/bench_fptas\.py (compare|real$)"    # NSGA-II: the bench extra, not the test extra
KEPT = ("docs/figures", "bench/results")                    # what a rerun must leave as it was


def _first(table: dict, cmd: str):
    return next((v for pattern, v in table.items() if re.search(pattern, cmd)), None)


def _fill(cmd: str) -> str:
    """A synopsis's optional flag as given, and each <placeholder> as a path that does not exist."""
    cmd = re.sub(r"\[(--[\w-]+)\]", r"\1", cmd)
    return re.sub(r"<[^<>]*>", "placeholder", cmd)


def _digests(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha1(f.read_bytes()).hexdigest()
            for d in KEPT for f in sorted((root / d).rglob("*")) if f.suffix in (".csv", ".jsonl")}


def test_the_docs_have_tool_commands_to_test():
    files = {f for f, _, _ in CASES}
    assert {"README.md", "docs/agora.md", "docs/benchmarks.md", "docs/fptas.md", "docs/tasks.md"} <= files
    assert len(CASES) > 40


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, data_root):
    """bench/, docs/ and conf/ copied (the benches write their tables under their own checkout), beside a link
    `shared` -> the shared data."""
    root = tmp_path_factory.mktemp("tools")
    (root / "shared").symlink_to(data_root.parent)
    repo = root / "bortlab"
    for d in ("bench", "docs", "conf"):
        shutil.copytree(REPO / d, repo / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("README.md", "train.py", "pipeline.py"):
        shutil.copy2(REPO / f, repo / f)
    return repo


@pytest.mark.parametrize("where,line,cmd", CASES, ids=[f"{f}:{n}" for f, n, _ in CASES])
def test_documented_tool_runs_as_written(where, line, cmd, checkout, python):
    if why := _first(NOT_COMMANDS, cmd):
        pytest.skip(why)
    cmd = expand(cmd, REPO / where)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "BORTLAB_DATA": str(checkout.parent / "shared" / "data")}      # docs: export BORTLAB_DATA=…/shared/data
    if _first(PARSE, cmd):
        p = python(REPO / "tests" / "apps" / "parse_only.py", *shlex.split(_fill(cmd)), cwd=checkout, env=env,
                   timeout=300)
        assert p.returncode == 0 and "parse_only: accepted" in p.stdout, (p.stdout + p.stderr)[-3000:]
        return
    assert "<" not in cmd and "$" not in cmd.replace("${minilm_path:}", ""), f"unfilled placeholder in {cmd!r}"
    words = _first(REFUSED, cmd)
    if re.search(NEEDS_OPTUNA, cmd) and importlib.util.find_spec("optuna") is None:
        words = "optuna"
    before = _digests(checkout)
    p = python(*shlex.split(cmd), cwd=checkout, env=env, timeout=600)
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out[-3000:]
    assert p.returncode == (2 if words else 0), f"exit {p.returncode}\n{out[-3000:]}"
    if words:
        assert words in out, out[-3000:]
    after = _digests(checkout)
    changed = sorted(k for k in after if before.get(k) != after[k])
    assert not changed, f"{cmd!r} changed or added {changed}: a rerun of finished work must reproduce it exactly"
