"""Agora works on rows, the dicts the task readers produce: a mistake is a dev row, a new point is a row.

- `text_fields(task, row)`: which fields of a row are free text that `task.inputs(row)` passes through
  verbatim (premise/hypothesis, sentence1/sentence2, COPA's premise and choices...). Only those are
  perturbed, each on its own, so the pair structure of the input is kept.
- `set_label(task, row, y)`: write label index `y` into the row so that `task.target(row) == y`.
- `holdout_split`: a stratified, seeded part of train that serves as Agora's dev set.
- `save_round` / `load_rounds`: the points of each round as `agora/round_<r>.jsonl`.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Optional, Sequence

from bortlab.config import SetupError
from bortlab.data.tasks import Task
from bortlab.files import write_atomic

# Tasks whose inputs mark character or word offsets in the text (WiC's target word, WSC's spans, ReCoRD's
# entities): changing words would move the marks onto other words, so the labels would no longer apply.
UNSUPPORTED = {"superglue/wic": "its target word is given by character offsets into both sentences",
               "superglue/wsc": "its spans are given by word indices into the text",
               "superglue/record": "its candidates are entity spans of the passage"}
_SENTINEL = "agoraprobe\u2063{}\u2063"
_SKIP = {"idx", "label", "agora"}


def check_task(task: Task, fields_given: bool = False) -> None:
    if task.name in UNSUPPORTED and not fields_given:
        raise SetupError(f"Agora cannot perturb {task.name}: {UNSUPPORTED[task.name]}, so changing words would "
                         f"detach them from the text. Use Agora on a task whose inputs are plain text fields "
                         f"(CB, RTE, MRPC, BoolQ, COPA, ...), or pass agora.fields=[...] if you know it is safe.")
    if task.kind == "regression":
        raise SetupError(f"Agora needs a classification or multiple-choice task: {task.name} is a regression "
                         f"task, where a 'mistake' and a labeller's label set are not defined.")
    if task.kind == "classification" and not task.labels:
        raise SetupError(f"{task.name} has no label set; Agora's labeller must label new rows with one.")


def text_fields(task: Task, row: dict) -> list[str]:
    """The string fields of `row` that appear unchanged in `task.inputs(row)`, found by probing: a field
    counts when replacing its value with a sentinel makes the sentinel appear whole in the inputs."""
    fields = []
    for key, value in row.items():
        if key in _SKIP or not isinstance(value, str) or not value.strip():
            continue
        probe = dict(row)
        probe[key] = _SENTINEL.format(key)
        try:
            texts = [t for pair in task.inputs(probe) for t in pair if t]
        except Exception:          # the field is a key into a table (COPA's "question"): not free text
            continue
        if any(probe[key] in t for t in texts):
            fields.append(key)
    return fields


def set_label(task: Task, row: dict, y: int) -> dict:
    """Set the row's label so that `task.target(row) == y`: the label as the files spell it (a string or a
    bool) when the task has a label table, else the index itself (multiple choice)."""
    out = dict(row)
    if task.kind == "classification":
        out["label"] = task.labels[y]
        if task.target(out) == y:
            return out
    out["label"] = int(y)
    if task.target(out) != y:
        raise SetupError(f"Cannot write label {y} into a {task.name} row: task.target gives {task.target(out)!r}.")
    return out


def stratified_holdout(task: Task, rows: Sequence[dict], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (keep, holdout): `fraction` of each class held out (at least one row per class that has two
    or more), seeded, so a resumed run holds out the same rows."""
    if not 0.0 < fraction < 1.0:
        raise SetupError(f"agora.holdout_fraction must be in (0, 1), got {fraction}.")
    by_class: dict[object, list[int]] = {}
    for i, r in enumerate(rows):
        by_class.setdefault(task.target(r), []).append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for _, idx in sorted(by_class.items(), key=lambda kv: str(kv[0])):
        idx = list(idx)
        rng.shuffle(idx)
        n = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        held.update(idx[:n])
    keep = [i for i in range(len(rows)) if i not in held]
    return keep, sorted(held)


# ---- round files ------------------------------------------------------------------------------------
def round_path(directory: Path, r: int) -> Path:
    return Path(directory) / f"round_{r}.jsonl"


def write_jsonl_atomic(path: Path, rows: Sequence[dict]) -> None:
    # a crash mid-write never leaves a truncated round file behind
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_rounds(directory: Path) -> list[list[dict]]:
    """The rows of round_1.jsonl, round_2.jsonl, ... in order, stopping at the first missing round."""
    out, r = [], 1
    while round_path(directory, r).exists():
        out.append(read_jsonl(round_path(directory, r)))
        r += 1
    return out


def rounds_on_disk(directory: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in Path(directory).glob("round_*.jsonl")
                  if (m := re.fullmatch(r"round_(\d+)\.jsonl", p.name)))


def load_pool(paths: Optional[Sequence[str]]) -> list[dict]:
    """Rows of extra jsonl files (the Θ loop's pool of earlier rounds' points)."""
    rows: list[dict] = []
    for p in paths or ():
        if not Path(p).exists():
            raise SetupError(f"agora.pool lists {p}, which does not exist. Point it at round/final jsonl files "
                             f"written by an earlier Agora run.")
        rows.extend(read_jsonl(Path(p)))
    return rows
