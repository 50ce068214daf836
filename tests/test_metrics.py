"""Every metric in bortlab.data.metrics against scikit-learn / scipy on random and degenerate data."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from bortlab.data import get_task
from bortlab.data.metrics import combined, compute_metrics, selection_metric

SEEDS = range(6)


def _labels(seed: int, n: int, k: int, skew: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, k, n)
    # predictions that agree with the targets part of the time, so scores are not all near chance
    p = np.where(rng.random(n) < 0.6 + skew, t, rng.integers(0, k, n))
    return p, t


def _one(name, p, t, **kw) -> float:
    return compute_metrics([name], p, t, **kw)[name]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3])
def test_classification_metrics_equal_sklearn(seed, k):
    n = [7, 50, 333][seed % 3]
    p, t = _labels(seed, n, k)
    assert _one("accuracy", p, t) == pytest.approx(accuracy_score(t, p), abs=1e-6)
    assert _one("mcc", p, t) == pytest.approx(matthews_corrcoef(t, p), abs=1e-6)
    assert _one("macro_f1", p, t) == pytest.approx(f1_score(t, p, average="macro", zero_division=0), abs=1e-6)
    if k == 2:
        assert _one("f1", p, t) == pytest.approx(f1_score(t, p, zero_division=0), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_macro_f1_with_a_class_missing_from_both_sides(seed):
    # CB has three classes; a small eval batch may lack one entirely: sklearn averages over present classes
    p, t = _labels(seed, 40, 2)
    p, t = p * 2, t * 2                                   # classes {0, 2}; class 1 never occurs
    assert _one("macro_f1", p, t) == pytest.approx(f1_score(t, p, average="macro", zero_division=0), abs=1e-6)


DEGENERATE = [
    ([1, 1, 1, 1], [1, 1, 1, 1]),      # perfect but constant: MCC is 0/0
    ([0, 0, 0, 0], [0, 0, 0, 0]),      # no positives anywhere: F1 is 0/0
    ([1, 1, 1, 1], [0, 1, 0, 1]),      # constant predictions
    ([0, 1, 0, 1], [1, 1, 1, 1]),      # constant targets
    ([0, 1, 1, 0], [1, 0, 0, 1]),      # all wrong
    ([1], [0]),
]


@pytest.mark.parametrize("p,t", DEGENERATE)
def test_degenerate_classification_equals_sklearn(p, t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # sklearn warns on 0/0
        ref_mcc = matthews_corrcoef(t, p)
    assert _one("mcc", p, t) == pytest.approx(ref_mcc, abs=1e-6)
    assert _one("f1", p, t) == pytest.approx(f1_score(t, p, zero_division=0), abs=1e-6)
    assert _one("accuracy", p, t) == pytest.approx(accuracy_score(t, p), abs=1e-6)
    assert _one("macro_f1", p, t) == pytest.approx(f1_score(t, p, average="macro", zero_division=0), abs=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    n = [5, 80, 1500][seed % 3]
    gold = rng.uniform(0, 5, n)
    if seed % 2:                                  # STS-B gold scores are coarse: many ties
        gold = np.round(gold * 5) / 5
    pred = gold + rng.normal(0, 1.0 + seed, n)
    if seed == 3:
        pred = np.round(pred)                     # ties on the prediction side too
    got = compute_metrics(get_task("glue/stsb"), torch.tensor(pred, dtype=torch.float32), gold)
    assert got["pearson"] == pytest.approx(pearsonr(pred.astype(np.float32), gold).statistic, abs=1e-6)
    assert got["spearman"] == pytest.approx(spearmanr(pred.astype(np.float32), gold).statistic, abs=1e-6)


@pytest.mark.parametrize("pred,gold", [([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])])
def test_constant_correlation_is_nan_in_scipy_and_zero_here(pred, gold):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(pearsonr(pred, gold).statistic) and math.isnan(spearmanr(pred, gold).statistic)
    with pytest.warns(RuntimeWarning, match="constant"):
        got = compute_metrics(["pearson", "spearman"], pred, gold)
    assert got == {"pearson": 0.0, "spearman": 0.0}


@pytest.mark.parametrize("seed", SEEDS)
def test_grouped_exact_match(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 12, 90)
    p, t = _labels(seed, 90, 2, skew=0.3)
    ref = np.mean([np.array_equal(p[groups == g], t[groups == g]) for g in np.unique(groups)])
    assert _one("em", p, t, groups=groups.tolist()) == pytest.approx(ref)
    with pytest.raises(ValueError, match="groups"):
        _one("em", p, t)


def test_task_metric_names_inputs_and_errors():
    p, t = _labels(0, 64, 2)
    ref = {"f1": f1_score(t, p), "accuracy": accuracy_score(t, p)}
    by_task = compute_metrics("glue/mrpc", torch.tensor(p), list(t))
    assert list(by_task) == ["f1", "accuracy"] and selection_metric("glue/mrpc") == "f1"
    assert by_task == pytest.approx(ref, abs=1e-6)
    # any input types (a Task, float predictions, tensor targets): the same scikit-learn values
    assert compute_metrics(get_task("glue/mrpc"), p.astype(np.float64), torch.tensor(t)) == pytest.approx(ref, abs=1e-6)
    assert combined(by_task, "glue/mrpc") == pytest.approx((ref["f1"] + ref["accuracy"]) / 2, abs=1e-6)
    assert compute_metrics("acc", p, t) == {"acc": pytest.approx(accuracy_score(t, p))}
    assert [selection_metric(n) for n in ("glue/cola", "glue/stsb", "glue/ax")] == ["mcc", "pearson", "mcc"]
    with pytest.raises(ValueError, match="differ in length"):
        compute_metrics("accuracy", p[:3], t)
    with pytest.raises(ValueError, match="argmax"):
        compute_metrics("accuracy", [0.2, 0.7], [0, 1])
    with pytest.raises(ValueError, match="binary"):
        compute_metrics("f1", [0, 2], [0, 1])
    with pytest.raises(ValueError, match="Unknown metric"):
        compute_metrics("bleu", [0], [0])
