"""Official task metrics, computed with torchmetrics (tests check every one against scikit-learn / scipy).

Metric names used in `Task.metrics`:

| name | what | used by |
|---|---|---|
| `accuracy` | fraction of exact matches | SST-2, MRPC, QQP, MNLI, QNLI, RTE, WNLI, most SuperGLUE |
| `f1` | binary F1 of the positive class (label index 1) | MRPC, QQP; MultiRC's F1a (alias `f1a`) |
| `mcc` | Matthews correlation coefficient (binary or multiclass) | CoLA, AX, AX-b |
| `pearson`, `spearman` | correlation of predicted and gold scores | STS-B |
| `macro_f1` | unweighted mean of per-class F1 over the classes that occur | CB |
| `em` | exact match per group: a group counts only if all its rows are right | MultiRC (needs `groups`) |

Degenerate inputs follow scikit-learn/scipy conventions where they define a number and give 0.0 where they
do not, so a score is always a finite float (a NaN would poison checkpoint selection and sweeps):
- MCC is 0/0 when all predictions or all targets are one class; that is reported as 0.0 (scikit-learn
  does the same; torchmetrics would say 1.0 when predictions and targets are the same constant).
- F1 with no predicted and no gold positives is 0.0 (scikit-learn with zero_division=0).
- Pearson/Spearman are undefined (scipy: NaN) when either side is constant; reported as 0.0 with a warning.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch

from bortlab.data.tasks import Task, get_task

# torchmetrics is imported inside the metric functions: its package import pulls in transformers and
# scipy.signal (seconds), which code that only needs the task table or selection_metric should not pay.

_ALIASES = {
    "acc": "accuracy", "f1a": "f1", "f1_binary": "f1", "matthews": "mcc", "matthews_corrcoef": "mcc",
    "pearsonr": "pearson", "spearmanr": "spearman", "f1_macro": "macro_f1", "macro-f1": "macro_f1",
    "exact_match": "em",
}
REGRESSION_METRICS = ("pearson", "spearman")


def canonical(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _METRICS:
        raise ValueError(f"Unknown metric {name!r}; known: {sorted(_METRICS)} (aliases: {sorted(_ALIASES)}).")
    return key


def selection_metric(task: Union[Task, str]) -> str:
    """The metric that selects checkpoints (and that sweeps optimise): the task's first official metric."""
    t = task if isinstance(task, Task) else get_task(task)
    return t.metrics[0]


def compute_metrics(task_or_names, preds, targets, groups: Optional[Sequence] = None) -> dict[str, float]:
    """Official metrics of `preds` against `targets`, keyed by the names the task lists (or the names given).

    `task_or_names`: a Task, a task name ("glue/rte"), or metric name(s) ("mcc", ["f1", "accuracy"]).
    `preds`: label indices (the caller takes the argmax) or floats for regression; `targets` likewise.
    Lists, numpy arrays and tensors are all accepted. `groups`: one group key per row, for `em`.
    """
    names = _names(task_or_names)
    regression = any(canonical(n) in REGRESSION_METRICS for n in names)
    p, t = _as_tensor(preds, regression), _as_tensor(targets, regression)
    if p.shape != t.shape:
        raise ValueError(f"preds and targets differ in length: {tuple(p.shape)} vs {tuple(t.shape)}.")
    if p.numel() == 0:
        raise ValueError("No predictions to score (empty preds and targets).")
    if groups is not None and len(groups) != p.numel():
        raise ValueError(f"groups has {len(groups)} entries for {p.numel()} predictions.")
    return {n: float(_METRICS[canonical(n)](p, t, groups)) for n in names}


def combined(scores: dict[str, float], task: Union[Task, str, None] = None) -> float:
    """Mean of a task's official metrics: the single number the GLUE leaderboard shows for tasks with two
    (MRPC, QQP, STS-B); for one-metric tasks it is that metric."""
    keys = list(scores) if task is None else list((task if isinstance(task, Task) else get_task(task)).metrics)
    return float(sum(scores[k] for k in keys) / len(keys))


# ---- the metrics -----------------------------------------------------------------------------------
def _accuracy(p: torch.Tensor, t: torch.Tensor, groups=None) -> float:
    if p.is_floating_point():   # a regression task asked for accuracy: compare values
        return float((p == t).double().mean())
    from torchmetrics.functional.classification import multiclass_accuracy

    return float(multiclass_accuracy(p, t, num_classes=_num_classes(p, t), average="micro"))


def _f1(p: torch.Tensor, t: torch.Tensor, groups=None) -> float:
    from torchmetrics.functional.classification import binary_f1_score

    _check_binary(p, t, "f1")
    return float(binary_f1_score(p, t, zero_division=0))


def _mcc(p: torch.Tensor, t: torch.Tensor, groups=None) -> float:
    # 0/0 case (one class on either side): 0.0 by convention, see the module docstring
    from torchmetrics.functional.classification import multiclass_matthews_corrcoef

    if p.unique().numel() < 2 or t.unique().numel() < 2:
        return 0.0
    return float(multiclass_matthews_corrcoef(p, t, num_classes=_num_classes(p, t)))


def _macro_f1(p: torch.Tensor, t: torch.Tensor, groups=None) -> float:
    # torchmetrics leaves out of the mean the classes that occur in neither preds nor targets (no tp, fp or
    # fn), which is scikit-learn's default label set: the union of the classes present
    from torchmetrics.functional.classification import multiclass_f1_score

    return float(multiclass_f1_score(p, t, num_classes=_num_classes(p, t), average="macro", zero_division=0))


def _correlation(name: str):
    def metric(p: torch.Tensor, t: torch.Tensor, groups=None) -> float:
        import torchmetrics.functional as F

        fn = F.pearson_corrcoef if name == "pearson" else F.spearman_corrcoef
        if p.numel() < 2 or p.unique().numel() < 2 or t.unique().numel() < 2:
            warnings.warn(f"{name}: predictions or targets are constant, the correlation is undefined; "
                          "reporting 0.0.", RuntimeWarning, stacklevel=3)
            return 0.0
        value = float(fn(p.double(), t.double()))
        return 0.0 if math.isnan(value) else value
    return metric


def _em(p: torch.Tensor, t: torch.Tensor, groups=None) -> float:
    if groups is None:
        raise ValueError("em (exact match per group) needs groups=: one group key per row (e.g. the question).")
    right: dict = {}
    for g, ok in zip(groups, (p == t).tolist()):
        right[g] = right.get(g, True) and ok
    return sum(right.values()) / len(right)


_METRICS = {
    "accuracy": _accuracy, "f1": _f1, "mcc": _mcc, "macro_f1": _macro_f1, "em": _em,
    "pearson": _correlation("pearson"), "spearman": _correlation("spearman"),
}


# ---- helpers ---------------------------------------------------------------------------------------
def _names(task_or_names) -> list[str]:
    if isinstance(task_or_names, Task):
        return list(task_or_names.metrics)
    if isinstance(task_or_names, str):
        if "/" in task_or_names:
            return list(get_task(task_or_names).metrics)
        return [task_or_names]
    names = list(task_or_names)
    if not names:
        raise ValueError("No metric names given.")
    return names


def _as_tensor(x, regression: bool) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
    else:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise ValueError("preds/targets contain None or non-numbers; unlabelled rows (test splits) cannot "
                             "be scored, and classification targets must be label indices (Task.target).")
        x = torch.as_tensor(arr)
    x = x.reshape(-1)
    if regression:
        return x.double()
    if x.is_floating_point():
        if not torch.equal(x, x.round()):
            raise ValueError("Classification metrics need label indices, got non-integer floats; take the "
                             "argmax of the logits first (bortlab.data.scoring.predictions does).")
    return x.long()


def _num_classes(p: torch.Tensor, t: torch.Tensor) -> int:
    lo = min(int(p.min()), int(t.min()))
    if lo < 0:
        raise ValueError(f"Label indices must be >= 0, found {lo} (unlabelled rows must not be scored).")
    return max(2, int(p.max()) + 1, int(t.max()) + 1)


def _check_binary(p: torch.Tensor, t: torch.Tensor, name: str) -> None:
    bad = set(torch.cat([p, t]).unique().tolist()) - {0, 1}
    if bad:
        raise ValueError(f"{name} is binary (positive class 1) but labels {sorted(bad)} occur; use macro_f1 "
                         "for more than two classes.")
