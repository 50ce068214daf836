""".ci/run's first step: under CI, missing shared data is exit 2 with one paragraph (naming the path and the fix),
not a green run in which every data test skipped; with the data there, or without CI, it goes on to lint and
the tests. Those later steps run here against a stub run.sh in a copy of the script, never the real suite."""
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "run"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BORTLAB_DATA")}
    return {**env, **extra}


def _run(script, env, timeout=60):
    # its own process group: if the early exit ever broke, the lint and test suite it started are killed too
    p = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"{script} did not stop at the data check within {timeout} s: it went on to lint and the tests")
    return p.returncode, out, err


def test_ci_without_the_data_exits_2_with_one_paragraph(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = _run(SCRIPT, _env(CI="true", BORTLAB_DATA=str(empty)))
    assert rc == 2, (out, err)
    assert str(empty / "glue" / "RTE" / "train.tsv") in err            # the missing path
    assert "../shared/data" in err and "BORTLAB_DATA=" in err           # the fix
    assert len(err.strip().splitlines()) == 1 and not out.strip()      # one paragraph, nothing ran before it
    assert "Traceback" not in err


def _copy_with_stub(tmp_path):
    """A checkout-shaped copy: the real .ci/run next to a run.sh that only records how it was called."""
    root = tmp_path / "checkout"
    (root / ".ci").mkdir(parents=True)
    shutil.copy(SCRIPT, root / ".ci" / "run")
    (root / "run.sh").write_text('#!/usr/bin/env bash\necho "$@" >> "$(dirname "$0")/calls.txt"\n')
    (root / "run.sh").chmod(0o755)
    return root


@pytest.mark.parametrize("ci", ["true", ""])
def test_with_the_data_or_without_ci_it_goes_on_to_lint_and_test(tmp_path, ci):
    root = _copy_with_stub(tmp_path)
    data = tmp_path / "data"
    if ci:                                                              # data present: the check passes
        (data / "glue" / "RTE").mkdir(parents=True)
        (data / "glue" / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    else:                                                               # no CI: no check, even without data
        data.mkdir()
    rc, out, err = _run(root / ".ci" / "run", _env(CI=ci, BORTLAB_DATA=str(data)))
    assert rc == 0, (out, err)
    assert [c.split()[0] for c in (root / "calls.txt").read_text().splitlines()] == ["lint", "test"]
    assert "shared GLUE/SuperGLUE data is missing" not in err


def test_ci_with_the_data_found_beside_the_checkout(tmp_path):
    """No BORTLAB_DATA: ../shared/data next to the checkout is the data, as on the CI machine."""
    root = _copy_with_stub(tmp_path)
    (tmp_path / "shared" / "data" / "glue" / "RTE").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "glue" / "RTE" / "train.tsv").write_text("index\n")
    rc, out, err = _run(root / ".ci" / "run", _env(CI="true"))
    assert rc == 0, (out, err)
    assert [c.split()[0] for c in (root / "calls.txt").read_text().splitlines()] == ["lint", "test"]
    shutil.rmtree(tmp_path / "shared")                                 # and without it: exit 2 again
    rc, out, err = _run(root / ".ci" / "run", _env(CI="true"))
    assert rc == 2 and "BORTLAB_DATA=<unset>, and no ../shared/data beside the checkout" in err, (out, err)
