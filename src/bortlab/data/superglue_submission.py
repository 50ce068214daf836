"""SuperGLUE leaderboard files (and a RACE predictions file) from per-row predictions.

The leaderboard takes one JSONL file per task, named BoolQ.jsonl, CB.jsonl, COPA.jsonl, MultiRC.jsonl,
ReCoRD.jsonl, RTE.jsonl, WiC.jsonl, WSC.jsonl, AX-b.jsonl, AX-g.jsonl (`task.submission_name`), zipped
together. One line per test example, {"idx": <int>, "label": ...}, with the label spelled per task as
the SuperGLUE authors' toolkit (jiant) writes it:
- BoolQ, WiC: "true" / "false"; WSC: "True" / "False"; COPA: the choice index 0 / 1;
- CB: "entailment" / "contradiction" / "neutral"; RTE, AX-b, AX-g: "entailment" / "not_entailment";
- MultiRC: one line per passage, answers nested by idx:
  {"idx": p, "passage": {"questions": [{"idx": q, "answers": [{"idx": a, "label": 0|1}, ...]}, ...]}};
- ReCoRD: one line per query, {"idx": <query idx>, "label": "<the chosen entity string>"}.
RACE has no upload format; its file (RACE-<level>.jsonl) holds {"id", "question_idx", "label": "A".."D"}.

`predictions` has one entry per row, in row order: label or choice indices, or logits (2-D; argmax, or
for ReCoRD the score of class 1 within each query). Files for splits other than test are named
<Task>_<split>.jsonl, so dev predictions never overwrite a submission.

Importing this module also registers the format for the benchmarks "superglue" and "race" with
`bortlab.data.submission.register_format`, so `submission.write_submission` serves these tasks too (the
task modules import it). There predictions arrive flattened to one value per row: indices, or for ReCoRD
one score per candidate row (not 2-class logits).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from bortlab.data.submission import register_format

_TRUE_FALSE = {"superglue/boolq": ("false", "true"), "superglue/wic": ("false", "true"),
               "superglue/wsc": ("False", "True")}


def superglue_records(task, rows: Sequence[dict], predictions) -> list[dict]:
    """The submission lines (as dicts) for `rows` and their predictions."""
    if len(rows) != len(predictions):
        raise ValueError(f"{task.name}: {len(predictions)} predictions for {len(rows)} rows; pass one per row, "
                         "in the order read_split returned them.")
    # qa_metrics needs torch/torchmetrics (seconds to import); the task table imports this module, so defer
    from bortlab.data.qa_metrics import best_per_group, label_indices, record_row_scores

    name = task.name
    if name == "superglue/record":
        best = best_per_group([task.group(r) for r in rows], record_row_scores(predictions))
        return [{"idx": rows[i]["query_idx"], "label": rows[i]["entity"]} for i in best.values()]
    labels = label_indices(predictions).tolist()
    if name == "superglue/multirc":
        return _multirc_records(rows, labels)
    if task.benchmark == "race":
        return [{"id": r["id"], "question_idx": r["question_idx"], "label": task.labels[p]} for r, p in zip(rows, labels)]
    if name == "superglue/copa":
        return [{"idx": r["idx"], "label": int(p)} for r, p in zip(rows, labels)]
    spelled = _TRUE_FALSE.get(name, task.labels)
    return [{"idx": r["idx"], "label": spelled[p]} for r, p in zip(rows, labels)]


def _multirc_records(rows: Sequence[dict], labels: Sequence[int]) -> list[dict]:
    passages: dict[int, dict[int, list]] = {}      # passage -> question -> answers, in order of appearance
    for r, p in zip(rows, labels):
        answers = passages.setdefault(r["passage_idx"], {}).setdefault(r["question_idx"], [])
        answers.append({"idx": r["answer_idx"], "label": int(p)})
    return [{"idx": p, "passage": {"questions": [{"idx": q, "answers": a} for q, a in qs.items()]}}
            for p, qs in passages.items()]


def submission_path(task, split: str, out_dir) -> Path:
    name = task.submission_name or f"{task.name.replace('/', '-')}.jsonl"
    if split != "test":
        name = f"{Path(name).stem}_{split}.jsonl"
    return Path(out_dir) / name


def superglue_jsonl(task, split: str, rows: Sequence[dict], predictions) -> str:
    """The file's text: one JSON object per line (the hook `submission.register_format` expects)."""
    return "".join(json.dumps(rec) + "\n" for rec in superglue_records(task, rows, predictions))


def write_superglue_submission(task, split: str, rows: Sequence[dict], predictions, out_dir) -> Path:
    """Write the leaderboard file of `task` for `split` into `out_dir`; returns its path."""
    text = superglue_jsonl(task, split, rows, predictions)
    path = submission_path(task, split, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)                               # a crash never leaves a half-written submission
    return path


register_format("superglue", superglue_jsonl)
register_format("race", superglue_jsonl)
