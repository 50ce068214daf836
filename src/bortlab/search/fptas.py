"""The FPTAS for optimal subarchitecture extraction (DESIGN §4), as a pure function.

    search(candidates, evaluate, epsilon, thetas=({},), params=None, ops=None) -> SearchResult

1. p(ξ), i(ξ) for every candidate (analytic by default): O(|Ξ|), no training. The maximum point T has
   p(T) = max p and i(T) = max i over the space, or the costs of a given `source` architecture.
2. ε-partition on the quantity W multiplies, S = (p_T − p)(i_T − i) / (p_T i_T): cell(ξ) = ⌊log_w S(ξ)⌋ with
   w = `cell_width(ε)` = 1/(1 − ε) for ε ≤ ½ (4ε beyond; always ≤ (1 + ε)²), and one cell for S = 0 (W = 0
   there; those are partitioned by log(p·i)). Inside a cell S varies by less than w: it is the coarsest partition with that property (cells
   on log(p_T − p) and log(i_T − i) of width √w would be a refinement of it, with more cells).
3. Candidates of one cell that differ only in a *cost-neutral* field (`fold`, default the head count A) and
   have the same p form a family, searched like hyperparameters (folded into Θ).
4. One representative family per non-empty cell: the largest *capacity* (non-embedding parameters), then the
   largest S (`representative_key`). Every member of it is evaluated under every θ; e = min over θ.
5. Anytime refinement (`refine`, bortlab.search.refine): a further budget (by default as many evaluations
   again) spent on the cheapest family first, then best first on the candidates with the highest predicted W.
   It only adds evaluations, so the guarantee below is kept.
6. W(ξ) = (p(T) − p(ξ))(i(T) − i(ξ)) / (p(T) i(T) e(ξ)); the answer is argmax W, plus the non-dominated
   (p, i, e) front of the evaluated candidates.

Guarantee (ABnC premise: the best error a family reaches, over its folded fields and Θ, does not increase
with capacity). Let ξ* be optimal, F* its family, C its cell and R the representative of C. By the rule,
cap(R) ≥ cap(F*), so by the premise e(R) ≤ e(F*) ≤ e(ξ*), where e(R) is reached by a member m of R. m and ξ*
lie in C, so S(m) > S(ξ*) / w. Hence W(answer) ≥ W(m) = S(m) / e(R) > S(ξ*) / (w e(ξ*)) = guarantee(ε) · W*,
and guarantee(ε) ≥ 1 − ε. (If W* = 0 there is nothing to prove; e = 0 gives W = inf, which the
representative then also reaches.) Cells on (log p, log i) do not bound S: near T, p_T − p can vary from 0
to ε p_T inside one of them.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from bortlab.models.arch import Arch
from bortlab.search.cells import cell_bound, cell_of, cell_width, guarantee, saving  # noqa: F401 (public here too)
from bortlab.search.cost import CostModel
from bortlab.search.pareto import pareto_front
from bortlab.search.refine import refine_rounds
from bortlab.search.space import SearchError

log = logging.getLogger(__name__)
_FIELDS = tuple(f.name for f in dataclasses.fields(Arch))

REFINE = 1.0   # default refinement budget: as many evaluations again as the ε pass made
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
    cell: tuple[int | None, int | None]   # cells.cell_of: (⌊log_w S⌋, None), or (None, ⌊log_w p·i⌋) if S = 0
    family: int
    representative: bool = False          # its family represents the cell (evaluated by the ε pass)
    errors: dict[str, float] = field(default_factory=dict)  # theta_key -> error (inf = failed)
    e: float | None = None       # min over θ; None until evaluated, inf if every θ failed
    theta: dict | None = None    # the θ reaching e
    W: float | None = None
    refined: int = 0             # the refinement round that chose it (1, 2, ...); 0: not chosen by refinement

    @property
    def status(self) -> str:
        if not self.representative and not self.refined:
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
    n_base: int = 0        # evaluations of the ε pass (the part the guarantee rests on)
    n_rounds: int = 0      # refinement rounds run after it
    guarantee: float = 0.0  # proven W(best) / W* under the ABnC premise, from the ε pass alone

    @property
    def best_row(self) -> Candidate:
        return next(c for c in self.table if c.arch == self.best)


def w_coefficient(p: float, i: float, e: float, p_T: float, i_T: float, error_ceiling: float | None = None) -> float:
    """W = S / e. With `error_ceiling` (1 for rescaled errors: the constant predictor's), a candidate no better
    than the ceiling is worth nothing however cheap it is: W = 0, so chance never wins while anything beats it."""
    saving = (p_T - p) * (i_T - i)
    if error_ceiling is not None and e >= error_ceiling:
        return 0.0
    if e == 0:      # a perfect dev score: better than any finite W, unless it saves nothing at all
        return math.inf if saving > 0 else 0.0
    return saving / (p_T * i_T * e)


def representative_key(rule: str) -> Callable[["_Family"], tuple]:
    """The order in which a cell's families compete; the first is the representative.

    'abnc' (default): the largest capacity (`capacity`, by default the parameters of the middle B layers,
    `Arch.num_params(non_embedding=True)`), then the largest saving S, then the deeper. Under the ABnC premise
    (the best error of a family does not increase with capacity) it is the family with the lowest error in
    the cell, and S varies by less than w inside it: hence the guarantee (module docstring).
    'cheapest': the largest S (lowest p, then i), ignoring e: no guarantee; kept for comparison."""
    if rule == "abnc":
        return lambda f: (-f.capacity, -f.saving, -f.depth, f.order)
    if rule == "cheapest":
        return lambda f: (-f.saving, f.p, f.i, -f.capacity, f.order)
    raise SearchError(f"Unknown representative rule {rule!r}; use 'abnc' or 'cheapest'.")


@dataclass
class _Family:
    members: list[Candidate]
    order: int
    capacity: float = 0.0
    saving: float = 0.0

    @property
    def p(self) -> float:
        return min(c.p for c in self.members)

    @property
    def i(self) -> float:
        return min(c.i for c in self.members)

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
    capacity: Callable[[Arch], float] | None = None,
    refine: float = REFINE,
    budget: int | None = None,
    max_batch_size: int | None = None,
    max_failure_rate: float = 1.0,
    done: Mapping[tuple[Arch, str], float] | None = None,
    on_batch: Callable[[list[Candidate]], None] | None = None,
    error_ceiling: float | None = None,
) -> SearchResult:
    """Run the FPTAS. `done` maps (arch, theta_key) to errors already measured (resume): those pairs are
    not evaluated again. `on_batch(table)` is called after every batch (e.g. to write candidates.csv).
    `capacity(arch)` orders a cell's families (default: non-embedding parameters). After the ε pass,
    `refine` × its evaluations more (at most half of those it skipped) are spent by the anytime refinement,
    or up to `budget` (arch, θ) evaluations in all when given (the ε pass always completes: the guarantee
    needs all of it). refine=0: the ε pass alone, a budget fixed by ε. `error_ceiling`: W = 0 for errors at or
    above it (`w_coefficient`); the guarantee is kept, since W* > 0 means e(R) <= e(ξ*) < the ceiling."""
    check_epsilon(epsilon)
    if not 0.0 <= max_failure_rate <= 1.0:
        raise SearchError(f"max_failure_rate must lie in [0, 1], got {max_failure_rate!r}.")
    if max_batch_size is not None and max_batch_size < 1:
        raise SearchError(f"max_batch_size must be >= 1 or None (one batch), got {max_batch_size!r}.")
    if isinstance(refine, bool) or not isinstance(refine, numbers.Real) or not 0 <= refine < math.inf:
        raise SearchError(f"refine must be a number >= 0 (extra evaluations as a multiple of the epsilon pass), got {refine!r}.")
    if error_ceiling is not None and not (isinstance(error_ceiling, numbers.Real) and error_ceiling > 0):
        raise SearchError(f"error_ceiling must be a positive number or None, got {error_ceiling!r}.")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 0):
        raise SearchError(f"budget must be a whole number of evaluations >= 0 or None, got {budget!r}.")
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
    capacity = capacity or (lambda a: float(a.num_params(non_embedding=True)))
    table = _cost_table(archs, params, ops)
    p_T, i_T = (params(source), ops(source)) if source is not None else (max(c.p for c in table), max(c.i for c in table))
    bigger = [c for c in table if c.p > p_T or c.i > i_T]
    if bigger:
        raise SearchError(f"{len(bigger)} candidate(s), e.g. {bigger[0].arch}, cost more than the source architecture {source}: "
                          "they are not sub-architectures of it. Shrink the space or drop `source`.")

    # families: members of one cell that differ only in folded fields *and* have the same p (so A is folded
    # only when it is truly cost-neutral; with an explicit head_dim, A changes p and each head count is its
    # own family). Members are grouped per cell, so every member of a family lies in the family's cell.
    by_key: dict[tuple, _Family] = {}
    for c in table:
        c.cell = cell_of(c.p, c.i, epsilon, p_T, i_T)
        key = tuple(getattr(c.arch, f) for f in _FIELDS if f not in fold) + (c.p, c.cell)
        by_key.setdefault(key, _Family([], len(by_key))).members.append(c)
    families = list(by_key.values())
    cells: dict[tuple, list[_Family]] = {}
    for fam in families:
        fam.capacity = max(float(capacity(c.arch)) for c in fam.members)
        fam.saving = saving(fam.p, fam.i, p_T, i_T)
        for c in fam.members:
            c.family = fam.order
        cells.setdefault(fam.members[0].cell, []).append(fam)
    order = representative_key(representative)
    reps = sorted((min(fams, key=order) for fams in cells.values()), key=lambda f: (f.p, f.i, f.order))  # cheapest first
    for fam in reps:
        for c in fam.members:
            c.representative = True
    log.info("FPTAS: %d candidates, %d families, %d cells at epsilon=%g, %d theta(s)", len(table), len(families), len(cells), epsilon, len(thetas))

    done = done or {}
    state = {"launched": 0}

    def run(chosen: list[Candidate]) -> None:
        """Evaluate every (candidate, θ) of `chosen`, reusing `done`, in batches of max_batch_size."""
        todo = []
        for c in chosen:
            for t, k in zip(thetas, keys):
                if (c.arch, k) in done and math.isfinite(done[(c.arch, k)]):
                    c.errors[k] = float(done[(c.arch, k)])
                else:
                    todo.append((c, t, k))
        _summarise(table, p_T, i_T, theta_of, error_ceiling)
        size = max_batch_size or max(len(todo), 1)
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            values = list(evaluate([(c.arch, t) for c, t, _ in batch]))
            if len(values) != len(batch):
                raise SearchError(f"evaluate returned {len(values)} values for a batch of {len(batch)} jobs; it must return one error per (arch, theta) pair.")
            for (c, _, k), value in zip(batch, values):
                c.errors[k] = as_error(value, f"{c.arch} with theta {{{k}}}")
            state["launched"] += len(batch)
            _summarise(table, p_T, i_T, theta_of, error_ceiling)
            if on_batch is not None:
                on_batch(table)
            evaluated = [v for c in table for v in c.errors.values()]
            n_failed = sum(not math.isfinite(v) for v in evaluated)
            if n_failed > max_failure_rate * len(evaluated):
                raise SearchError(
                    f"{n_failed} of {len(evaluated)} evaluations failed, more than max_failure_rate={max_failure_rate}. "
                    "Look at the failed jobs' logs; the finished ones are kept and a re-run resumes from them."
                )

    base = [c for fam in reps for c in fam.members]
    n_base = len(base) * len(thetas)
    # by default the refinement never takes more than half of what the ε pass leaves unevaluated: the search
    # stays cheaper than exhaustive search on small spaces too
    skipped = len(table) * len(thetas) - n_base
    total = budget if budget is not None else n_base + min(math.floor(refine * n_base), skipped // 2)
    # refinement round 1, run first: the cheapest family (largest S), the corner every (p, i, e) front has
    # and the answer whenever the errors hardly differ; the ε pass's representatives are the largest models
    anchor = max(families, key=lambda f: (f.saving, -f.p, -f.i, -f.order))
    first = [] if anchor in reps else anchor.members[:max(total - n_base, 0) // len(thetas)]
    for c in first:
        c.refined = 1
    run(first + base)                                         # + the ε pass: the guarantee
    rounds = refine_rounds(table, run, total, len(thetas), max_batch_size, capacity, p_T, i_T, start=int(bool(first)))
    _summarise(table, p_T, i_T, theta_of, error_ceiling)
    ok = [c for c in table if c.W is not None]
    if not ok:
        raise SearchError("Every evaluated candidate failed (no finite error), so there is no answer; look at the jobs' logs.")
    best = max(ok, key=lambda c: (c.W, -c.e, -c.p, -c.i))
    front_idx = pareto_front([(c.p, c.i, c.e) for c in ok])
    n_eval = sum(len(c.errors) for c in table)
    return SearchResult(
        best=best.arch, best_theta=dict(best.theta or {}), best_W=best.W, best_error=best.e,
        front=[ok[j] for j in front_idx], table=table, n_evaluations=n_eval, n_launched=state["launched"],
        n_failed=sum(not math.isfinite(v) for c in table for v in c.errors.values()),
        n_cells=len(cells), epsilon=float(epsilon), p_T=p_T, i_T=i_T,
        n_base=n_base, n_rounds=rounds, guarantee=guarantee(epsilon),
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


def _summarise(table: list[Candidate], p_T: float, i_T: float, theta_of: Mapping[str, dict],
               error_ceiling: float | None = None) -> None:
    for c in table:
        finite = {k: v for k, v in c.errors.items() if math.isfinite(v)}
        if not c.errors:
            continue
        if finite:
            k = min(finite, key=finite.get)
            c.e, c.theta = finite[k], dict(theta_of[k])
            c.W = w_coefficient(c.p, c.i, c.e, p_T, i_T, error_ceiling)
        else:
            c.e, c.theta, c.W = math.inf, None, None
