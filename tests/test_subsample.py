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
    (dict(tune=10), 100, "no data.train_subset is set"),
    (dict(subset=10, tune=1), 100, "data.tune_split=1 must be >= 2"),
    (dict(subset=50, tune_skip=30, tune=30), 100, "is more than the 100 rows"),
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


def test_tune_split_is_balanced_and_disjoint_from_s_and_agoras_holdout(tokenizer, data_root):
    """data.tune_split: the run's dev is D, drawn after H from the spare; the official dev split is not read."""
    from bortlab.data.datamodule import SPARE, TUNE, TaskDataModule

    task = get_task("glue/rte")
    plain = dict(reserve=400, reserve_seed=0, use="reserve", subset=60, subset_seed=1)
    dm = TaskDataModule(task, tokenizer, root=str(data_root / "glue"), max_length=32,
                        selection=Selection(**plain, tune=50, tune_skip=40))
    assert dm.dev_splits == (TUNE,)
    dm.setup("validate")                              # the validate stage alone still draws D from train
    assert "dev" not in dm.rows and len(dm.rows[TUNE]) == 50
    file_rows = _tsv(data_root / "glue" / "RTE" / "train.tsv")
    gold = {r["index"]: r["label"] for r in file_rows}
    assert Counter(gold[str(r["idx"])] for r in dm.rows[TUNE]) == {"entailment": 25, "not_entailment": 25}
    dm.take_spare("h", 40)                            # what agora.holdout_size=40 takes
    s, h, d = ({r["idx"] for r in dm.rows[k]} for k in ("train", "h", TUNE))
    assert len(s) == 60 and len(h) == 40 and not (s & h or s & d or h & d)
    assert not d & {r["idx"] for r in dm.rows[SPARE]} and len(dm.rows[SPARE]) == 400 - 60 - 40 - 50
    # H is the same rows with or without a tune split: arms that tune and arms that do not read the same H
    ref = TaskDataModule(task, tokenizer, root=str(data_root / "glue"), max_length=32, selection=Selection(**plain))
    ref.setup("fit")
    ref.take_spare("h", 40)
    assert {r["idx"] for r in ref.rows["h"]} == h and ref.dev_splits == ("dev",)
    # and D is what a second balanced draw after H would be
    ref.take_spare("d", 50)
    assert {r["idx"] for r in ref.rows["d"]} == d


def test_train_py_scores_the_tune_split(train, tmp_path):
    train("arch=tiny", "task=glue/rte", "data.reserve=400", "data.use=reserve", "data.train_subset=60",
          "data.tune_split=40", "data.tune_skip=20", "trainer.max_steps=2", "data.max_length=32",
          "logger=none", f"hydra.run.dir={tmp_path}/run")
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dev_split"] == "tune" and metrics["train_rows"] == 60 and "val/accuracy" in metrics["dev"]


def test_train_py_refuses_a_bad_combination_with_exit_2(train):
    p = train("arch=tiny", "task=glue/rte", "data.use=reserve", "trainer.max_steps=1", expect=2)
    assert "data.use=reserve needs data.reserve" in p.stderr + p.stdout
