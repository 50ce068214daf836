"""The FPTAS for optimal subarchitecture extraction (DESIGN §4), as a pure function.

    search(candidates, evaluate, epsilon, thetas=({},), params=None, ops=None) -> SearchResult

1. p(ξ), i(ξ) for every candidate (analytic by default): O(|Ξ|), no training. The maximum point T has
   p(T) = max p and i(T) = max i over the space, or the costs of a given `source` architecture.
2. Candidates that differ only in a *cost-neutral* field (`fold`, default the head count A: with
   head_dim = H/A it leaves p unchanged) form a family; a family is one unit of the partition and its
   members are searched like hyperparameters, i.e. folded into Θ.
3. ε-partition: cell = (⌊log_{1+ε} p⌋, ⌊log_{1+ε} i⌋) of the family's cheapest costs. One representative
   family per non-empty cell, chosen by the ABnC order (`representative_key`).
4. Every member of every representative family is evaluated under every θ (in batches of `max_batch_size`);
   e = min over θ; a failed evaluation is inf, recorded, and bounded by `max_failure_rate`.
5. W(ξ) = (p(T) − p(ξ))(i(T) − i(ξ)) / (p(T) i(T) e(ξ)); the answer is argmax W, plus the non-dominated
   (p, i, e) front of the evaluated candidates.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from bortlab.models.arch import Arch
from bortlab.search.cost import CostModel
from bortlab.search.pareto import pareto_front
from bortlab.search.space import SearchError

log = logging.getLogger(__name__)
_FIELDS = tuple(f.name for f in dataclasses.fields(Arch))

Theta = Mapping[str, Any]
Evaluate = Callable[[list[tuple[Arch, Theta]]], Sequence[Any]]


def theta_key(theta: Theta) -> str:
    """Canonical text of a hyperparameter set (the column name in candidates.csv, the resume key)."""
    return " ".join(f"{k}={theta[k]}" for k in sorted(theta))


@dataclass
class Candidate:
    """One row of the candidate table."""

    arch: Arch
    p: float
    i: float
    cell: tuple[int, int]
    family: int
    representative: bool = False
    errors: dict[str, float] = field(default_factory=dict)  # theta_key -> error (inf = failed)
    e: float | None = None       # min over θ; None until evaluated, inf if every θ failed
    theta: dict | None = None    # the θ reaching e
    W: float | None = None

    @property
    def status(self) -> str:
        if not self.representative:
            return "skipped"
        if self.e is None:
            return "pending"
        return "evaluated" if math.isfinite(self.e) else "failed"


@dataclass
class SearchResult:
    best: Arch
    best_theta: dict
    best_W: float
    best_error: float
    front: list[Candidate]
    table: list[Candidate]
    n_evaluations: int   # (arch, θ) pairs the FPTAS evaluated, including those read back from `done`
    n_launched: int      # pairs this call sent to `evaluate`
    n_failed: int
    n_cells: int
    epsilon: float
    p_T: float
    i_T: float

    @property
    def best_row(self) -> Candidate:
        return next(c for c in self.table if c.arch == self.best)


def w_coefficient(p: float, i: float, e: float, p_T: float, i_T: float) -> float:
    saving = (p_T - p) * (i_T - i)
    if e == 0:      # a perfect dev score: better than any finite W, unless it saves nothing at all
        return math.inf if saving > 0 else 0.0
    return saving / (p_T * i_T * e)


def cell_of(p: float, i: float, epsilon: float) -> tuple[int, int]:
    base = math.log1p(epsilon)
    return (math.floor(math.log(p) / base), math.floor(math.log(i) / base))


def cell_bound(p_min: float, p_max: float, i_min: float, i_max: float, epsilon: float) -> int:
    """Upper bound on the number of non-empty cells: O(ε⁻²), independent of |Ξ|."""
    base = math.log1p(epsilon)
    return (1 + math.floor(math.log(p_max / p_min) / base)) * (1 + math.floor(math.log(i_max / i_min) / base))


def representative_key(rule: str) -> Callable[["_Family"], tuple]:
    """The order in which a cell's families compete; the first is the representative.

    'abnc' (default): most parameters in the middle (B) layers first, i.e. `Arch.num_params(non_embedding)`,
    then deeper, then cheaper. Inside a cell p and i agree within (1+ε), so the cost factor of W is fixed up
    to that factor and the choice decides e. Under ABnC the embedding (A) and output (C) layers are cheap and
    carry little of the function, so the candidate spending most of its budget on B layers is the one
    expected to reach the lowest error after partial training.
    'cheapest': lowest p, then lowest i (maximises W's cost factor, ignores e; kept for comparison)."""
    if rule == "abnc":
        return lambda f: (-f.b_params, -f.depth, f.p, f.i, f.order)
    if rule == "cheapest":
        return lambda f: (f.p, f.i, -f.b_params, f.order)
    raise SearchError(f"Unknown representative rule {rule!r}; use 'abnc' or 'cheapest'.")


@dataclass
class _Family:
    members: list[Candidate]
    order: int

    @property
    def p(self) -> float:
        return min(c.p for c in self.members)

    @property
    def i(self) -> float:
        return min(c.i for c in self.members)

    @property
    def b_params(self) -> int:
        return max(c.arch.num_params(non_embedding=True) for c in self.members)

    @property
    def depth(self) -> int:
        return max(c.arch.depth for c in self.members)


def search(
    candidates: Iterable[Arch],
    evaluate: Evaluate,
    epsilon: float,
    thetas: Sequence[Theta] = ({},),
    params: Callable[[Arch], float] | None = None,
    ops: Callable[[Arch], float] | None = None,
    *,
    source: Arch | None = None,
    fold: Sequence[str] = ("heads",),
    representative: str = "abnc",
    max_batch_size: int | None = None,
    max_failure_rate: float = 1.0,
    done: Mapping[tuple[Arch, str], float] | None = None,
    on_batch: Callable[[list[Candidate]], None] | None = None,
) -> SearchResult:
    """Run the FPTAS. `done` maps (arch, theta_key) to errors already measured (resume): those pairs are
    not evaluated again. `on_batch(table)` is called after every batch (e.g. to write candidates.csv)."""
    check_epsilon(epsilon)
    if not 0.0 <= max_failure_rate <= 1.0:
        raise SearchError(f"max_failure_rate must lie in [0, 1], got {max_failure_rate!r}.")
    if max_batch_size is not None and max_batch_size < 1:
        raise SearchError(f"max_batch_size must be >= 1 or None (one batch), got {max_batch_size!r}.")
    archs = list(dict.fromkeys(candidates))
    if not archs:
        raise SearchError("The FPTAS got no candidate architectures: the search space is empty after constraints.")
    thetas = [dict(t) for t in thetas] or [{}]
    keys = [theta_key(t) for t in thetas]
    theta_of = dict(zip(keys, thetas))
    if len(set(keys)) != len(keys):
        raise SearchError(f"Duplicate hyperparameter sets in thetas: {keys}.")
    cost = CostModel()
    params, ops = params or cost.params, ops or cost.ops
    table = _cost_table(archs, params, ops)
    p_T, i_T = (params(source), ops(source)) if source is not None else (max(c.p for c in table), max(c.i for c in table))
    bigger = [c for c in table if c.p > p_T or c.i > i_T]
    if bigger:
        raise SearchError(f"{len(bigger)} candidate(s), e.g. {bigger[0].arch}, cost more than the source architecture {source}: "
                          "they are not sub-architectures of it. Shrink the space or drop `source`.")

    # families: members differ only in folded fields *and* have the same p (so A is folded only when it is
    # truly cost-neutral; with an explicit head_dim, A changes p and each head count is its own family)
    by_key: dict[tuple, _Family] = {}
    for c in table:
        key = tuple(getattr(c.arch, f) for f in _FIELDS if f not in fold) + (c.p,)
        by_key.setdefault(key, _Family([], len(by_key))).members.append(c)
    families = list(by_key.values())
    cells: dict[tuple[int, int], list[_Family]] = {}
    for fam in families:
        cell = cell_of(fam.p, fam.i, epsilon)
        for c in fam.members:
            c.cell, c.family = cell, fam.order
        cells.setdefault(cell, []).append(fam)
    order = representative_key(representative)
    reps = [min(fams, key=order) for _, fams in sorted(cells.items())]
    for fam in reps:
        for c in fam.members:
            c.representative = True
    log.info("FPTAS: %d candidates, %d families, %d cells at epsilon=%g, %d theta(s)", len(table), len(families), len(cells), epsilon, len(thetas))

    # evaluate every (member, θ) of the representatives, reusing `done`
    done = done or {}
    todo = []
    for fam in reps:
        for c in fam.members:
            for t, k in zip(thetas, keys):
                if (c.arch, k) in done and math.isfinite(done[(c.arch, k)]):
                    c.errors[k] = float(done[(c.arch, k)])
                else:
                    todo.append((c, t, k))
    size = max_batch_size or max(len(todo), 1)
    n_launched = 0
    for start in range(0, len(todo), size):
        batch = todo[start:start + size]
        values = list(evaluate([(c.arch, t) for c, t, _ in batch]))
        if len(values) != len(batch):
            raise SearchError(f"evaluate returned {len(values)} values for a batch of {len(batch)} jobs; it must return one error per (arch, theta) pair.")
        for (c, _, k), value in zip(batch, values):
            c.errors[k] = as_error(value, f"{c.arch} with theta {{{k}}}")
        n_launched += len(batch)
        _summarise(table, p_T, i_T, theta_of)
        if on_batch is not None:
            on_batch(table)
        evaluated = [v for c in table for v in c.errors.values()]
        n_failed = sum(not math.isfinite(v) for v in evaluated)
        if n_failed > max_failure_rate * len(evaluated):
            raise SearchError(
                f"{n_failed} of {len(evaluated)} evaluations failed, more than max_failure_rate={max_failure_rate}. "
                "Look at the failed jobs' logs; the finished ones are kept and a re-run resumes from them."
            )
    _summarise(table, p_T, i_T, theta_of)
    ok = [c for c in table if c.W is not None]
    if not ok:
        raise SearchError("Every evaluated candidate failed (no finite error), so there is no answer; look at the jobs' logs.")
    best = max(ok, key=lambda c: (c.W, -c.e, -c.p, -c.i))
    front_idx = pareto_front([(c.p, c.i, c.e) for c in ok])
    n_eval = sum(len(c.errors) for c in table)
    return SearchResult(
        best=best.arch, best_theta=dict(best.theta or {}), best_W=best.W, best_error=best.e,
        front=[ok[j] for j in front_idx], table=table, n_evaluations=n_eval, n_launched=n_launched,
        n_failed=sum(not math.isfinite(v) for c in table for v in c.errors.values()),
        n_cells=len(cells), epsilon=float(epsilon), p_T=p_T, i_T=i_T,
    )


def check_epsilon(epsilon: Any) -> None:
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0 or not math.isfinite(epsilon):
        raise SearchError(f"epsilon must be a positive finite number (e.g. hydra.sweeper.epsilon=0.2), got {epsilon!r}; "
                          "epsilon -> 0 is exhaustive search.")


def as_error(value: Any, what: str) -> float:
    """A job's return value as an error: a number >= 0; NaN or inf (diverged / failed) -> inf. An error of 0
    (a perfect dev score) is recorded; its W is infinite."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()  # 0-d torch / numpy scalar
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SearchError(
            f"The evaluation of {what} returned {value!r} ({type(value).__name__}), not a number. The task function "
            "must return its error (lower is better, e.g. 1 - dev accuracy) as a float."
        )
    value = float(value)
    if math.isnan(value) or value == math.inf:
        return math.inf
    if value < 0:
        raise SearchError(
            f"The evaluation of {what} returned error {value!r}; an error is >= 0 (lower is better). Use an error "
            "(1 - metric, or a loss), not a score."
        )
    return value


def _cost_table(archs: list[Arch], params, ops) -> list[Candidate]:
    table = []
    for arch in archs:
        p, i = float(params(arch)), float(ops(arch))
        if not (p > 0 and i > 0 and math.isfinite(p) and math.isfinite(i)):
            raise SearchError(f"The cost model gave p={p}, i={i} for {arch}; both must be positive and finite.")
        table.append(Candidate(arch, p, i, cell=(0, 0), family=-1))
    return table


def _summarise(table: list[Candidate], p_T: float, i_T: float, theta_of: Mapping[str, dict]) -> None:
    for c in table:
        finite = {k: v for k, v in c.errors.items() if math.isfinite(v)}
        if not c.errors:
            continue
        if finite:
            k = min(finite, key=finite.get)
            c.e, c.theta = finite[k], dict(theta_of[k])
            c.W = w_coefficient(c.p, c.i, c.e, p_T, i_T)
        else:
            c.e, c.theta, c.W = math.inf, None, None
