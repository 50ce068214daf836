"""tests/zygote.py runs a command as a fresh interpreter would (checked against a real one), and it is really used:
when it silently declines, every documented command pays ~15 s of imports again and nothing else says so."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import json, os, sys
    print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "var": os.environ.get("ZYGOTE_PROBE"),
                      "main": __name__, "path0": sys.path[0]}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
""")


def test_a_command_runs_as_in_a_fresh_interpreter(tmp_path, python):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZYGOTE_PROBE": "x y"}
    ours = python(script, "3", "a b", cwd=tmp_path, env=env, timeout=120)
    real = subprocess.run([sys.executable, str(script), "3", "a b"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr) == \
        (3, real.stdout, "to stderr\n")


def test_the_zygote_forks_instead_of_declining(tmp_path, python):
    """A child of the zygote starts with torch and lightning imported; a declined command would not."""
    if os.environ.get("BORTLAB_TEST_ZYGOTE", "1") == "0":
        pytest.skip("BORTLAB_TEST_ZYGOTE=0: every command is a real subprocess")
    script = tmp_path / "preloaded.py"
    script.write_text("import sys\nprint(sorted(m for m in ('torch', 'lightning.pytorch') if m in sys.modules))\n")
    p = python(script, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert p.stdout.strip() == "['lightning.pytorch', 'torch']", (
        "the zygote declined the command (an import-time variable differs, or its imports started a thread): "
        + p.stdout + p.stderr[-2000:])
