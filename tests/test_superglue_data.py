"""SuperGLUE readers against the official sizes of the real release files, format-exact small files for what
is missing here (BoolQ train, ReCoRD), input encodings, bad input, the HF fallback and the submission files."""
import json
import re
import sys
import types
from pathlib import Path

import pytest

from bortlab.data import superglue  # noqa: F401  (registers the tasks)
from bortlab.data.io import DataError
from bortlab.data.superglue_submission import write_superglue_submission
from bortlab.data.tasks import get_task, read_split

# official sizes (SuperGLUE paper / SOURCES.md); "-" = not shipped here
OFFICIAL = {
    "boolq": {"dev": 3270, "test": 3245},
    "cb": {"train": 250, "dev": 56, "test": 250},
    "copa": {"train": 400, "dev": 100, "test": 500},
    "multirc": {"train": 27243, "dev": 4848, "test": 9693},
    "rte": {"train": 2490, "dev": 277, "test": 3000},
    "wic": {"train": 5428, "dev": 638, "test": 1400},
    "wsc": {"train": 554, "dev": 104, "test": 146},
    "axb": {"test": 1104},
    "axg": {"test": 356},
}
CASES = [(t, s, n) for t, splits in OFFICIAL.items() for s, n in splits.items()]


@pytest.fixture(scope="module")
def real(superglue_root):
    """rows(task, split) of the real SuperGLUE release files, read once per module; skips without them."""
    cache = {}

    def rows(task, split):
        if (task, split) not in cache:
            cache[task, split] = read_split(f"superglue/{task}", split, root=superglue_root)
        return cache[task, split]
    return rows


@pytest.mark.parametrize("task, split, n", CASES, ids=[f"{t}-{s}" for t, s, _ in CASES])
def test_official_row_counts(real, task, split, n):
    rows = real(task, split)
    assert len(rows) == n
    t = get_task(f"superglue/{task}")
    labelled = split != "test" or task in ("axb", "axg")      # the release ships AX-b/AX-g labels
    assert all((t.target(r) is not None) == labelled for r in rows)
    for r in rows[:50]:
        pairs = t.inputs(r)
        assert len(pairs) == (t.num_choices or 1)


@pytest.mark.parametrize("split, passages, questions", [("train", 456, 5131), ("dev", 83, 953), ("test", 166, 1820)])
def test_multirc_passages_and_questions(real, split, passages, questions):
    rows, t = real("multirc", split), get_task("superglue/multirc")
    assert len({r["passage_idx"] for r in rows}) == passages
    assert len({t.group(r) for r in rows}) == questions
    assert len({(r["passage_idx"], r["question_idx"], r["answer_idx"]) for r in rows}) == len(rows)


def test_axg_pairs_differ_only_in_pronoun_gender(real):
    rows = real("axg", "test")
    pairs = {}
    for r in rows:
        pairs.setdefault(r["pair"], []).append(r)
    assert len(pairs) == 178 and all(len(p) == 2 for p in pairs.values())
    male, female = {"he", "his", "him", "himself"}, {"she", "her", "hers", "herself"}
    for a, b in pairs.values():
        assert a["hypothesis"] == b["hypothesis"] and a["label"] == b["label"]
        wa, wb = a["premise"].split(), b["premise"].split()
        diff = [(x.strip(".,").lower(), y.strip(".,").lower()) for x, y in zip(wa, wb) if x != y]
        assert len(wa) == len(wb) and diff and all(x in male and y in female for x, y in diff)


def test_copa_and_wic_inputs_on_real_rows(real):
    copa = get_task("superglue/copa")
    r = real("copa", "dev")[0]          # {"premise": "The man turned on the faucet.", ..., "question": "effect"}
    assert copa.inputs(r) == [("The man turned on the faucet. What happened as a result?", "The toilet filled with water."),
                              ("The man turned on the faucet. What happened as a result?", "Water flowed from the spout.")]
    assert copa.target(r) == 1
    wic = get_task("superglue/wic")
    assert wic.inputs(real("wic", "dev")[0]) == [
        ("An emerging professional *class*.",
         "Apologizing for losing your temper, even though you were badly provoked, showed real *class*.")]
    for r in real("wic", "train"):
        a, b = wic.inputs(r)[0]
        assert a == r["sentence1"][: r["start1"]] + "*" + r["sentence1"][r["start1"]: r["end1"]] + "*" + r["sentence1"][r["end1"]:]
        assert b.replace("*", "") == r["sentence2"].replace("*", "")


def test_wsc_marks_both_spans(real):
    wsc = get_task("superglue/wsc")
    r = real("wsc", "dev")[0]
    text = wsc.inputs(r)[0][0]
    assert "Still, *anyone* who knew" in text and text.endswith("away from #him# .")

    def squash(s):
        return re.sub(r"[^0-9a-z]", "", s.lower())
    for split in ("train", "dev", "test"):
        for r in real("wsc", split):
            (text, b), = wsc.inputs(r)
            assert b is None
            star, hash_ = re.findall(r"\*([^*]*)\*", text), re.findall(r"#([^#]*)#", text)
            assert len(star) == 1 and len(hash_) == 1
            if " ".join(r["span1_text"].split()) not in " ".join(r["text"].split()):
                continue    # two test rows name a non-contiguous span ("Kamenev and Zinoviev"): nothing to mark
            assert squash(star[0]).startswith(squash(r["span1_text"]))
            assert squash(hash_[0]).startswith(squash(r["span2_text"]))


# ---- format-exact small files ---------------------------------------------------------------------------
def _write_jsonl(path: Path, objs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs), encoding="utf-8")
    return path


BOOLQ_TRAIN = [
    {"question": "do iran and afghanistan speak the same language",
     "passage": "Persian language -- Persian is a Western Iranian language spoken in Iran and Afghanistan.",
     "idx": 0, "label": True},
    {"question": "is the moon made of cheese", "passage": "Moon -- The Moon is a rocky body.", "idx": 1, "label": False},
]


def test_boolq_train_small_file(tmp_path):
    _write_jsonl(tmp_path / "superglue" / "BoolQ" / "train.jsonl", BOOLQ_TRAIN)
    t = get_task("superglue/boolq")
    rows = read_split(t, "train", root=tmp_path)
    assert [t.target(r) for r in rows] == [1, 0]
    assert t.inputs(rows[0]) == [(BOOLQ_TRAIN[0]["passage"], BOOLQ_TRAIN[0]["question"])]   # passage first
    assert t.truncation == "only_first"


def _record_line(idx, text, entity_strings, qas):
    ents = []
    for e in entity_strings:
        s = text.index(e)
        ents.append({"start": s, "end": s + len(e) - 1})      # the release's end offset is inclusive
    return {"source": "Daily mail", "passage": {"text": text, "entities": ents}, "qas": qas, "idx": idx}


RECORD_TEXT = ("Paris (CNN) -- Emmanuel Macron met Angela Merkel in Paris on Monday.\n"
               "@highlight\nMacron and Merkel met in Paris\n@highlight\nThe talks were about Europe")
RECORD_QUERY = "@placeholder said the talks about Europe went well."


def test_record_small_file_expands_candidates(tmp_path):
    ents = ["Paris", "CNN", "Emmanuel Macron", "Angela Merkel", "Paris", "Macron", "Merkel", "Europe"]
    line = _record_line(0, RECORD_TEXT, ents, [
        {"query": RECORD_QUERY, "answers": [{"start": 15, "end": 29, "text": "Emmanuel Macron"},
                                            {"start": 80, "end": 85, "text": "Macron"}], "idx": 11}])
    _write_jsonl(tmp_path / "ReCoRD" / "val.jsonl", [line])
    t = get_task("superglue/record")
    rows = read_split(t, "dev", root=tmp_path)
    # distinct entity strings, sorted: "Paris" appears twice in the entity list but is one candidate
    assert [r["entity"] for r in rows] == ["Angela Merkel", "CNN", "Emmanuel Macron", "Europe", "Macron", "Merkel", "Paris"]
    assert [t.target(r) for r in rows] == [0, 0, 1, 0, 1, 0, 0]
    assert {t.group(r) for r in rows} == {(0, 11)}
    (passage, query), = t.inputs(rows[2])
    assert query == "Emmanuel Macron said the talks about Europe went well."
    assert "@highlight" not in passage and passage.endswith("- The talks were about Europe")
    assert t.truncation == "only_first"
    # the test split has no answers: rows are unlabelled
    _write_jsonl(tmp_path / "ReCoRD" / "test.jsonl", [_record_line(3, RECORD_TEXT, ents, [{"query": RECORD_QUERY, "idx": 40}])])
    test = read_split(t, "test", root=tmp_path)
    assert len(test) == 7 and all(r["label"] is None and r["answers"] is None for r in test)


# ---- bad input -------------------------------------------------------------------------------------------
def test_malformed_line_names_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "BoolQ" / "val.jsonl", [BOOLQ_TRAIN[0], "", '{"question": "x", "passage": '])
    with pytest.raises(DataError) as e:
        read_split("superglue/boolq", "dev", root=tmp_path)
    assert f"{path}:3" in str(e.value)


def test_missing_field_names_file_and_line(tmp_path):
    bad = dict(BOOLQ_TRAIN[1])
    del bad["label"]                     # a train line without its label
    path = _write_jsonl(tmp_path / "BoolQ" / "train.jsonl", [BOOLQ_TRAIN[0], bad])
    with pytest.raises(DataError, match=re.escape(f"{path}:2") + ".*label"):
        read_split("superglue/boolq", "train", root=tmp_path)


def test_missing_nested_field_names_file_and_line(tmp_path):
    good = {"idx": 0, "version": 1.1, "passage": {"text": "P.", "questions": [
        {"question": "Q?", "answers": [{"text": "A", "idx": 0, "label": 1}], "idx": 0}]}}
    bad = json.loads(json.dumps(good))
    bad["idx"] = 1
    del bad["passage"]["questions"][0]["answers"][0]["text"]
    path = _write_jsonl(tmp_path / "MultiRC" / "train.jsonl", [good, "", bad])
    with pytest.raises(DataError, match=re.escape(f"{path}:3: missing field 'passage.questions[].answers[].text'")):
        read_split("superglue/multirc", "train", root=tmp_path)


def test_wsc_index_off_marks_nearest_occurrence(tmp_path):
    line = {"text": "The trophy does not fit in the suitcase because it is too big .",
            "target": {"span2_index": 3, "span1_index": 1, "span1_text": "trophy", "span2_text": "it"},
            "idx": 0, "label": True}
    _write_jsonl(tmp_path / "WSC" / "val.jsonl", [line])
    t = get_task("superglue/wsc")
    (text, _), = t.inputs(read_split(t, "dev", root=tmp_path)[0])
    assert text == "The *trophy* does not fit in the suitcase because #it# is too big ."


# ---- the datasets fallback maps HF rows to the same rows as the files ----------------------------------
def _fake_datasets(monkeypatch, tables):
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        return tables[name]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr("bortlab.hub.hub_reachable", lambda *a, **k: True)   # as if online
    monkeypatch.delenv("BORTLAB_DATA", raising=False)
    return calls


def test_hf_rows_equal_file_rows(tmp_path, monkeypatch):
    ents = ["Paris", "CNN", "Emmanuel Macron", "Angela Merkel", "Macron", "Merkel", "Europe"]
    qa = {"query": RECORD_QUERY, "answers": [{"start": 15, "end": 29, "text": "Emmanuel Macron"}], "idx": 11}
    _write_jsonl(tmp_path / "ReCoRD" / "train.jsonl", [_record_line(0, RECORD_TEXT, ents, [qa])])
    _write_jsonl(tmp_path / "BoolQ" / "train.jsonl", BOOLQ_TRAIN)
    wsc = {"text": "Mark told Pete lies . He should have known .", "target": {"span2_index": 5, "span1_index": 0,
           "span1_text": "Mark", "span2_text": "He"}, "idx": 0, "label": False}
    _write_jsonl(tmp_path / "WSC" / "train.jsonl", [wsc])
    cb = {"premise": "He said it rained.", "hypothesis": "it rained", "label": "neutral", "idx": 0}
    _write_jsonl(tmp_path / "CB" / "train.jsonl", [cb])
    hf = {  # rows as aps/super_glue serves them (ClassLabel indices, flattened WSC spans, deduplicated entities)
        "record": [{"passage": RECORD_TEXT, "query": RECORD_QUERY, "entities": sorted(set(ents)),
                    "answers": ["Emmanuel Macron"], "idx": {"passage": 0, "query": 11}}],
        "boolq": [{"question": b["question"], "passage": b["passage"], "idx": b["idx"], "label": int(b["label"])}
                  for b in BOOLQ_TRAIN],
        "wsc": [{"text": wsc["text"], **wsc["target"], "idx": 0, "label": 0}],
        "cb": [{"premise": cb["premise"], "hypothesis": cb["hypothesis"], "idx": 0, "label": 2}],
    }
    from_files = {n: read_split(f"superglue/{n}", "train", root=tmp_path) for n in hf}
    calls = _fake_datasets(monkeypatch, hf)
    for n in hf:
        assert read_split(f"superglue/{n}", "train") == from_files[n], n
    assert calls[0] == ("aps/super_glue", "record", "train")


def test_hf_split_names_and_multirc_mapping(monkeypatch):
    hf = {"multirc": [{"paragraph": "P.", "question": "Q?", "answer": "A", "idx": {"paragraph": 2, "question": 5, "answer": 9},
                       "label": -1}]}
    calls = _fake_datasets(monkeypatch, hf)
    rows = read_split("superglue/multirc", "test")
    assert rows == [{"passage_idx": 2, "question_idx": 5, "answer_idx": 9, "paragraph": "P.", "question": "Q?",
                     "answer": "A", "label": None}]
    read_split("superglue/multirc", "dev")
    assert [c[2] for c in calls] == ["test", "validation"]


def test_no_files_and_no_hub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"CB.*val\.jsonl.*data\.root"):
        read_split("superglue/cb", "dev", root=tmp_path)


# ---- submissions -----------------------------------------------------------------------------------------
# the leaderboard's file names and label spellings (SuperGLUE FAQ / the authors' jiant toolkit)
SPELLING = {"boolq": ("BoolQ.jsonl", ["false", "true"]), "cb": ("CB.jsonl", ["entailment", "contradiction", "neutral"]),
            "copa": ("COPA.jsonl", [0, 1]), "rte": ("RTE.jsonl", ["entailment", "not_entailment"]),
            "wic": ("WiC.jsonl", ["false", "true"]), "wsc": ("WSC.jsonl", ["False", "True"]),
            "axb": ("AX-b.jsonl", ["entailment", "not_entailment"]), "axg": ("AX-g.jsonl", ["entailment", "not_entailment"])}


@pytest.mark.parametrize("task", sorted(SPELLING))
def test_flat_submission_format(real, task, tmp_path):
    rows = real(task, "test")
    fname, spelled = SPELLING[task]
    preds = [(i * 7 + 3) % len(spelled) for i in range(len(rows))]
    path = write_superglue_submission(get_task(f"superglue/{task}"), "test", rows, preds, tmp_path)
    assert path == tmp_path / fname
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == OFFICIAL[task]["test"]
    assert all(set(x) == {"idx", "label"} and isinstance(x["idx"], int) for x in lines)
    assert [x["idx"] for x in lines] == [r["idx"] for r in rows]
    assert [x["label"] for x in lines] == [spelled[p] for p in preds]


def test_multirc_submission_nests_answers(real, tmp_path):
    rows = real("multirc", "test")
    preds = [(r["answer_idx"] * 3) % 2 for r in rows]
    path = write_superglue_submission(get_task("superglue/multirc"), "test", rows, preds, tmp_path)
    assert path.name == "MultiRC.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 166                                   # one line per passage
    flat = set()
    for p in lines:
        assert set(p) == {"idx", "passage"} and set(p["passage"]) == {"questions"}
        for q in p["passage"]["questions"]:
            assert set(q) == {"idx", "answers"}
            flat |= {(p["idx"], q["idx"], a["idx"], a["label"]) for a in q["answers"]}
    assert sum(len(p["passage"]["questions"]) for p in lines) == 1820
    assert flat == {(r["passage_idx"], r["question_idx"], r["answer_idx"], (r["answer_idx"] * 3) % 2) for r in rows}


def test_record_submission_maps_query_to_entity(tmp_path):
    ents = ["Emmanuel Macron", "Angela Merkel", "Europe"]
    lines = [_record_line(0, RECORD_TEXT, ents, [{"query": RECORD_QUERY, "idx": 11}, {"query": "Talks in @placeholder", "idx": 12}])]
    _write_jsonl(tmp_path / "ReCoRD" / "test.jsonl", lines)
    t = get_task("superglue/record")
    rows = read_split(t, "test", root=tmp_path)     # candidates: Angela Merkel, Emmanuel Macron, Europe per query
    scores = [0.1, 0.9, 0.3, 0.2, 0.1, 0.7]
    path = write_superglue_submission(t, "test", rows, scores, tmp_path / "out")
    assert path.name == "ReCoRD.jsonl"
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"idx": 11, "label": "Emmanuel Macron"}, {"idx": 12, "label": "Europe"}]


def test_submission_through_the_shared_writer(tmp_path):
    from bortlab.data.submission import write_submission
    t = get_task("superglue/rte")
    rows = [{"idx": 0, "label": None}, {"idx": 1, "label": None}]
    path = write_submission(t, "test", rows, [1, 0], tmp_path)
    assert path.name == "RTE.jsonl"
    assert path.read_text() == '{"idx": 0, "label": "not_entailment"}\n{"idx": 1, "label": "entailment"}\n'
    dev = write_superglue_submission(t, "dev", rows, [0, 0], tmp_path)
    assert dev.name == "RTE_dev.jsonl"
