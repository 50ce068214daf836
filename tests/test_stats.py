"""bortlab.stats against scipy's bootstrap and against the normal-theory interval it should approach."""
import numpy as np
import pytest
from scipy import stats as sps

from bortlab.stats import bootstrap_mean_ci, format_ci, paired_difference_ci


def test_interval_matches_scipys_percentile_bootstrap():
    x = np.random.default_rng(3).normal(0.7, 0.05, size=10)
    mean, low, high = bootstrap_mean_ci(x, n_resamples=40_000)
    ref = sps.bootstrap((x,), np.mean, n_resamples=40_000, method="percentile", random_state=1).confidence_interval
    assert mean == pytest.approx(x.mean())
    assert low == pytest.approx(ref.low, abs=2e-3) and high == pytest.approx(ref.high, abs=2e-3)


def test_large_sample_interval_approaches_the_normal_one():
    x = np.random.default_rng(0).exponential(1.0, size=2000)
    _, low, high = bootstrap_mean_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert high - low == pytest.approx(2 * half, rel=0.08)


def test_pairing_removes_shared_seed_noise():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 0.05, size=8)           # large, shared by both arms
    a = 0.70 + seed_effect + rng.normal(0, 0.002, size=8)
    b = 0.68 + seed_effect + rng.normal(0, 0.002, size=8)
    mean, low, high = paired_difference_ci(a, b)
    assert 0 < low < mean < high and high - low < 0.01   # unpaired, the interval would straddle 0
    assert mean == pytest.approx(np.mean(a - b))


def test_bad_input_is_refused_and_one_value_has_no_width():
    with pytest.raises(ValueError, match="pairs by seed"):
        paired_difference_ci([1, 2], [1])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean_ci([])
    assert bootstrap_mean_ci([0.5]) == (0.5, 0.5, 0.5)
    assert format_ci(0.01, -0.002, 0.02, scale=100, digits=1) == "1.0 [-0.2, 2.0]"
