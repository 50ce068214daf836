"""From logits to official scores, for every task alike: read one prediction per row out of the logits as
`Task.readout` says, then the task's metrics (`bortlab.data.metrics.task_scores`)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from bortlab.data.tasks import READOUTS, Task


def label_indices(preds) -> torch.Tensor:
    """Readout "argmax": label / choice indices from logits (argmax over the last dimension), or from indices."""
    t = torch.as_tensor(preds)
    return t.argmax(-1) if t.dim() == 2 else t.reshape(-1).long()


def values(preds) -> torch.Tensor:
    """Readout "value": the regression score of each row."""
    return torch.as_tensor(preds).reshape(-1)


def candidate_scores(preds) -> torch.Tensor:
    """Readout "group_best": one score per candidate row, the logit margin of class 1 over 0 for 2-class logits
    (monotone in softmax P(class 1), without the exp), else the value given. The best row of each group wins."""
    t = torch.as_tensor(preds, dtype=torch.float64)
    if t.dim() == 2 and t.shape[-1] == 2:
        t = t[:, 1] - t[:, 0]
    return t.reshape(-1)


_READOUTS: dict[str, Callable[[object], torch.Tensor]] = {
    "argmax": label_indices, "value": values, "group_best": candidate_scores,
}
assert set(_READOUTS) == set(READOUTS)


def predictions(task: Task, logits) -> torch.Tensor:
    """One prediction per row as `task.readout` says: label indices (classification), choice indices
    (multiple choice), scores (regression), or candidate scores compared within a group (ReCoRD).
    Logits (2-D) and already-read predictions (1-D) are both accepted."""
    return _READOUTS[task.readout](logits)


def score(task: Task, logits: torch.Tensor, rows: Optional[Sequence[dict]]) -> dict[str, float]:
    """Official metrics of `logits` (one row per example, in file order) against the rows' gold targets.
    Returns {} for unlabelled rows (test splits)."""
    if rows is None:
        return {}
    targets = [task.target(r) for r in rows]
    if not targets or any(t is None for t in targets):
        return {}
    from bortlab.data.metrics import task_scores

    if len(rows) != len(logits):
        raise ValueError(f"{task.name}: {len(logits)} predictions for {len(rows)} rows.")
    return task_scores(task, rows, predictions(task, logits), targets)
