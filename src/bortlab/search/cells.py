"""The FPTAS's ε-cells: on log S, S = (p_T − p)(i_T − i) / (p_T i_T), the cost factor W multiplies.

Inside a cell S varies by less than the width w = `cell_width(ε)`, which gives the search its guarantee
`guarantee(ε)` = 1/w ≥ 1 − ε under the ABnC premise (proof: `bortlab.search.fptas`).
"""
from __future__ import annotations

import math


def cell_width(epsilon: float) -> float:
    """The cell width w on the log S axis: 1/(1 − ε) for ε ≤ ½ (the widest that gives the 1 − ε guarantee),
    4ε beyond (continuous at ½; the guarantee 1/(4ε) ≥ 1 − ε stays positive for ε ≥ 1). w ≤ (1 + ε)²."""
    return 1.0 / (1.0 - epsilon) if epsilon <= 0.5 else 4.0 * epsilon


def guarantee(epsilon: float) -> float:
    """The proven approximation ratio W(answer) / W* under the ABnC premise: 1/w (= 1 − ε for ε ≤ ½)."""
    return 1.0 - epsilon if epsilon <= 0.5 else 1.0 / (4.0 * epsilon)


def _log_width(epsilon: float) -> float:
    return -math.log1p(-epsilon) if epsilon <= 0.5 else math.log(4.0 * epsilon)


def saving(p: float, i: float, p_T: float, i_T: float) -> float:
    """W's cost factor S = (p_T − p)(i_T − i) / (p_T i_T), in [0, 1]."""
    return max(p_T - p, 0.0) * max(i_T - i, 0.0) / (p_T * i_T)


def cell_of(p: float, i: float, epsilon: float, p_T: float, i_T: float) -> tuple[int | None, int | None]:
    """(⌊log_w S⌋, None) for a positive saving S; (None, ⌊log_w (p·i)⌋) when S = 0 (W = 0 whatever the error:
    such candidates only matter for the front, and are partitioned by cost so that ε → 0 still evaluates
    every candidate)."""
    s = saving(p, i, p_T, i_T)
    if s > 0:
        return (math.floor(math.log(s) / _log_width(epsilon)), None)
    return (None, math.floor((math.log(p) + math.log(i)) / _log_width(epsilon)))


def cell_bound(s_min: float, s_max: float, epsilon: float) -> int:
    """Upper bound on the number of non-empty cells of candidates with S > 0, given their smallest and
    largest S: one per w-wide step of log S. O(ε⁻¹ log(S_max/S_min)), independent of |Ξ|. (Candidates
    with S = 0, usually T's own family, add cells of their own.)"""
    return 1 + math.floor(math.log(s_max / s_min) / _log_width(epsilon))
