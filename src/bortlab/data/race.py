"""RACE (middle, high, all): 4-way multiple-choice reading comprehension, accuracy.

Local files in the release layout `RACE/{train,dev,test}/{middle,high}/<n>.txt`, each file one JSON object
{"article", "questions": [q...], "options": [[4 strings]...], "answers": ["A".."D"...], "id": "middle1.txt"};
`root` may point at the `RACE` directory itself or at a directory holding `RACE/` (or `race/`). With no
local copy the rows come from HF `ehovy/race` (configs middle/high/all). race/all = middle then high.

One row per question: {"id", "level", "question_idx", "article", "question", "options" (4), "label"
(the answer letter)}; target = index of the letter. Inputs: one pair per option, (article, question with
the option filled in): a cloze question's first run of "_" is replaced by the option, any other question
is followed by it. The article comes first and `truncation="only_first"` cuts only the article, so the
question and options survive whole. Official sizes (questions): middle 25,421 / 1,436 / 1,436,
high 62,445 / 3,451 / 3,498. The test answers are public, so test accuracy is computed like dev accuracy.
"""
from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Optional

from bortlab.data.io import DataError, default_root, load_hf_split, missing_file_error
from bortlab.data.tasks import Task, register

LETTERS = ("A", "B", "C", "D")
_HF_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
_FIELDS = ("article", "questions", "options", "answers", "id")


def race_dir(root) -> Optional[Path]:
    """The release's `RACE` directory (the one holding train/dev/test) under `root`, or None."""
    root = root if root not in (None, "") else default_root()
    if root is None:
        return None
    root = Path(root).expanduser()
    for cand in (root / "RACE", root / "race" / "RACE", root / "race", root):
        if any((cand / s).is_dir() for s in ("train", "dev", "test")):
            return cand
    return None


def _read(task: Task, split: str, root, levels: tuple[str, ...]) -> list[dict]:
    base = race_dir(root)
    if base is None:
        expected = Path(root or default_root() or ".") / "RACE" / split / levels[0]
        hf_rows = load_hf_split(task.name, task.hf_dataset, _HF_SPLITS[split], "race", expected, root)
        return _from_hf(hf_rows)
    rows: list[dict] = []
    for level in levels:
        d = base / split / level
        files = sorted(d.glob("*.txt"), key=_file_order) if d.is_dir() else []
        if not files:
            raise missing_file_error(task.name, "race", d / "<n>.txt", root)
        for f in files:
            rows.extend(_file_rows(f, level))
    return rows


def _file_order(p: Path):
    # 2.txt before 10.txt, as the release numbers them
    return (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem)


def _file_rows(path: Path, level: str) -> list[dict]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno}). Each RACE file holds "
                        "one JSON object; re-download the file or fix it.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:1: expected a JSON object, found {type(obj).__name__}.")
    missing = [k for k in _FIELDS if k not in obj]
    if missing:
        raise DataError(f"{path}:1: missing field(s) {missing}; found {sorted(obj)}. A RACE file needs "
                        f"{list(_FIELDS)}; re-download the file or fix it.")
    qs, opts, ans = obj["questions"], obj["options"], obj["answers"]
    if not (len(qs) == len(opts) == len(ans)):
        raise DataError(f"{path}:1: {len(qs)} questions, {len(opts)} option lists and {len(ans)} answers; "
                        "they must be equally many (one of each per question).")
    rows = []
    for i, (q, o, a) in enumerate(zip(qs, opts, ans)):
        if len(o) != len(LETTERS) or a not in LETTERS:
            raise DataError(f"{path}:1: question {i} has {len(o)} options and answer {a!r}; RACE needs 4 options "
                            "and an answer among A-D.")
        rows.append({"id": obj["id"], "level": level, "question_idx": i, "article": obj["article"],
                     "question": q, "options": list(o), "label": a})
    return rows


def _from_hf(hf_rows) -> list[dict]:
    seen: dict[str, int] = {}
    rows = []
    for r in hf_rows:
        ex = r["example_id"]
        seen[ex] = seen.get(ex, -1) + 1          # HF has one row per question; number them per article
        level = "high" if ex.startswith("high") else "middle"
        rows.append({"id": ex, "level": level, "question_idx": seen[ex], "article": r["article"],
                     "question": r["question"], "options": list(r["options"]), "label": r.get("answer") or None})
    return rows


def fill(question: str, option: str) -> str:
    if "_" in question:
        return re.sub(r"_+", lambda m: option, question, count=1)
    return f"{question} {option}"


def _inputs(row: dict) -> list:
    return [(row["article"], fill(row["question"], o)) for o in row["options"]]


def _target(row: dict):
    return None if row.get("label") is None else LETTERS.index(row["label"])


def _register(level: str, levels: tuple[str, ...]) -> Task:
    return register(Task(
        name=f"race/{level}", benchmark="race", kind="multiple_choice", metrics=("accuracy",),
        reader=partial(_read, levels=levels), inputs=_inputs, target=_target, labels=LETTERS,
        dirname="RACE", max_length=512, truncation="only_first", num_choices=4, readout="argmax",
        hf_dataset=("ehovy/race", level), submission_name=f"RACE-{level}.jsonl", submission_format="jsonl",
        submission_keys=(("id", "id"), ("question_idx", "question_idx")),
    ))


MIDDLE = _register("middle", ("middle",))
HIGH = _register("high", ("high",))
ALL = _register("all", ("middle", "high"))

# registers the JSONL submission formats with bortlab.data.submission
from bortlab.data import superglue_submission as _submission  # noqa: E402,F401
