"""The Θ loop: Agora's outer loop over hyperparameter sets, with pruning.

Round r: train one model per remaining θ (each on train + the pool of points gathered so far), rank them by
their score on Agora's dev set (never the official dev), prune, and add the best model's points (its
mistakes on Agora's dev, transformed and labelled: `agora/final.jsonl` of its run) to the pool. Repeat until
no θ remains (or `max_rounds`); the answer is the best-scoring job of all rounds.

Pruning rule. The source says only "remove the longest common sequence rooted at the first element", which
admits no single reading. bortlab drops the worse ⌈(1 − keep)·n⌉ of the n ranked sets, at least one, each
round (`keep=0.5`: successive halving). Why: it always terminates (n strictly decreases), in
⌈log₂|Θ|⌉ + 1 rounds for keep = 0.5, with fewer than 2|Θ| training jobs in all; the sets that survive are
exactly those that kept doing well as the pool grew; and it has one knob with an obvious meaning. Failed jobs
rank last and so are pruned first.

The loop itself is pure: `theta_loop(thetas, train_batch)` calls `train_batch(thetas, pool, round)` to get
one `Job` per θ. The Hydra sweeper (`hydra/sweeper=agora`) supplies a `train_batch` that launches the jobs
through Hydra's launcher; tests supply a function.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence


@dataclass
class Job:
    theta: list[str]                       # the θ's overrides, e.g. ["optim.lr=1e-4", "seed=0"]
    round: int
    score: float                           # Agora-dev score (higher is better); -inf when the job failed
    points: Optional[str] = None           # jsonl of the points its mistakes produced
    reported: Optional[float] = None       # the official dev score (never used for any decision)
    dir: Optional[str] = None
    status: str = "ok"


@dataclass
class ThetaResult:
    best: Optional[Job]
    rounds: list[dict] = field(default_factory=list)
    pool: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"best": asdict(self.best) if self.best else None, "rounds": self.rounds, "pool": self.pool}


def prune(ranked: Sequence, keep: float = 0.5) -> list:
    """Keep the best of a list ranked best first: drop ⌈(1 − keep)·n⌉, at least one."""
    if not 0.0 <= keep < 1.0:
        raise ValueError(f"keep must be in [0, 1), got {keep}: with keep >= 1 nothing is ever pruned.")
    n = len(ranked)
    drop = max(1, math.ceil((1.0 - keep) * n - 1e-9))
    return list(ranked[: max(0, n - drop)])


def rank(jobs: Sequence[Job]) -> list[Job]:
    """Best first by score; ties keep the order of Θ (stable), failed jobs last."""
    return sorted(jobs, key=lambda j: -j.score if math.isfinite(j.score) else math.inf)


def theta_loop(thetas: Sequence[list[str]], train_batch: Callable[[list[list[str]], list[str], int], list[Job]],
               keep: float = 0.5, max_rounds: Optional[int] = None,
               on_round: Optional[Callable[[ThetaResult], None]] = None) -> ThetaResult:
    if not thetas:
        raise ValueError("the Θ loop needs at least one hyperparameter set")
    remaining = [list(t) for t in thetas]
    res = ThetaResult(best=None)
    r = 1
    while remaining and (max_rounds is None or r <= max_rounds):
        jobs = train_batch(remaining, list(res.pool), r)
        ranked = rank(jobs)
        if ranked and math.isfinite(ranked[0].score) and (res.best is None or ranked[0].score > res.best.score):
            res.best = ranked[0]
        fed = ranked[0].points if ranked and math.isfinite(ranked[0].score) else None
        if fed:
            res.pool.append(fed)
        kept = prune(ranked, keep)
        res.rounds.append({"round": r, "ranking": [asdict(j) for j in ranked],
                           "kept": [j.theta for j in kept], "pruned": [j.theta for j in ranked if j not in kept],
                           "fed_points": fed})
        if on_round:
            on_round(res)
        remaining = [j.theta for j in kept]
        r += 1
    return res
