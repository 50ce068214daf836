"""GLUE readers against the real release files in ../shared/data (official row counts), format-exact small
files for the tasks missing there (MNLI, QQP), the `datasets` fallback through a real local dataset, and
the leaderboard submission format."""
from __future__ import annotations

import csv
import dataclasses
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bortlab.data import get_task, read_split
from bortlab.data.io import DataError
from bortlab.data.submission import submission_filename, write_submission


# official sizes: GLUE release (see ../shared/data/SOURCES.md; MNLI/QQP/QNLI train as published by GLUE)
OFFICIAL = {
    "glue/cola": {"train": 8551, "dev": 1043, "test": 1063},
    "glue/sst2": {"train": 67349, "dev": 872, "test": 1821},
    "glue/mrpc": {"train": 3668, "dev": 408, "test": 1725},
    "glue/stsb": {"train": 5749, "dev": 1500, "test": 1379},
    "glue/qqp": {"train": 363846, "dev": 40430, "test": 390965},
    "glue/mnli": {"train": 392702, "dev_matched": 9815, "dev_mismatched": 9832,
                  "test_matched": 9796, "test_mismatched": 9847},
    "glue/qnli": {"train": 104743, "dev": 5463, "test": 5463},
    "glue/rte": {"train": 2490, "dev": 277, "test": 3000},
    "glue/wnli": {"train": 635, "dev": 71, "test": 146},
    "glue/ax": {"test": 1104},
}
CASES = [(t, s) for t, sizes in OFFICIAL.items() for s in sizes]


@pytest.fixture(scope="module")
def glue(data_root) -> Path:
    """The real GLUE release copies (data_root skips the test when they are absent)."""
    return data_root / "glue"


def _file(glue: Path, task_name: str, split: str) -> Path:
    t = get_task(task_name)
    name = "diagnostic.tsv" if t.name == "glue/ax" else f"{split}.tsv"
    return glue / t.dirname / name


def _present(glue: Path, task_name: str, split: str) -> Path:
    path = _file(glue, task_name, split)
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared data (see SOURCES.md)")
    return path


def _raw_rows(path: Path, header: bool = True) -> list[list[str]]:
    """The file split on tabs with nothing but the stdlib: an independent view of its rows."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    return [ln.split("\t") for ln in (lines[1:] if header else lines) if ln.strip()]


# ---- real files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("task_name,split", CASES)
def test_row_counts_match_official_sizes(task_name, split, glue):
    _present(glue, task_name, split)
    assert len(read_split(task_name, split, glue)) == OFFICIAL[task_name][split]


@pytest.mark.parametrize("task_name", [t for t in OFFICIAL if t != "glue/ax"])
def test_labels_are_the_task_label_set(task_name, glue):
    t = get_task(task_name)
    for split in t.splits:
        if split in t.test_splits or not _file(glue, task_name, split).is_file():
            continue
        rows = read_split(t, split, glue)
        if t.is_regression:
            assert all(isinstance(r["label"], float) and 0.0 <= r["label"] <= 5.0 for r in rows)
            assert [t.target(r) for r in rows[:3]] == [r["label"] for r in rows[:3]]
        else:
            assert {r["label"] for r in rows} == set(t.labels)
            assert {t.target(r) for r in rows} == set(range(len(t.labels)))
            assert all(t.labels[t.target(r)] == r["label"] for r in rows)


@pytest.mark.parametrize("task_name", list(OFFICIAL))
def test_test_rows_carry_the_file_index_and_no_label(task_name, glue):
    t = get_task(task_name)
    for split in t.test_splits:
        path = _present(glue, task_name, split)
        rows = read_split(t, split, glue)
        assert [r["idx"] for r in rows] == [int(r[0]) for r in _raw_rows(path)]
        assert all(r["label"] is None and t.target(r) is None for r in rows)
        pair = t.inputs(rows[0])
        assert len(pair) == 1 and pair[0][0] and (pair[0][1] is None) == (task_name in ("glue/cola", "glue/sst2"))


def test_text_fields_follow_the_header_names(glue):
    # MRPC names its columns "#1 String"/"#2 String" and starts with a BOM; CoLA train has no header
    raw = _raw_rows(glue / "MRPC" / "dev.tsv")
    rows = read_split("glue/mrpc", "dev", glue)
    assert [(r["sentence1"], r["sentence2"], r["label"]) for r in rows] == [(x[3], x[4], x[0]) for x in raw]
    raw = _raw_rows(glue / "CoLA" / "train.tsv", header=False)
    rows = read_split("glue/cola", "train", glue)
    assert [(r["sentence"], r["label"]) for r in rows] == [(x[3], x[1]) for x in raw]
    assert [r["idx"] for r in rows] == list(range(len(raw)))
    raw = _raw_rows(glue / "STS-B" / "dev.tsv")
    assert [r["label"] for r in read_split("glue/stsb", "dev", glue)] == [float(x[-1]) for x in raw]


def test_both_root_layouts_and_env(monkeypatch, glue):
    a = read_split("glue/rte", "dev", glue)
    b = read_split("glue/rte", "dev", glue.parent)
    monkeypatch.setenv("BORTLAB_DATA", str(glue.parent))
    c = read_split("glue/rte", "dev")
    assert a == b == c and len(a) == 277


def test_missing_split_file_names_the_expected_path(glue):
    with pytest.raises(DataError) as e:
        read_split("glue/qnli", "train", glue)       # QNLI train is absent from the shared data
    assert str(glue / "QNLI" / "train.tsv") in str(e.value)


# ---- malformed and missing files -------------------------------------------------------------------
def _small_rte(tmp_path: Path) -> Path:
    d = tmp_path / "glue" / "RTE"
    d.mkdir(parents=True)
    lines = ["index\tsentence1\tsentence2\tlabel"] + [f"{i}\tPremise {i}.\tHypothesis {i}.\t"
                                                       f"{'entailment' if i % 2 else 'not_entailment'}" for i in range(6)]
    (d / "dev.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d / "dev.tsv"


@pytest.mark.parametrize("bad,expect", [
    ("3\tPremise 3.", "at least 4 tab-separated"),       # truncated after the first sentence
    ("3\tPremise 3.\tHypothesis 3.\tmaybe", "'maybe' is not one of"),   # a label outside the task's set
])
def test_malformed_row_raises_with_file_and_line(tmp_path, bad, expect):
    path = _small_rte(tmp_path)
    lines = path.read_text().splitlines()
    lines[4] = bad
    # a blank line before it: the reported line must be the physical line (6), not the row number
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")
    for root in (tmp_path, tmp_path / "glue"):
        with pytest.raises(DataError) as e:
            read_split("glue/rte", "dev", root)
        assert f"{path}:6:" in str(e.value) and expect in str(e.value)


def test_missing_file_in_existing_task_dir(tmp_path):
    _small_rte(tmp_path)
    with pytest.raises(DataError) as e:
        read_split("glue/rte", "train", tmp_path)
    assert str(tmp_path / "glue" / "RTE" / "train.tsv") in str(e.value)


# ---- format-exact small files for MNLI and QQP -----------------------------------------------------
_MNLI_HEAD = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
              "sentence2_parse sentence1 sentence2").split()


def _mnli_line(i: int, split: str, gold: str) -> str:
    s1, s2 = f"The cat {i} sat .", f"A cat {i} rested ."
    cols = [str(i), str(1000 + i), f"{1000 + i}{gold[0]}", "fiction", "( ( The cat ) sat )", "( A ( cat rested ) )",
            "(ROOT (S (NP (DT The) (NN cat)) (VP (VBD sat))))", "(ROOT (S (NP (DT A) (NN cat)) (VP (VBD rested))))",
            s1, s2]
    if split == "train":
        cols += [gold, gold]
    elif split.startswith("dev"):
        cols += [gold, gold, "neutral", gold, gold, gold]
    return "\t".join(cols)


def test_mnli_release_format(tmp_path):
    d = tmp_path / "MNLI"
    d.mkdir()
    golds = ["entailment", "neutral", "contradiction"]
    sizes = {"train": 7, "dev_matched": 5, "dev_mismatched": 4, "test_matched": 3, "test_mismatched": 2}
    for split, n in sizes.items():
        head = _MNLI_HEAD + (["label1", "gold_label"] if split == "train" else
                             [f"label{k}" for k in range(1, 6)] + ["gold_label"] if split.startswith("dev") else [])
        lines = ["\t".join(head)] + [_mnli_line(10 + i, split, golds[i % 3]) for i in range(n)]
        (d / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = get_task("glue/mnli")
    for split, n in sizes.items():
        rows = read_split(t, split, tmp_path)
        assert len(rows) == n
        if split in t.test_splits:
            assert [r["idx"] for r in rows] == [10 + i for i in range(n)] and {r["label"] for r in rows} == {None}
        else:
            assert [r["label"] for r in rows] == [golds[i % 3] for i in range(n)]
            assert [t.target(r) for r in rows] == [t.labels.index(golds[i % 3]) for i in range(n)]
        assert t.inputs(rows[0]) == [("The cat 10 sat .", "A cat 10 rested .")]


def test_qqp_release_format(tmp_path):
    d = tmp_path / "glue" / "QQP"
    d.mkdir(parents=True)
    train = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
             "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough?\t0",
             "402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1",
             "360472\t364011\t490273\tWhat causes stool color to change?\tWhat can cause stool to come out as \"pebbles\"?\t0"]
    test = ["id\tquestion1\tquestion2", "0\tWould the idea of Trump work?\tHow are nuclear weapons made?",
            "1\tWhat is the best way to learn C?\tHow do I learn C quickly?"]
    (d / "train.tsv").write_text("\n".join(train) + "\n")
    (d / "dev.tsv").write_text("\n".join(train[:3]) + "\n")
    (d / "test.tsv").write_text("\n".join(test) + "\n")
    t = get_task("glue/qqp")
    rows = read_split(t, "train", tmp_path)
    assert [r["label"] for r in rows] == ["0", "1", "0"] and [t.target(r) for r in rows] == [0, 1, 0]
    assert rows[2]["question2"].endswith('"pebbles"?') and len(read_split(t, "dev", tmp_path)) == 2
    rows = read_split(t, "test", tmp_path)
    assert [r["idx"] for r in rows] == [0, 1] and t.inputs(rows[1]) == [(test[2].split("\t")[1], test[2].split("\t")[2])]


# ---- the datasets fallback, for real ---------------------------------------------------------------
def _hub_like_repo(root: Path, config: str, splits: dict, features) -> Path:
    """A local dataset laid out like nyu-mll/glue on the hub: <config>/<split>-00000-of-00001.parquet plus
    a README whose YAML declares the config; datasets.load_dataset(path, config) reads it offline."""
    from datasets import Dataset

    yaml = [f"- config_name: {config}", "  data_files:"]
    for split, cols in splits.items():
        (root / config).mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(cols, features=features).to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
        yaml += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("---\nconfigs:\n" + "\n".join(yaml) + "\n---\n")
    return root


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    return tmp_path


def test_datasets_fallback_maps_hf_ids_to_label_strings(hf_cache):
    from datasets import ClassLabel, Features, Value

    hf_names = ["entailment", "neutral", "contradiction"]          # nyu-mll/glue mnli ClassLabel order
    feats = Features({"premise": Value("string"), "hypothesis": Value("string"),
                      "label": ClassLabel(names=hf_names), "idx": Value("int32")})
    rng = random.Random(0)
    ids = [rng.randrange(3) for _ in range(9)]
    dev = {"premise": [f"p{i}" for i in range(9)], "hypothesis": [f"h{i}" for i in range(9)], "label": ids,
           "idx": list(range(9))}
    test = {"premise": ["q0", "q1"], "hypothesis": ["r0", "r1"], "label": [-1, -1], "idx": [0, 1]}
    repo = _hub_like_repo(hf_cache / "glue-repo", "mnli", {"validation_mismatched": dev, "test_matched": test}, feats)
    t = dataclasses.replace(get_task("glue/mnli"), hf_dataset=(str(repo), "mnli"))
    empty = hf_cache / "no-local-copy"
    rows = read_split(t, "dev_mismatched", empty)
    assert [r["label"] for r in rows] == [feats["label"].int2str(i) for i in ids]
    assert [t.target(r) for r in rows] == ids and t.inputs(rows[3]) == [("p3", "h3")]
    rows = read_split(t, "test_matched", empty)
    assert [(r["idx"], r["label"]) for r in rows] == [(0, None), (1, None)]


def test_datasets_fallback_equals_local_files(hf_cache, glue):
    """The real RTE dev set served through datasets gives the rows of the file, as the TSV reader does."""
    from datasets import ClassLabel, Features, Value

    raw = _raw_rows(glue / "RTE" / "dev.tsv")
    names = ["entailment", "not_entailment"]                      # nyu-mll/glue rte ClassLabel order
    feats = Features({"sentence1": Value("string"), "sentence2": Value("string"),
                      "label": ClassLabel(names=names), "idx": Value("int32")})
    cols = {"sentence1": [x[1] for x in raw], "sentence2": [x[2] for x in raw],
            "label": [names.index(x[3]) for x in raw], "idx": [int(x[0]) for x in raw]}
    repo = _hub_like_repo(hf_cache / "glue-repo", "rte", {"validation": cols}, feats)
    t = dataclasses.replace(get_task("glue/rte"), hf_dataset=(str(repo), "rte"))
    # against the file read with the stdlib (not against bortlab's TSV reader: two bortlab paths could agree
    # on the same mistake)
    expected = [{"idx": int(x[0]), "sentence1": x[1], "sentence2": x[2], "label": x[3]} for x in raw]
    assert read_split(t, "dev", hf_cache / "no-local-copy") == expected
    assert read_split("glue/rte", "dev", glue) == expected


def test_no_local_files_and_no_hub_names_the_expected_path(tmp_path):
    t = dataclasses.replace(get_task("glue/rte"), hf_dataset=(str(tmp_path / "nowhere"), "rte"))
    with pytest.raises(DataError) as e:
        read_split(t, "dev", tmp_path)
    assert str(tmp_path / "glue" / "RTE" / "dev.tsv") in str(e.value)


# ---- submissions -----------------------------------------------------------------------------------
def test_rte_submission_round_trip(tmp_path, glue):
    t = get_task("glue/rte")
    rows = read_split(t, "test", glue)
    preds = [random.Random(1).randrange(2) for _ in rows]
    path = write_submission(t, "test", rows, preds, tmp_path / "sub")
    assert path.name == "RTE.tsv" and not [p for p in path.parent.iterdir() if p != path]   # no temp file left
    with open(path, newline="") as f:
        got = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert got[0] == ["index", "prediction"] and len(got) == 3001
    assert {r[1] for r in got[1:]} <= {"entailment", "not_entailment"}
    assert [int(r[0]) for r in got[1:]] == [int(x[0]) for x in _raw_rows(glue / "RTE" / "test.tsv")]
    assert [r[1] for r in got[1:]] == [t.labels[p] for p in preds]


def test_submission_formats_per_task(tmp_path):
    rows = [{"idx": 7, "label": None}, {"idx": 9, "label": None}, {"idx": 11, "label": None}]
    path = write_submission("glue/stsb", "test", rows, [-0.4, 2.34567, 5.2], tmp_path)
    assert path.read_text().splitlines() == ["index\tprediction", "7\t0.000", "9\t2.346", "11\t5.000"]
    path = write_submission("glue/cola", "test", rows, [1, 0, 1], tmp_path)
    assert path.name == "CoLA.tsv" and path.read_text().splitlines()[1:] == ["7\t1", "9\t0", "11\t1"]
    assert [submission_filename("glue/mnli", s) for s in get_task("glue/mnli").test_splits] == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    path = write_submission("glue/mnli", "test_mismatched", rows, [0, 1, 2], tmp_path)
    assert path.name == "MNLI-mm.tsv" and path.read_text().splitlines()[1:] == [
        "7\tentailment", "9\tneutral", "11\tcontradiction"]
    assert write_submission("glue/ax", "test", rows, [2, 2, 0], tmp_path).name == "AX.tsv"
    with pytest.raises(ValueError, match="2 predictions for 3 rows"):
        write_submission("glue/rte", "test", rows, [0, 1], tmp_path)
    with pytest.raises(ValueError, match="not a label index"):
        write_submission("glue/rte", "test", rows, [0, 1, 2], tmp_path)


def test_importing_glue_first_keeps_the_other_benchmarks_visible():
    # a fresh interpreter: the registry must load every benchmark module even when glue registered first
    code = ("import importlib.util, bortlab.data.glue\nfrom bortlab.data.tasks import all_tasks\n"
            "names = all_tasks()\nfor m in ('superglue', 'race'):\n"
            "    if importlib.util.find_spec('bortlab.data.' + m):\n"
            "        assert any(n.startswith(m + '/') for n in names), m\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
