"""RACE from small files in the exact release layout (RACE/{train,dev,test}/{middle,high}/<n>.txt, one JSON
object per file), its inputs and truncation, bad files, the HF fallback and the predictions file."""
import json
import sys
import types

import pytest

from bortlab.data import race  # noqa: F401  (registers the tasks)
from bortlab.data.io import DataError
from bortlab.data.superglue_submission import write_superglue_submission
from bortlab.data.tasks import get_task, read_split


def _passage(pid, level, n, article="The old man lived by the sea. Every morning he walked to the harbour."):
    # key order and types as in the release files
    return {"answers": ["ABCD"[(pid + i) % 4] for i in range(n)],
            "options": [[f"option {pid}.{i}.{k}" for k in "abcd"] for i in range(n)],
            "questions": [f"What did the man do in passage {pid}, question {i}?" if i % 2 == 0 else
                          f"In passage {pid} the man went to the _ every morning." for i in range(n)],
            "article": article, "id": f"{level}{pid}.txt"}


LAYOUT = {  # split -> level -> {file number: questions}
    "train": {"middle": {1: 2, 2: 1, 10: 1}, "high": {1: 3}},
    "dev": {"middle": {5: 1}, "high": {7: 2}},
    "test": {"middle": {3: 2}, "high": {4: 1}},
}


@pytest.fixture()
def race_root(tmp_path):
    for split, levels in LAYOUT.items():
        for level, files in levels.items():
            d = tmp_path / "RACE" / split / level
            d.mkdir(parents=True)
            for pid, n in files.items():
                (d / f"{pid}.txt").write_text(json.dumps(_passage(pid, level, n)), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_counts_per_level(race_root, split):
    n = {lv: sum(files.values()) for lv, files in LAYOUT[split].items()}
    assert len(read_split("race/middle", split, root=race_root)) == n["middle"]
    assert len(read_split("race/high", split, root=race_root)) == n["high"]
    rows = read_split("race/all", split, root=race_root)
    assert len(rows) == n["middle"] + n["high"]
    assert [r["level"] for r in rows] == ["middle"] * n["middle"] + ["high"] * n["high"]


def test_rows_follow_file_numbers_and_questions(race_root):
    rows = read_split("race/middle", "train", root=race_root)
    # 1.txt (2 questions), 2.txt, 10.txt: numeric order, not "1, 10, 2"
    assert [(r["id"], r["question_idx"]) for r in rows] == [("middle1.txt", 0), ("middle1.txt", 1),
                                                           ("middle2.txt", 0), ("middle10.txt", 0)]
    t = get_task("race/middle")
    assert [t.target(r) for r in rows] == [1, 2, 2, 2]        # answers "B","C" / "C" / "C" -> indices
    assert t.kind == "multiple_choice" and t.num_choices == 4 and t.metrics == ("accuracy",)


def test_root_may_be_the_race_directory_itself(race_root):
    assert read_split("race/high", "dev", root=race_root / "RACE") == read_split("race/high", "dev", root=race_root)


def test_inputs_keep_article_first_and_fill_blanks(race_root):
    t = get_task("race/middle")
    r0, r1 = read_split(t, "train", root=race_root)[:2]
    pairs = t.inputs(r0)
    assert len(pairs) == 4 and all(a == r0["article"] for a, _ in pairs)
    assert pairs[0][1] == "What did the man do in passage 1, question 0? option 1.0.a"
    assert [b for _, b in t.inputs(r1)][2] == "In passage 1 the man went to the option 1.1.c every morning."
    assert t.truncation == "only_first"


def test_truncation_cuts_only_the_passage(tokenizer):
    long_article = "The old man lived by the sea and walked to the harbour every single day. " * 200
    boolq = get_task("superglue/boolq")
    cases = [(get_task("race/high"), {"article": long_article, "question": "Where did the man walk every day?",
                                       "options": ["to the harbour", "to school", "home", "nowhere"]}),
             (boolq, {"passage": long_article, "question": "did the old man live by the sea"})]
    for task, row in cases:
        for a, b in task.inputs(row):
            enc = tokenizer(a, b, truncation=task.truncation, max_length=task.max_length)
            ids = enc["input_ids"]
            assert len(ids) == task.max_length
            tail = tokenizer(b, add_special_tokens=False)["input_ids"]
            assert ids[-len(tail) - 1: -1] == tail          # the second segment survives whole, before [SEP]


# ---- bad files -------------------------------------------------------------------------------------------
def test_invalid_json_names_the_file_and_line(race_root):
    bad = race_root / "RACE" / "dev" / "middle" / "5.txt"
    bad.write_text('{"answers": ["A"],\n "options": [[1, 2, 3, 4]\n', encoding="utf-8")
    with pytest.raises(DataError, match=str(bad) + r":\d+: not valid JSON"):
        read_split("race/middle", "dev", root=race_root)


def test_missing_field_names_the_file(race_root):
    p = _passage(5, "middle", 1)
    del p["article"]
    bad = race_root / "RACE" / "dev" / "middle" / "5.txt"
    bad.write_text(json.dumps(p), encoding="utf-8")
    with pytest.raises(DataError, match=str(bad) + r":1: missing field\(s\) \['article'\]"):
        read_split("race/middle", "dev", root=race_root)


def test_mismatched_questions_and_answers(race_root):
    p = _passage(7, "high", 2)
    p["answers"] = ["A"]
    bad = race_root / "RACE" / "dev" / "high" / "7.txt"
    bad.write_text(json.dumps(p), encoding="utf-8")
    with pytest.raises(DataError, match="2 questions, 2 option lists and 1 answers"):
        read_split("race/high", "dev", root=race_root)


def test_missing_level_directory_is_a_clear_error(race_root):
    for f in (race_root / "RACE" / "test" / "high").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"RACE/test/high.*data\.root"):
        read_split("race/all", "test", root=race_root)


# ---- HF fallback ---------------------------------------------------------------------------------------
def test_hf_rows_equal_file_rows(race_root, monkeypatch):
    from_files = read_split("race/all", "dev", root=race_root)
    hf_rows = [{"example_id": r["id"], "article": r["article"], "answer": r["label"], "question": r["question"],
                "options": r["options"]} for r in from_files]          # ehovy/race: one row per question
    calls = []

    def load_dataset(path, name, split):
        calls.append((path, name, split))
        return hf_rows
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr("bortlab.hub.hub_reachable", lambda *a, **k: True)
    monkeypatch.delenv("BORTLAB_DATA", raising=False)
    assert read_split("race/all", "dev") == from_files
    assert calls == [("ehovy/race", "all", "validation")]


# ---- predictions file ----------------------------------------------------------------------------------
def test_predictions_file(race_root, tmp_path):
    t = get_task("race/middle")
    rows = read_split(t, "test", root=race_root)
    logits = [[0.1, 0.9, 0.0, 0.0], [0.0, 0.0, 0.2, 0.7]]
    path = write_superglue_submission(t, "test", rows, logits, tmp_path / "out")
    assert path.name == "RACE-middle.jsonl"
    assert [json.loads(x) for x in path.read_text().splitlines()] == [
        {"id": "middle3.txt", "question_idx": 0, "label": "B"}, {"id": "middle3.txt", "question_idx": 1, "label": "D"}]
