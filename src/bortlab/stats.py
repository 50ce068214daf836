"""Confidence intervals for comparisons over seeds: the percentile bootstrap of a mean, and of a paired difference.

Benches report "mean [95% CI]" with these; a paired difference resamples seeds, not runs, so that two arms run
with the same seeds share their seed-to-seed variation (the comparison's noise is the difference's spread).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_mean_ci(values: Sequence[float], level: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the percentile bootstrap interval of the mean of `values`.

    One value gives a zero-width interval: there is nothing to resample, and callers print it as such.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"bootstrap_mean_ci needs a non-empty 1-D sequence, got shape {x.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), float(low), float(high)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], **kw) -> tuple[float, float, float]:
    """(mean, low, high) of a − b, paired by position (the same seed in both lists)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference_ci pairs by seed: got {a.size} and {b.size} values")
    return bootstrap_mean_ci(a - b, **kw)


def format_ci(mean: float, low: float, high: float, scale: float = 1.0, digits: int = 2) -> str:
    """'m [lo, hi]' with each figure multiplied by `scale` (100 for points of accuracy)."""
    return f"{mean * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
