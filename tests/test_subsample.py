"""data.reserve / data.use / data.train_subset: which training rows a run uses (bortlab.data.subsample), checked
against the release files read here with the csv module, and the bad combinations (exit 2 from train.py)."""
import csv
from collections import Counter

import pytest

from bortlab.config import SetupError
from bortlab.data.subsample import Selection, balanced_take, share
from bortlab.data.tasks import get_task


def _tsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def sst2(data_root):
    rows = _tsv(data_root / "glue" / "SST-2" / "train.tsv")
    assert len(rows) == 67349
    return rows


def test_reserve_rest_and_balanced_nested_draws_on_sst2(sst2):
    task = get_task("glue/sst2")
    rest, _ = Selection(reserve=20000, reserve_seed=0, use="rest").split(task, sst2)
    reserve, _ = Selection(reserve=20000, reserve_seed=0, use="reserve").split(task, sst2)
    assert len(rest) == 47349 and len(reserve) == 20000
    assert not set(rest) & set(reserve) and len(set(rest) | set(reserve)) == len(sst2)
    assert Selection(reserve=20000, reserve_seed=0, use="rest").split(task, sst2)[0] == rest     # seeded
    assert Selection(reserve=20000, reserve_seed=1, use="rest").split(task, sst2)[0] != rest

    def student(n, seed):
        return Selection(reserve=20000, reserve_seed=0, use="reserve", subset=n, subset_seed=seed).split(task, sst2)

    s, spare = student(500, 3)
    assert Counter(sst2[i]["label"] for i in s) == {"0": 250, "1": 250}          # counted in the file
    assert set(s) <= set(reserve) and sorted(set(s) | set(spare)) == sorted(reserve) and not set(s) & set(spare)
    h, _ = balanced_take(spare, [sst2[i]["label"] for i in spare], 500)        # Agora's H: next from the spare
    assert Counter(sst2[i]["label"] for i in h) == {"0": 250, "1": 250} and not set(h) & set(s)
    assert student(1000, 3)[0] == sorted(s + h)           # arm A1 (train_subset=1000) = S ∪ H, the same rows
    assert student(500, 4)[0] != s


def test_share_water_fills_a_short_class():
    assert share(10, {"a": 2, "b": 50, "c": 50}) == {"a": 2, "b": 4, "c": 4}
    assert share(7, {0: 10, 1: 10}) == {0: 4, 1: 3}
    assert share(100, {0: 3, 1: 4}) == {0: 3, 1: 4}
    taken, rest = balanced_take([10, 11, 12, 13, 14, 15], ["x", "y", "x", "x", "y", "x"], 4)
    assert taken == [10, 11, 12, 14] and rest == [13, 15]


@pytest.mark.parametrize("sel, n, msg", [
    (dict(use="rest"), 100, "needs data.reserve"),
    (dict(reserve=10), 100, "holds nothing back"),
    (dict(reserve=10, use="everything"), 100, "is not one of all, rest, reserve"),
    (dict(reserve=100, use="rest"), 100, "leaves nothing"),
    (dict(reserve=10, use="reserve", subset=20), 100, "more than the 10 rows"),
    (dict(subset=1), 100, "must be >= 2"),
])
def test_bad_combinations_name_the_fix(sel, n, msg):
    rows = [{"sentence": f"s{i}", "label": str(i % 2)} for i in range(n)]
    with pytest.raises(SetupError, match=msg):
        Selection(**sel).split(get_task("glue/sst2"), rows)


def test_datamodule_trains_on_the_subset_and_keeps_the_spare(tokenizer, data_root):
    from bortlab.data.datamodule import SPARE, TaskDataModule

    task = get_task("glue/rte")
    sel = Selection(reserve=400, reserve_seed=0, use="reserve", subset=60, subset_seed=1)
    dm = TaskDataModule(task, tokenizer, root=str(data_root / "glue"), max_length=32, selection=sel)
    dm.setup("fit")
    file_rows = _tsv(data_root / "glue" / "RTE" / "train.tsv")
    labels = {r["sentence1"] + r["sentence2"]: r["label"] for r in file_rows}
    train = dm.rows["train"]
    assert Counter(labels[r["sentence1"] + r["sentence2"]] for r in train) == {"entailment": 30, "not_entailment": 30}
    assert len(dm.rows[SPARE]) == 340 and [f["index"] for f in dm.features["train"]] == list(range(60))
    assert [f["input_ids"] for f in dm.features["train"]] == [f["input_ids"] for f in dm.encode_rows(train)]
    dm.take_spare("h", 40)
    assert Counter(task.target(r) for r in dm.rows["h"]) == {0: 20, 1: 20} and len(dm.rows[SPARE]) == 300
    ids = {r["idx"] for r in train}
    assert not ids & {r["idx"] for r in dm.rows["h"]} and not ids & {r["idx"] for r in dm.rows[SPARE]}
    with pytest.raises(SetupError, match="only 300 are left"):
        dm.take_spare("more", 301)


def test_train_py_refuses_a_bad_combination_with_exit_2(train):
    p = train("arch=tiny", "task=glue/rte", "data.use=reserve", "trainer.max_steps=1", expect=2)
    assert "data.use=reserve needs data.reserve" in p.stderr + p.stdout
