"""Replicate pooling (bortlab.search.replicates) against numpy/scipy and the product of the replicate values."""
import math

import numpy as np
import pytest
from scipy import stats

from bortlab.search import SearchError
from bortlab.search.replicates import ReplicateLog, expand, pool


def test_expand_is_the_product_of_the_values_in_key_order():
    reps = expand({"task": ["glue/sst2", "glue/stsb"], "seed": [0, 1, 2]})
    assert reps == [{"task": t, "seed": s} for t in ("glue/sst2", "glue/stsb") for s in (0, 1, 2)]
    assert expand({}) == [{}] and expand(None) == [{}]


@pytest.mark.parametrize("bad", [{"seed": []}, {"seed": "012"}, {"seed": [0, 0]}, {"seed": 3}])
def test_bad_replicates_are_refused(bad):
    with pytest.raises(SearchError, match="replicates.seed"):
        expand(bad)


def test_pool_is_the_mean_and_the_standard_error_and_a_failure_fails_it():
    errors = [0.31, 0.27, 0.35, 0.30]
    mean, se = pool(errors)
    assert mean == pytest.approx(np.mean(errors)) and se == pytest.approx(stats.sem(errors))
    assert pool([0.3])[0] == 0.3 and math.isnan(pool([0.3])[1])
    assert pool([0.3, math.inf])[0] == math.inf


def test_replicate_log_round_trips_and_reports_the_latest_set(tmp_path):
    log = ReplicateLog(tmp_path / "replicates.csv")
    for seed, err in enumerate([0.4, 0.5, 0.6]):
        log.add("A", "lr=1", {"seed": seed}, err, seed)
    log.add("A", "lr=1", {"seed": 0}, 0.5, 3)          # re-run of seed 0 (a resumed sweep): the latest counts
    log.write()
    again = ReplicateLog(tmp_path / "replicates.csv")
    assert len(again.rows) == 4
    assert again.se("A", "lr=1") == pytest.approx(stats.sem([0.5, 0.5, 0.6]))
    assert math.isnan(again.se("B", "lr=1"))


def test_pool_batch_groups_jobs_by_pair_in_launch_order(tmp_path):
    log = ReplicateLog(tmp_path / "replicates.csv")
    reps = expand({"seed": [0, 1]})
    pairs = [("A", {"lr": 1}), ("B", {"lr": 1})]
    pooled = log.pool_batch(pairs, reps, [0.2, 0.4, 0.5, math.inf], first_job=10)
    assert pooled[0] == pytest.approx(0.3) and pooled[1] == math.inf        # B's failed replicate fails B
    assert [(r["arch"], r["replicate"], r["job"]) for r in log.rows] == [
        ("A", "seed=0", "10"), ("A", "seed=1", "11"), ("B", "seed=0", "12"), ("B", "seed=1", "13")]
    with pytest.raises(SearchError):
        log.pool_batch(pairs, reps, [0.1])
