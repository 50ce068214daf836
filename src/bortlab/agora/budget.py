"""How many points a round adds, from which dev rows, and when: the pure parts of an Agora round.

- `schedule`: the global steps at which rounds fire (`at_steps`, `every_n_steps`), or None for epoch rounds.
- `pick_sources`: the dev rows a round perturbs: its mistakes (Agora), a uniform draw of dev rows right or
  wrong (the control that tells targeting from mere labelled coverage), or all of them.
- `per_source`: points generated per source row, so that a points budget can be met.
- `choose_points`: the budget applied to the labelled points: trimmed to exactly n, class-balanced over the
  labeller's labels as far as they allow (`balance`).
"""
from __future__ import annotations

import math
import random
from typing import Optional, Sequence

from bortlab.config import SetupError
from bortlab.data.subsample import share

SOURCES = ("mistakes", "random", "all")


def schedule(at_steps, every_n_steps, rounds: int) -> Optional[list[int]]:
    """The optimiser steps after which rounds fire, or None when rounds fire on epoch ends."""
    if at_steps is not None and every_n_steps is not None:
        raise SetupError(f"agora.at_steps={list(at_steps)} and agora.every_n_steps={every_n_steps} are two step "
                         "schedules: set one of them (and leave the other null).")
    if at_steps is not None:
        steps = [int(s) for s in at_steps]
        if not steps or any(s < 1 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
            raise SetupError(f"agora.at_steps={steps} must be a non-empty, strictly increasing list of optimiser "
                             "steps >= 1, e.g. agora.at_steps=[250,500,750] (one round after each).")
        return steps
    if every_n_steps is not None:
        n = int(every_n_steps)
        if n < 1:
            raise SetupError(f"agora.every_n_steps={every_n_steps} must be >= 1 (or null for epoch rounds).")
        return [n * (r + 1) for r in range(rounds)]
    return None


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise SetupError(f"agora.source={source!r}: choose mistakes (the student's dev mistakes: Agora), random "
                         "(dev rows drawn uniformly, right or wrong: the control) or all (every dev row).")
    return source


def pick_sources(source: str, n_dev: int, wrong: Sequence[int], k: int, points: Optional[int],
                 max_sources: Optional[int], rng: random.Random) -> list[int]:
    """Dev-row positions to perturb this round. `random` draws as many rows as the budget needs
    (⌈points / k⌉), or, without a budget, as many as there are mistakes, so that it matches Agora's volume."""
    if source == "mistakes":
        chosen = list(wrong)
    elif source == "all":
        chosen = list(range(n_dev))
    else:
        want = math.ceil(points / k) if points else len(wrong)
        chosen = rng.sample(range(n_dev), min(n_dev, want))
    if max_sources and len(chosen) > max_sources:
        chosen = rng.sample(chosen, int(max_sources))
    return sorted(chosen)


def per_source(k: int, n_sources: int, points: Optional[int], balance: bool) -> int:
    """New points to generate per source row: k, or more when k per source cannot fill the budget (with
    `balance`, twice the budget, so the labeller's rarer label has points to be chosen from)."""
    if not points or not n_sources:
        return k
    return max(k, math.ceil(points * (2 if balance else 1) / n_sources))


def choose_points(labels: Sequence[int], n: Optional[int], balance: bool, rng: random.Random) -> list[int]:
    """Positions of the points to keep, in their original order. `n` = the budget (None: no trim).
    Balanced: equal counts per label as far as the labels allow (a short label's deficit goes to the others);
    without a budget, every label is cut to the rarest label's count among those present."""
    pos = list(range(len(labels)))
    if not balance:
        return pos if n is None or n >= len(pos) else sorted(rng.sample(pos, n))
    by_label: dict[int, list[int]] = {}
    for p in pos:
        by_label.setdefault(int(labels[p]), []).append(p)
    if n is None:
        quota = dict.fromkeys(by_label, min((len(v) for v in by_label.values()), default=0))
    else:
        quota = share(n, {y: len(v) for y, v in by_label.items()})
    return sorted(p for y, v in by_label.items() for p in rng.sample(v, quota[y]))
