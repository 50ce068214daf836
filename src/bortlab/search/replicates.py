"""Replicates: one (architecture, θ) evaluation as the mean error over several jobs (seeds, tasks).

The paper's Θ includes the random seed, and a single seed of a small dev set cannot rank candidates (RTE's
binomial SE is 3 points, more than the errors of a whole sweep differ). With replicates, e(ξ, θ) is the mean
over the product of the replicate values, e.g. {seed: [0, 1, 2], task: [glue/sst2, glue/stsb]}, and its
standard error is kept beside it. Pure: no Hydra.
"""
from __future__ import annotations

import csv
import io
import itertools
import math
import os
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from bortlab.search.space import SearchError


def expand(replicates: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """The product of the replicate values as one dict per job; [{}] (one plain job) when there are none."""
    if not replicates:
        return [{}]
    for key, values in replicates.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise SearchError(f"replicates.{key} must be a non-empty list of values (e.g. replicates.{key}=[0,1,2]), "
                              f"got {values!r}.")
        if len(set(map(repr, values))) != len(values):
            raise SearchError(f"replicates.{key} repeats a value ({list(values)}): each replicate must differ.")
    keys = list(replicates)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(replicates[k] for k in keys))]


def pool(errors: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of one candidate's replicate errors. A failed replicate (inf) fails
    the candidate: a mean over the replicates that happened to work would favour fragile candidates."""
    if not errors:
        raise SearchError("pool() got no replicate errors.")
    if any(not math.isfinite(e) for e in errors):
        return math.inf, math.nan
    mean = statistics.fmean(errors)
    se = statistics.stdev(errors) / math.sqrt(len(errors)) if len(errors) > 1 else math.nan
    return mean, se


class ReplicateLog:
    """replicates.csv in the sweep dir: one row per replicate job (arch, θ, replicate, error), appended after
    every batch and rewritten atomically; `se(arch_key, theta_key)` for the reports."""

    COLUMNS = ["arch", "theta", "replicate", "error", "job"]

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))

    def add(self, arch: str, theta: str, replicate: Mapping[str, Any], error: float, job: int) -> None:
        rep = " ".join(f"{k}={v}" for k, v in replicate.items())
        self.rows.append({"arch": arch, "theta": theta, "replicate": rep, "error": repr(float(error)), "job": str(job)})

    def write(self) -> None:
        from bortlab.files import write_atomic

        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self.path, buf.getvalue())

    def pool_batch(self, pairs, reps: list[dict], errors: list[float], first_job: int = 0) -> list[float]:
        """A launched batch of len(pairs) × len(reps) jobs (job n·R + r = replicate r of pair n) as one pooled
        error per (arch, θ) pair; every job is logged and the file rewritten."""
        from bortlab.search.fptas import theta_key

        if len(errors) != len(pairs) * len(reps):
            raise SearchError(f"{len(errors)} replicate errors for {len(pairs)} pairs x {len(reps)} replicates.")
        pooled = []
        for n, (arch, theta) in enumerate(pairs):
            mine = errors[n * len(reps):(n + 1) * len(reps)]
            for r, (rep, err) in enumerate(zip(reps, mine)):
                self.add(str(arch), theta_key(theta), rep, err, first_job + n * len(reps) + r)
            pooled.append(pool(mine)[0])
        self.write()
        return pooled

    def se(self, arch: str, theta: str) -> float:
        """The standard error of the latest complete set of replicates recorded for (arch, θ)."""
        latest: dict[str, float] = {}
        for row in self.rows:
            if row["arch"] == arch and row["theta"] == theta:
                latest[row["replicate"]] = float(row["error"])
        return pool(list(latest.values()))[1] if latest else math.nan
