"""SuperGLUE leaderboard files (and a RACE predictions file) from per-row predictions: the "jsonl" and
"jsonl_nested" record shapes of `bortlab.data.submission`.

The leaderboard takes one JSONL file per task, named BoolQ.jsonl, CB.jsonl, COPA.jsonl, MultiRC.jsonl,
ReCoRD.jsonl, RTE.jsonl, WiC.jsonl, WSC.jsonl, AX-b.jsonl, AX-g.jsonl (`task.submission_name`), zipped
together. One line per test example, {"idx": <int>, "label": ...}, with the label spelled per task as
the SuperGLUE authors' toolkit (jiant) writes it (`task.submission_labels`, default `task.labels`):
- BoolQ, WiC: "true" / "false"; WSC: "True" / "False"; COPA: the choice index 0 / 1;
- CB: "entailment" / "contradiction" / "neutral"; RTE, AX-b, AX-g: "entailment" / "not_entailment";
- MultiRC ("jsonl_nested"): one line per passage, answers nested by idx:
  {"idx": p, "passage": {"questions": [{"idx": q, "answers": [{"idx": a, "label": 0|1}, ...]}, ...]}};
- ReCoRD (readout "group_best"): one line per query, {"idx": <query idx>, "label": "<the chosen entity>"}.
RACE has no upload format; its file (RACE-<level>.jsonl) holds {"id", "question_idx", "label": "A".."D"}.
The keys naming each line come from `task.submission_keys` ((record key, row key) pairs).

`predictions` has one entry per row, in row order: label or choice indices, or logits (2-D), read out as
`task.readout` says (argmax, or for ReCoRD the score of class 1 within each query). Files for splits other
than the test splits are named <Task>_<split>.jsonl, so dev predictions never overwrite a submission.

Importing this module registers both shapes with `bortlab.data.submission.register_format`, so
`submission.write_submission` serves these tasks too (the task modules import it). There predictions arrive
flattened to one value per row: indices, or for ReCoRD one score per candidate row (not 2-class logits).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from bortlab.data.submission import register_format, spelled_label, submission_filename
from bortlab.files import write_atomic


def superglue_records(task, rows: Sequence[dict], predictions, split: str = "test") -> list[dict]:
    """The submission lines (as dicts) for `rows` and their predictions."""
    if len(rows) != len(predictions):
        raise ValueError(f"{task.name}: {len(predictions)} predictions for {len(rows)} rows; pass one per row, "
                         "in the order read_split returned them.")
    # scoring needs torch (seconds to import); the task table imports this module, so defer
    from bortlab.data.scoring import predictions as read_out

    preds = read_out(task, predictions).tolist()
    if task.submission_format == "jsonl_nested":
        return _nested_records(task, split, rows, preds)
    if task.readout == "group_best":         # one line per group: its best-scoring candidate's answer
        from bortlab.data.metrics import best_per_group

        best = best_per_group([task.group(r) for r in rows], preds)
        return [{**_keys(task, rows[i]), "label": task.candidate(rows[i])} for i in best.values()]
    return [{**_keys(task, r), "label": spelled_label(task, split, n, p)} for n, (r, p) in enumerate(zip(rows, preds))]


def _keys(task, row: dict) -> dict:
    return {key: row[col] for key, col in task.submission_keys}


def _nested_records(task, split: str, rows: Sequence[dict], preds: Sequence[int]) -> list[dict]:
    """MultiRC: passage -> questions -> answers, each level's idx from the row key in `submission_keys`."""
    passage_key, question_key, answer_key = (col for _, col in task.submission_keys)
    passages: dict[int, dict[int, list]] = {}      # passage -> question -> answers, in order of appearance
    for n, (r, p) in enumerate(zip(rows, preds)):
        answers = passages.setdefault(r[passage_key], {}).setdefault(r[question_key], [])
        answers.append({"idx": r[answer_key], "label": spelled_label(task, split, n, p)})
    return [{"idx": p, "passage": {"questions": [{"idx": q, "answers": a} for q, a in qs.items()]}}
            for p, qs in passages.items()]


def submission_path(task, split: str, out_dir) -> Path:
    """The file for `split`: the leaderboard name for a test split, <name>_<split>.jsonl for any other."""
    if split in task.test_splits:
        return Path(out_dir) / submission_filename(task, split)
    return Path(out_dir) / f"{Path(submission_filename(task, task.test_splits[0])).stem}_{split}.jsonl"


def superglue_jsonl(task, split: str, rows: Sequence[dict], predictions) -> str:
    """The file's text: one JSON object per line (the hook `submission.register_format` expects)."""
    return "".join(json.dumps(rec) + "\n" for rec in superglue_records(task, rows, predictions, split))


def write_superglue_submission(task, split: str, rows: Sequence[dict], predictions, out_dir) -> Path:
    """Write the leaderboard file of `task` for `split` into `out_dir`; returns its path. Atomic: a crash never
    leaves a half-written submission."""
    return write_atomic(submission_path(task, split, out_dir), superglue_jsonl(task, split, rows, predictions))


register_format("jsonl", superglue_jsonl)
register_format("jsonl_nested", superglue_jsonl)
