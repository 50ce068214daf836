"""The constant-predictor baseline of a task and the error rescaled by it (issue 18).

`1 − score` lets a predictor that ignores its input look good: on MRPC dev, "always paraphrase" has F1 0.81
(error 0.19); on RTE, "always not_entailment" has accuracy 0.527. `baseline_score(task, rows)` is the best
selection-metric score any constant prediction reaches on `rows`, computed through the project's one
scoring path (`bortlab.data.scoring.score`) on constant logits, so every metric is handled alike:

* classification (argmax readout): each label predicted for every row; the best score. For F1 of the
  positive class that is "always positive", for accuracy the majority class, for MCC 0 (a constant has no
  correlation; the registry reports MCC's 0/0 as 0.0).
* multiple choice (COPA, RACE): each choice position (first, second, ...) picked for every example; the best.
* regression (STS-B, value readout): a constant has no correlation: Pearson/Spearman 0.0.
* candidate ranking (ReCoRD, group_best readout): no baseline. A constant score ties every candidate of a
  query, and which one "wins" is then an artefact of the tie-break, not a prediction; `rescaled` refuses it.

`rescaled_error(score, baseline)` = (1 − score) / (1 − baseline): the baseline is 1.0, a perfect model 0,
worse than the baseline above 1. A multi-task / multi-seed proxy averages them: the fptas sweeper's
`replicates` (bortlab.search.replicates.pool: the mean and its standard error).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import torch

from bortlab.data.tasks import Task

OBJECTIVES = ("raw", "rescaled")


class BaselineError(ValueError):
    """The task has no constant baseline (or a degenerate one): the rescaled error is undefined."""


def check_has_baseline(task: Task) -> None:
    """Raise BaselineError when `task` can have no constant baseline (before any training is spent)."""
    if task.readout == "group_best":
        raise BaselineError(
            f"{task.name}: its predictions rank candidates within a query (readout group_best); a constant "
            "score ties them all, so there is no constant-predictor baseline. Use objective=raw.")


def _choices(task: Task) -> int:
    if task.kind == "multiple_choice":
        return int(task.num_choices)
    if task.labels:
        return len(task.labels)
    raise BaselineError(f"{task.name}: a {task.kind} task with no labels: no constant prediction to try.")


def baseline_score(task: Task, rows: Sequence[dict]) -> float:
    """Best score on `task.metrics[0]` (the selection metric) of a constant prediction on labelled `rows`."""
    from bortlab.data.scoring import score

    check_has_baseline(task)
    key = task.metrics[0]
    n = len(rows)
    if n == 0:
        raise BaselineError(f"{task.name}: no rows to compute a baseline on.")
    if task.readout == "value":
        candidates = [torch.zeros(n, 1)]
    else:
        k = _choices(task)
        candidates = [torch.nn.functional.one_hot(torch.full((n,), c), k).float() for c in range(k)]
    best = -math.inf
    with warnings.catch_warnings():   # correlations of a constant warn "undefined, reported as 0.0"
        warnings.simplefilter("ignore")
        for logits in candidates:
            scores = score(task, logits, rows)
            if key not in scores:
                raise BaselineError(f"{task.name}: the rows are unlabelled (no {key} score): no baseline.")
            best = max(best, float(scores[key]))
    return best


def rescaled_error(score: float, baseline: float) -> float:
    """(1 − score) / (1 − baseline): 1.0 at the constant baseline, 0.0 perfect, > 1 worse than the baseline."""
    if not baseline < 1.0:
        raise BaselineError(f"baseline score {baseline} >= 1: a constant is already perfect, nothing to rescale by.")
    return (1.0 - float(score)) / (1.0 - float(baseline))
