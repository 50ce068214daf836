"""Official SuperGLUE and RACE metrics, and one entry point the training loop calls for them.

`superglue_metrics(task, rows, preds, targets=None) -> {metric: float}` scores any `superglue/*` or `race/*`
task; it needs the rows because MultiRC and ReCoRD are scored per question (the rows carry the question
ids and, for ReCoRD, the gold answer strings), and AX-g per sentence pair. `preds` is one entry per row:
a label / choice index, or the model's logits (2-D, argmax is taken; for ReCoRD the score of class 1).

Definitions (SuperGLUE paper and the official evaluation scripts):
- accuracy, macro-F1 (CB: mean of per-class F1 over the classes present in targets or predictions, as
  scikit-learn's default) and MCC (AX-b) come from torchmetrics.
- MultiRC: F1a = binary F1 over all answer options; EM = fraction of questions whose every answer option
  is labelled correctly.
- ReCoRD: per query, the candidate entity with the highest score is the answer; EM and token F1 after
  SQuAD normalisation (lower case, no punctuation, no articles a/an/the, single spaces), maximised over
  the gold answers, averaged over queries.
- AX-g gender parity: fraction of minimal pairs (same hypothesis, premises differing only in the
  pronoun's gender) that receive the same prediction.
"""
from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from typing import Hashable, Optional, Sequence

import torch
import torchmetrics.functional.classification as tmf

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


# ---- answer strings (ReCoRD) -----------------------------------------------------------------------
def normalize_answer(text: str) -> str:
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


def best_per_group(groups: Sequence[Hashable], scores: Sequence[float]) -> dict[Hashable, int]:
    """Row index of the highest score in each group (first one on ties), groups in order of appearance."""
    best: dict[Hashable, int] = {}
    for i, (g, s) in enumerate(zip(groups, scores)):
        if g not in best or s > scores[best[g]]:
            best[g] = i
    return best


# ---- grouped binary decisions (MultiRC) and pairs (AX-g) -------------------------------------------
def multirc_scores(groups: Sequence[Hashable], preds: Sequence[int], targets: Sequence[int]) -> dict[str, float]:
    """F1a over all answer options (positive class 1) and EM per question (all its options right)."""
    p, t = _long(preds), _long(targets)
    if len(groups) != len(p) or len(p) != len(t):
        raise ValueError(f"lengths differ: {len(groups)} groups, {len(p)} preds, {len(t)} targets.")
    f1a = float(tmf.binary_f1_score(p, t)) if len(p) else 0.0
    all_right: dict[Hashable, bool] = {}
    for g, ok in zip(groups, (p == t).tolist()):
        all_right[g] = all_right.get(g, True) and ok
    em = sum(all_right.values()) / len(all_right) if all_right else 0.0
    return {"f1a": f1a, "em": em}


def gender_parity(pair_keys: Sequence[Hashable], preds: Sequence[int]) -> float:
    """Fraction of pairs (rows sharing a key, exactly two per key) whose two predictions agree."""
    members: dict[Hashable, list] = defaultdict(list)
    for k, p in zip(pair_keys, _long(preds).tolist()):
        members[k].append(p)
    odd = [k for k, v in members.items() if len(v) != 2]
    if odd:
        raise ValueError(f"gender parity needs exactly two rows per pair; pairs {odd[:5]} have not.")
    if not members:
        return 0.0
    return sum(a == b for a, b in members.values()) / len(members)


# ---- plain classification ----------------------------------------------------------------------------
def accuracy(preds, targets) -> float:
    p, t = _long(preds), _long(targets)
    return float((p == t).float().mean()) if len(p) else 0.0


def macro_f1(preds, targets, num_classes: int) -> float:
    return float(tmf.multiclass_f1_score(_long(preds), _long(targets), num_classes=num_classes, average="macro"))


def mcc(preds, targets) -> float:
    return float(tmf.binary_matthews_corrcoef(_long(preds), _long(targets)))


# ---- the entry point ---------------------------------------------------------------------------------
def superglue_metrics(task, rows: Sequence[dict], preds, targets: Optional[Sequence] = None) -> dict[str, float]:
    """The official metrics of a SuperGLUE or RACE task, keyed by the names in `task.metrics`.

    rows: the split's rows as read (file order); preds: one entry per row (indices or logits, see the
    module docstring); targets: gold indices per row, defaulting to `task.target(row)`."""
    if len(rows) != len(preds):
        raise ValueError(f"{task.name}: {len(preds)} predictions for {len(rows)} rows.")
    name = task.name
    if name == "superglue/record":
        # gold answers are strings on the rows; targets (entity correct or not) are not needed
        best = best_per_group([task.group(r) for r in rows], record_row_scores(preds))
        return record_scores([rows[i]["entity"] for i in best.values()], [rows[i]["answers"] or [] for i in best.values()])
    labels = label_indices(preds)
    gold = [task.target(r) for r in rows] if targets is None else list(targets)
    if any(g is None for g in gold):
        raise ValueError(f"{name}: some rows have no gold label (a test split?); metrics need labelled rows.")
    out: dict[str, float] = {}
    for metric in task.metrics:
        if metric == "accuracy":
            out[metric] = accuracy(labels, gold)
        elif metric == "macro_f1":
            out[metric] = macro_f1(labels, gold, num_classes=len(task.labels))
        elif metric == "mcc":
            out[metric] = mcc(labels, gold)
        elif metric in ("f1a", "em") and name == "superglue/multirc":
            out.update(multirc_scores([task.group(r) for r in rows], labels, gold))
        elif metric == "gender_parity":
            out[metric] = gender_parity([r["pair"] for r in rows], labels)
        else:
            raise ValueError(f"{name}: no implementation for metric {metric!r}.")
    return {m: out[m] for m in task.metrics}


def label_indices(preds) -> torch.Tensor:
    """Indices from indices or from logits (argmax over the last dimension)."""
    t = torch.as_tensor(preds)
    return t.argmax(-1) if t.dim() == 2 else t.reshape(-1).long()


def record_row_scores(preds) -> list[float]:
    """One score per ReCoRD candidate row: logit margin of class 1 over 0 for 2-class logits, else the value."""
    t = torch.as_tensor(preds, dtype=torch.float64)
    if t.dim() == 2 and t.shape[-1] == 2:
        t = t[:, 1] - t[:, 0]          # monotone in softmax P(class 1), without the exp
    return t.reshape(-1).tolist()


def _long(x) -> torch.Tensor:
    return torch.as_tensor(x).reshape(-1).long()
