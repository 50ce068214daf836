"""Anytime refinement for the FPTAS: where to spend evaluations beyond the ε pass.

The ε pass (bortlab.search.fptas) evaluates one representative per cell; its guarantee needs nothing more.
What it cannot see is the error of the other members of a cell: under the ABnC premise they are no better
than the representative, off the premise (error depending on shape, noise) one of them may be. The
refinement spends a further budget best first: a small surrogate of the error, fitted to every evaluation so
far, predicts log e of each unevaluated candidate; the candidates with the highest predicted W = S / ê
(S = the cost factor (p_T − p)(i_T − i) / (p_T i_T), known exactly) are evaluated next, in rounds, and the
surrogate is refitted after each round. The ε pass only adds information, so the (1 − ε) guarantee of
its answer is kept: refinement can only raise W.

The search runs the first round before the ε pass: the cheapest family, whose (p, i) is the corner of every
front and which is the answer whenever the errors hardly differ (an uninformative error proxy).

The surrogate: ridge regression of log e on [1, z, z²] of the standardised logarithms of every Arch field
that varies over the space and of the B-layer capacity (non-embedding parameters). Pure numpy, O(n·k²).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from bortlab.models.arch import Arch

_FIELDS = tuple(f.name for f in dataclasses.fields(Arch))
ROUNDS = 8   # refinement rounds when no max_batch_size sets their size


def _raw_features(archs: Sequence[Arch], capacity: Callable[[Arch], float]) -> np.ndarray:
    cols = []
    for name in _FIELDS:
        values = [getattr(a, name) for a in archs]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in values):
            continue
        if len(set(values)) > 1:
            cols.append([math.log(v) for v in values])
    cols.append([math.log(max(capacity(a), 1.0)) for a in archs])
    return np.asarray(cols, dtype=float).T


def design(archs: Sequence[Arch], capacity: Callable[[Arch], float]) -> np.ndarray:
    """[1, z, z²] of the standardised log features, one row per architecture."""
    x = _raw_features(archs, capacity)
    sd = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return np.hstack([np.ones((len(archs), 1)), z, z ** 2])


def fit_predict(phi: np.ndarray, known: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """Ridge fit of y on the rows `known` of phi (intercept not penalised); predictions for every row."""
    a = phi[known]
    penalty = ridge * len(y) * np.eye(phi.shape[1])
    penalty[0, 0] = 0.0
    beta = np.linalg.solve(a.T @ a + penalty + 1e-12 * np.eye(phi.shape[1]), a.T @ y)
    return phi @ beta


def choose(archs: Sequence[Arch], saving: Sequence[float], errors: Sequence[float | None], k: int,
           capacity: Callable[[Arch], float], phi: np.ndarray | None = None) -> list[int]:
    """Indices of the k unevaluated candidates (error None) with the highest predicted W = saving / ê.
    `errors[j]` is the measured error (min over θ; inf = failed, excluded from the fit) or None."""
    phi = design(archs, capacity) if phi is None else phi
    known = np.array([e is not None and math.isfinite(e) for e in errors])
    open_ = [j for j, e in enumerate(errors) if e is None and saving[j] > 0]
    if not open_ or k <= 0:
        return []
    if known.sum() >= 2:
        y = np.log(np.maximum([errors[j] for j in np.flatnonzero(known)], 1e-12))
        pred = fit_predict(phi, known, y)
    else:
        pred = np.zeros(len(archs))
    # highest predicted W first; ties: the larger saving, then the input order (deterministic)
    open_.sort(key=lambda j: (-saving[j] * math.exp(-pred[j]), -saving[j], j))
    return open_[:k]


def refine_rounds(table: list, run: Callable[[list], None], total: int, n_thetas: int, max_batch_size: int | None,
                  capacity: Callable[[Arch], float], p_T: float, i_T: float, n_rounds: int = ROUNDS, start: int = 0) -> int:
    """Spend evaluations up to `total` (arch, θ) pairs on the candidates of `table` with the highest
    predicted W, in rounds of max_batch_size // n_thetas candidates (or the budget in `n_rounds` equal
    rounds), refitting after each; `run(chosen)` evaluates them. Returns the number of rounds."""
    archs = [c.arch for c in table]
    sav = [max(p_T - c.p, 0.0) * max(i_T - c.i, 0.0) / (p_T * i_T) for c in table]
    phi = None
    rounds = start
    per_round = None
    while True:
        used = sum(len(c.errors) for c in table)
        left = (total - used) // n_thetas
        if left <= 0 or any(c.W == math.inf for c in table):
            return rounds
        if per_round is None:
            per_round = max(1, max_batch_size // n_thetas if max_batch_size else math.ceil(left / n_rounds))
        phi = design(archs, capacity) if phi is None else phi
        errors = [c.e if c.errors else None for c in table]
        picked = choose(archs, sav, errors, min(per_round, left), capacity, phi)
        if not picked:
            return rounds
        rounds += 1
        for j in picked:
            table[j].refined = rounds
        run([table[j] for j in picked])
