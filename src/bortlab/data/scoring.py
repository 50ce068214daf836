"""From logits to official scores: argmax (or the regression value), then the task's metrics."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from bortlab.data.tasks import Task


def predictions(task: Task, logits: torch.Tensor) -> torch.Tensor:
    """Label indices (classification), choice indices (multiple choice) or scores (regression)."""
    if task.kind == "regression":
        return logits.reshape(-1)
    if task.name == "superglue/record":      # candidates compete within a query: keep a score, not a 0/1
        return logits[:, 1] - logits[:, 0]
    return logits.argmax(-1)


def score(task: Task, logits: torch.Tensor, rows: Optional[Sequence[dict]]) -> dict[str, float]:
    """Official metrics of `logits` (one row per example, in file order) against the rows' gold targets.
    Returns {} for unlabelled rows (test splits)."""
    if rows is None:
        return {}
    targets = [task.target(r) for r in rows]
    if not targets or any(t is None for t in targets):
        return {}
    if task.benchmark in ("superglue", "race"):    # grouped (MultiRC, ReCoRD), AX-g parity, CB macro-F1
        from bortlab.data.qa_metrics import superglue_metrics

        return superglue_metrics(task, rows, logits, targets)
    from bortlab.data.metrics import compute_metrics

    return compute_metrics(task, predictions(task, logits), targets)
