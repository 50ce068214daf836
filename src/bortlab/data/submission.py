"""Test-set predictions in the leaderboard submission formats.

`write_submission` checks the predictions, asks the writer registered for the task's benchmark for the
file's text, and writes it atomically (a temporary file in the same directory, then `os.replace`), so an
interrupted run never leaves a half-written file that a later upload would accept.

A benchmark adds its format with `register_format(benchmark, fn)`, where `fn(task, split, rows, predictions)`
returns the file's full text; the file name comes from `submission_filename`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bortlab.data.tasks import Task, TaskError, get_task

Format = Callable[[Task, str, Sequence[dict], list], str]
_FORMATS: dict[str, Format] = {}

# tasks with several test splits write one leaderboard file per split
_PER_SPLIT_NAMES = {
    "glue/mnli": {"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"},
}


def register_format(benchmark: str, fn: Format) -> Format:
    _FORMATS[benchmark] = fn
    return fn


def submission_filename(task: Task | str, split: str) -> str:
    t = task if isinstance(task, Task) else get_task(task)
    name = _PER_SPLIT_NAMES.get(t.name, {}).get(split, t.submission_name)
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
    if t.benchmark not in _FORMATS:
        raise TaskError(f"{t.name}: no submission format registered for benchmark {t.benchmark!r} "
                        f"(known: {sorted(_FORMATS)}).")
    preds = _as_list(predictions)
    if len(preds) != len(rows):
        raise ValueError(f"{t.name} {split}: {len(preds)} predictions for {len(rows)} rows; predict every test "
                         "row, in file order.")
    text = _FORMATS[t.benchmark](t, split, rows, preds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / submission_filename(t, split)
    _atomic_write(path, text)
    return path


def _atomic_write(path: Path, text: str) -> None:
    from bortlab.files import write_atomic

    write_atomic(path, text)


def _as_list(predictions) -> list:
    if hasattr(predictions, "detach"):              # torch tensor, without importing torch here
        predictions = predictions.detach().cpu().numpy()
    return np.asarray(predictions).reshape(-1).tolist()


# ---- GLUE: `index<TAB>prediction` ------------------------------------------------------------------
def glue_tsv(task: Task, split: str, rows: Sequence[dict], preds: list) -> str:
    """GLUE leaderboard TSV. Classification writes the label string as the release files spell it: the
    NLI words for MNLI/QNLI/RTE/AX, 0/1 for CoLA/SST-2/MRPC/QQP/WNLI. STS-B writes the score clipped to
    the scale [0, 5] with three decimals."""
    lines = ["index\tprediction"]
    for n, (row, p) in enumerate(zip(rows, preds)):
        if task.is_regression:
            value = float(p)
            if math.isnan(value):
                raise ValueError(f"{task.name} {split}: prediction {n} is NaN.")
            text = f"{min(5.0, max(0.0, value)):.3f}"
        else:
            k = int(p)
            if k != p or not 0 <= k < len(task.labels):
                raise ValueError(f"{task.name} {split}: prediction {n} is {p!r}, not a label index in "
                                 f"0..{len(task.labels) - 1} ({list(task.labels)}).")
            text = task.labels[k]
        lines.append(f"{row['idx']}\t{text}")
    return "\n".join(lines) + "\n"


register_format("glue", glue_tsv)
