"""The SuperGLUE / RACE names of the one metrics layer (`bortlab.data.metrics`), kept for the code that
imports them from here. Nothing is computed here: every metric lives in `metrics`, every readout in `scoring`.

`superglue_metrics(task, rows, preds, targets=None) -> {metric: float}` scores any task on its rows through
`metrics.task_scores`; `preds` is one entry per row: a label / choice index, or the model's logits (2-D;
read out as `Task.readout` says: argmax, or for ReCoRD the score of class 1 over class 0).

Definitions (SuperGLUE paper and the official evaluation scripts), all in `metrics`:
- accuracy, macro-F1 (CB) and MCC (AX-b) are the same metrics GLUE uses (MCC is 0.0 on constant input).
- MultiRC: F1a = binary F1 over all answer options; EM = fraction of questions whose every answer option
  is labelled correctly (`em` grouped by `Task.group`).
- ReCoRD: per query, the candidate entity with the highest score is the answer; EM and token F1 after
  SQuAD normalisation, maximised over the gold answers, averaged over queries (`answer_em`, `answer_f1`).
- AX-g gender parity: fraction of minimal pairs (`Task.group`) that receive the same prediction.
"""
from __future__ import annotations

from typing import Hashable, Optional, Sequence

from bortlab.data.metrics import (  # noqa: F401  (re-exported)
    best_per_group,
    exact_match,
    gender_parity,
    metric,
    normalize_answer,
    record_scores,
    task_scores,
    token_f1,
)
from bortlab.data.scoring import candidate_scores, label_indices, predictions  # noqa: F401  (re-exported)


def superglue_metrics(task, rows: Sequence[dict], preds, targets: Optional[Sequence] = None) -> dict[str, float]:
    """The official metrics of a task, keyed by the names in `task.metrics` (any benchmark's task).

    rows: the split's rows as read (file order); preds: one entry per row (indices or logits, see the
    module docstring); targets: gold indices per row, defaulting to `task.target(row)`."""
    if len(rows) != len(preds):
        raise ValueError(f"{task.name}: {len(preds)} predictions for {len(rows)} rows.")
    return task_scores(task, rows, predictions(task, preds), targets)


def multirc_scores(groups: Sequence[Hashable], preds: Sequence[int], targets: Sequence[int]) -> dict[str, float]:
    """F1a over all answer options (positive class 1) and EM per question (all its options right)."""
    if not (len(groups) == len(preds) == len(targets)):
        raise ValueError(f"lengths differ: {len(groups)} groups, {len(preds)} preds, {len(targets)} targets.")
    return {"f1a": metric("f1", preds, targets), "em": metric("em", preds, targets, groups=groups)}


def accuracy(preds, targets) -> float:
    return metric("accuracy", preds, targets)


def macro_f1(preds, targets, num_classes: Optional[int] = None) -> float:
    """Macro F1 over the classes present in preds or targets (`num_classes` is not needed; kept for callers)."""
    return metric("macro_f1", preds, targets)


def mcc(preds, targets) -> float:
    return metric("mcc", preds, targets)


def record_row_scores(preds) -> list[float]:
    """One score per ReCoRD candidate row: logit margin of class 1 over 0 for 2-class logits, else the value."""
    return candidate_scores(preds).tolist()
