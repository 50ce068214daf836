"""Official task metrics for every benchmark (GLUE, SuperGLUE, RACE): one registry, one implementation each.
Classification metrics are computed with torchmetrics (tests check every one against scikit-learn / scipy).

A task lists its official metric names in `Task.metrics` (the keys of its scores, e.g. "val/f1a"); the
registry metric computing each is the name itself or, where the task says so, the entry of `Task.scored_by`
at the same position (ReCoRD's "f1"/"em" are `answer_f1`/`answer_em`). `task_scores(task, rows, preds)`
scores a task on its rows; `bortlab.data.scoring.score(task, logits, rows)` first reads the predictions out
of the logits as `Task.readout` says. `compute_metrics(names, preds, targets)` scores plain predictions.

Registered metrics (`register_metric`), all called as `fn(preds, targets, *, groups, task, rows) -> float`:

| name | what | used by |
|---|---|---|
| `accuracy` | fraction of exact matches | SST-2, MRPC, QQP, MNLI, QNLI, RTE, WNLI, most SuperGLUE, RACE |
| `f1` | binary F1 of the positive class (label index 1) | MRPC, QQP; MultiRC's F1a (alias `f1a`) |
| `mcc` | Matthews correlation coefficient (binary or multiclass) | CoLA, AX, AX-b |
| `pearson`, `spearman` | correlation of predicted and gold scores | STS-B |
| `macro_f1` | unweighted mean of per-class F1 over the classes that occur | CB |
| `em` | exact match per group: a group counts only if all its rows are right | MultiRC (per question) |
| `gender_parity` | share of groups (pairs) whose two predictions agree; needs no gold labels | AX-g (minimal pairs) |
| `answer_em`, `answer_f1` | per group, the best-scoring row's answer text (`Task.candidate`) against the gold texts (`Task.gold_answers`): SQuAD-normalised exact match / token F1, max over golds, mean over groups | ReCoRD |

Grouped metrics take one group key per row: `Task.group(row)` when scoring a task, `groups=` otherwise.

Degenerate inputs follow scikit-learn/scipy conventions where they define a number and give 0.0 where they
do not, so a score is always a finite float (a NaN would poison checkpoint selection and sweeps):
- MCC is 0/0 when all predictions or all targets are one class; that is reported as 0.0 (scikit-learn
  does the same; torchmetrics would say 1.0 when predictions and targets are the same constant).
- F1 with no predicted and no gold positives is 0.0 (scikit-learn with zero_division=0).
- Pearson/Spearman are undefined (scipy: NaN) when either side is constant; reported as 0.0 with a warning.
- ReCoRD's token F1 is 0.0 when nothing overlaps, also for two empty strings (the official script).
"""
from __future__ import annotations

import math
import re
import string
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Sequence, Union

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


@dataclass(frozen=True)
class Metric:
    """A registered metric. `fn(preds, targets, *, groups, task, rows) -> float` gets preds and targets as 1-D
    tensors: label indices (`inputs="labels"`), floats (`"values"`: both sides are scores), or candidate
    scores with targets unused (`"scores"`)."""
    fn: Callable[..., float]
    inputs: str = "labels"          # "labels" | "values" | "scores"
    targets: bool = True            # needs gold targets
    groups: bool = False            # needs one group key per row
    rows: bool = False              # needs the task and its rows


_METRICS: dict[str, Metric] = {}


def register_metric(name: str, fn: Callable[..., float], **how) -> Metric:
    _METRICS[name] = Metric(fn, **how)
    return _METRICS[name]


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
    Lists, numpy arrays and tensors are all accepted. `groups`: one group key per row, for grouped metrics.
    Metrics that read the rows (ReCoRD's answer strings) need `task_scores`.
    """
    if isinstance(task_or_names, str) and "/" in task_or_names:
        task_or_names = get_task(task_or_names)
    if isinstance(task_or_names, Task):
        return _compute(task_or_names.metrics, task_or_names.metric_impls, preds, targets, groups, task_or_names)
    names = _names(task_or_names)
    return _compute(names, names, preds, targets, groups)


def task_scores(task: Task, rows: Sequence[dict], preds, targets: Optional[Sequence] = None) -> dict[str, float]:
    """The official metrics of `task` on its `rows`, keyed by `task.metrics`: the one scoring path of every task.

    `preds`: one prediction per row as `task.readout` gives it (`bortlab.data.scoring.predictions`): label or
    choice indices, regression values, or candidate scores. `targets`: gold per row, by default
    `task.target(row)`; unlabelled rows are an error unless no metric of the task needs targets."""
    if len(rows) != len(preds):
        raise ValueError(f"{task.name}: {len(preds)} predictions for {len(rows)} rows.")
    gold = [task.target(r) for r in rows] if targets is None else list(targets)
    if any(g is None for g in gold):
        gold = None
    groups = [task.group(r) for r in rows] if task.group is not None else None
    return _compute(task.metrics, task.metric_impls, preds, gold, groups, task, rows)


def combined(scores: dict[str, float], task: Union[Task, str, None] = None) -> float:
    """Mean of a task's official metrics: the single number the GLUE leaderboard shows for tasks with two
    (MRPC, QQP, STS-B); for one-metric tasks it is that metric."""
    keys = list(scores) if task is None else list((task if isinstance(task, Task) else get_task(task)).metrics)
    return float(sum(scores[k] for k in keys) / len(keys))


def _compute(names: Sequence[str], impls: Sequence[str], preds, targets, groups=None, task: Optional[Task] = None,
             rows: Optional[Sequence[dict]] = None) -> dict[str, float]:
    metrics = [_METRICS[canonical(i)] for i in impls]
    where = f"{task.name}: " if task is not None else ""
    inputs = {m.inputs for m in metrics}
    # regression metrics make every value a float (a regression task asked for accuracy compares values)
    p_kind = "values" if inputs & {"values", "scores"} else "labels"
    t_kind = "values" if "values" in inputs else "labels"
    p = _as_tensor(preds, p_kind == "values")
    t = None
    if targets is not None:
        t = _as_tensor(targets, t_kind == "values")
        if p.shape != t.shape:
            raise ValueError(f"preds and targets differ in length: {tuple(p.shape)} vs {tuple(t.shape)}.")
    if p.numel() == 0:
        raise ValueError(f"{where}No predictions to score (empty preds and targets).")
    if groups is not None and len(groups) != p.numel():
        raise ValueError(f"groups has {len(groups)} entries for {p.numel()} predictions.")
    out = {}
    for name, impl, m in zip(names, impls, metrics):
        if m.targets and t is None:
            raise ValueError(f"{where}some rows have no gold label (a test split?); metrics need labelled rows.")
        if m.groups and groups is None:
            raise ValueError(f"{impl} is scored per group and needs groups=: one group key per row (e.g. the "
                             "question), or a task with Task.group.")
        if m.rows and (task is None or rows is None):
            raise ValueError(f"{impl} reads the task's rows; score with task_scores(task, rows, preds) or "
                             "bortlab.data.scoring.score.")
        out[name] = float(m.fn(p, t, groups=groups, task=task, rows=rows))
    return out


# ---- plain metrics -----------------------------------------------------------------------------------
def _accuracy(p: torch.Tensor, t: torch.Tensor, **_) -> float:
    if p.is_floating_point():   # a regression task asked for accuracy: compare values
        return float((p == t).double().mean())
    from torchmetrics.functional.classification import multiclass_accuracy

    return float(multiclass_accuracy(p, t, num_classes=_num_classes(p, t), average="micro"))


def _f1(p: torch.Tensor, t: torch.Tensor, **_) -> float:
    from torchmetrics.functional.classification import binary_f1_score

    _check_binary(p, t, "f1")
    return float(binary_f1_score(p, t, zero_division=0))


def _mcc(p: torch.Tensor, t: torch.Tensor, **_) -> float:
    # 0/0 case (one class on either side): 0.0 by convention, see the module docstring
    from torchmetrics.functional.classification import multiclass_matthews_corrcoef

    if p.unique().numel() < 2 or t.unique().numel() < 2:
        return 0.0
    return float(multiclass_matthews_corrcoef(p, t, num_classes=_num_classes(p, t)))


def _macro_f1(p: torch.Tensor, t: torch.Tensor, **_) -> float:
    # torchmetrics leaves out of the mean the classes that occur in neither preds nor targets (no tp, fp or
    # fn), which is scikit-learn's default label set: the union of the classes present
    from torchmetrics.functional.classification import multiclass_f1_score

    return float(multiclass_f1_score(p, t, num_classes=_num_classes(p, t), average="macro", zero_division=0))


def _correlation(name: str):
    def metric(p: torch.Tensor, t: torch.Tensor, **_) -> float:
        import torchmetrics.functional as F

        fn = F.pearson_corrcoef if name == "pearson" else F.spearman_corrcoef
        if p.numel() < 2 or p.unique().numel() < 2 or t.unique().numel() < 2:
            warnings.warn(f"{name}: predictions or targets are constant, the correlation is undefined; "
                          "reporting 0.0.", RuntimeWarning, stacklevel=4)
            return 0.0
        value = float(fn(p.double(), t.double()))
        return 0.0 if math.isnan(value) else value
    return metric


# ---- grouped metrics ---------------------------------------------------------------------------------
def _em(p: torch.Tensor, t: torch.Tensor, *, groups, **_) -> float:
    right: dict = {}
    for g, ok in zip(groups, (p == t).tolist()):
        right[g] = right.get(g, True) and ok
    return sum(right.values()) / len(right)


def gender_parity(pair_keys: Sequence[Hashable], preds) -> float:
    """Fraction of pairs (rows sharing a key, exactly two per key) whose two predictions agree."""
    members: dict[Hashable, list] = defaultdict(list)
    for k, p in zip(pair_keys, torch.as_tensor(preds).reshape(-1).long().tolist()):
        members[k].append(p)
    odd = [k for k, v in members.items() if len(v) != 2]
    if odd:
        raise ValueError(f"gender parity needs exactly two rows per pair; pairs {odd[:5]} have not.")
    if not members:
        return 0.0
    return sum(a == b for a, b in members.values()) / len(members)


def _gender_parity(p: torch.Tensor, t, *, groups, **_) -> float:
    return gender_parity(groups, p)


def best_per_group(groups: Sequence[Hashable], scores: Sequence[float]) -> dict[Hashable, int]:
    """Row index of the highest score in each group (first one on ties), groups in order of appearance."""
    best: dict[Hashable, int] = {}
    for i, (g, s) in enumerate(zip(groups, scores)):
        if g not in best or s > scores[best[g]]:
            best[g] = i
    return best


def _answers(p: torch.Tensor, groups, task: Task, rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """Per group, the answer text of its best-scoring row and that row's gold answer texts."""
    if task.candidate is None or task.gold_answers is None:
        raise ValueError(f"{task.name}: answer metrics need Task.candidate and Task.gold_answers.")
    best = best_per_group(groups, p.tolist())
    return ([task.candidate(rows[i]) for i in best.values()],
            [list(task.gold_answers(rows[i]) or []) for i in best.values()])


def _answer_metric(key: str):
    def metric(p: torch.Tensor, t, *, groups, task, rows, **_) -> float:
        return record_scores(*_answers(p, groups, task, rows))[key]
    return metric


# ---- answer strings (ReCoRD) -------------------------------------------------------------------------
_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles a/an/the, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def token_f1(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:                  # also when both are empty, as in the official script
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def record_scores(predictions: Sequence[str], gold_answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """EM and F1 of one predicted string per query against that query's gold strings (max over golds)."""
    if len(predictions) != len(gold_answers):
        raise ValueError(f"{len(predictions)} predictions for {len(gold_answers)} queries.")
    if not predictions:
        return {"em": 0.0, "f1": 0.0}
    em = f1 = 0.0
    for pred, golds in zip(predictions, gold_answers):
        em += max((exact_match(pred, g) for g in golds), default=0.0)
        f1 += max((token_f1(pred, g) for g in golds), default=0.0)
    return {"em": em / len(predictions), "f1": f1 / len(predictions)}


# ---- the registry ------------------------------------------------------------------------------------
register_metric("accuracy", _accuracy)
register_metric("f1", _f1)
register_metric("mcc", _mcc)
register_metric("macro_f1", _macro_f1)
register_metric("pearson", _correlation("pearson"), inputs="values")
register_metric("spearman", _correlation("spearman"), inputs="values")
register_metric("em", _em, groups=True)
register_metric("gender_parity", _gender_parity, targets=False, groups=True)
register_metric("answer_em", _answer_metric("em"), inputs="scores", targets=False, groups=True, rows=True)
register_metric("answer_f1", _answer_metric("f1"), inputs="scores", targets=False, groups=True, rows=True)


def metric(name: str, preds, targets, groups: Optional[Sequence] = None) -> float:
    """One registered metric of plain predictions (0.0 when there are none)."""
    if len(torch.as_tensor(preds).reshape(-1)) == 0:
        return 0.0
    return compute_metrics([name], preds, targets, groups=groups)[name]


# ---- helpers ---------------------------------------------------------------------------------------
def _names(task_or_names) -> list[str]:
    if isinstance(task_or_names, str):
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
