"""Test-set predictions in the leaderboard submission formats.

`write_submission` checks the predictions, asks the writer registered for the task's record shape
(`Task.submission_format`) for the file's text, and writes it atomically (`bortlab.files.write_atomic`), so an
interrupted run never leaves a half-written file that a later upload would accept.

Everything task-specific comes from the task table: the file name (`Task.submission_name`, or per test split
`Task.submission_files`), the record shape, the keys naming each record (`Task.submission_keys`), the label
spelling (`Task.submission_labels`, default the labels as the release files spell them) and, for regression,
the scale predictions are clipped to (`Task.value_range`).

A shape gets its writer with `register_format(shape, fn)`, where `fn(task, split, rows, predictions)` returns
the file's full text; "tsv" (GLUE) is defined here, "jsonl" and "jsonl_nested" in `superglue_submission`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bortlab.data.tasks import Task, TaskError, get_task
from bortlab.files import write_atomic

Format = Callable[[Task, str, Sequence[dict], list], str]
_FORMATS: dict[str, Format] = {}


def register_format(shape: str, fn: Format) -> Format:
    """The writer of one record shape (a value of `Task.submission_format`)."""
    _FORMATS[shape] = fn
    return fn


def submission_filename(task: Task | str, split: str) -> str:
    t = task if isinstance(task, Task) else get_task(task)
    name = t.submission_file(split)
    if not name:
        raise TaskError(f"{t.name} has no leaderboard submission file name (Task.submission_name is empty).")
    return name


def write_submission(task: Task | str, split: str, rows: Sequence[dict], predictions, out_dir) -> Path:
    """Write the leaderboard file for `split` of `task` into `out_dir` and return its path.

    `rows` are the split's rows as read (their `idx` is the id the leaderboard expects), `predictions` one
    per row in the same order: label indices for classification (argmax already taken), scores for regression.
    """
    t = task if isinstance(task, Task) else get_task(task)
    if split not in t.test_splits:
        raise TaskError(f"{t.name}: submissions are for the test splits {list(t.test_splits)}, not {split!r}.")
    if t.submission_format not in _FORMATS:
        raise TaskError(f"{t.name}: no writer registered for the submission format {t.submission_format!r} "
                        f"(known: {sorted(_FORMATS)}).")
    preds = _as_list(predictions)
    if len(preds) != len(rows):
        raise ValueError(f"{t.name} {split}: {len(preds)} predictions for {len(rows)} rows; predict every test "
                         "row, in file order.")
    text = _FORMATS[t.submission_format](t, split, rows, preds)
    return write_atomic(Path(out_dir) / submission_filename(t, split), text)


def _as_list(predictions) -> list:
    if hasattr(predictions, "detach"):              # torch tensor, without importing torch here
        predictions = predictions.detach().cpu().numpy()
    return np.asarray(predictions).reshape(-1).tolist()


def spelled_label(task: Task, split: str, n: int, p) -> object:
    """Prediction `n` (a label index) as the task's submission spells it; a clear error for anything else."""
    spelling = task.submission_spelling
    k = int(p)
    if k != p or not 0 <= k < len(spelling):
        raise ValueError(f"{task.name} {split}: prediction {n} is {p!r}, not a label index in "
                         f"0..{len(spelling) - 1} ({list(spelling)}).")
    return spelling[k]


# ---- "tsv" (GLUE): `index<TAB>prediction` ----------------------------------------------------------
def glue_tsv(task: Task, split: str, rows: Sequence[dict], preds: list) -> str:
    """GLUE leaderboard TSV: a header of the record keys and "prediction", then one line per row.
    Classification writes the label as the task spells it (the release files' strings: the NLI words for
    MNLI/QNLI/RTE/AX, 0/1 for CoLA/SST-2/MRPC/QQP/WNLI). Regression (readout "value", STS-B) writes the
    score with three decimals, clipped to `task.value_range` where the task has one."""
    lines = ["\t".join([key for key, _ in task.submission_keys] + ["prediction"])]
    for n, (row, p) in enumerate(zip(rows, preds)):
        if task.readout == "value":
            value = float(p)
            if math.isnan(value):
                raise ValueError(f"{task.name} {split}: prediction {n} is NaN.")
            if task.value_range is not None:
                value = min(task.value_range[1], max(task.value_range[0], value))
            text = f"{value:.3f}"
        else:
            text = spelled_label(task, split, n, p)
        lines.append("\t".join([str(row[col]) for _, col in task.submission_keys] + [str(text)]))
    return "\n".join(lines) + "\n"


register_format("tsv", glue_tsv)
