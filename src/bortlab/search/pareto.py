"""Pareto utilities for minimisation objectives: the non-dominated set, the exact hypervolume, and two ways of
choosing one member of a (cost, error) front: its knee and the cheapest point under an error cap."""
from __future__ import annotations

import bisect
import math
from typing import Optional, Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """a dominates b: no worse in every objective and strictly better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, in input order (duplicates of a front point are all kept).
    In lexicographic order a point can only be dominated by an earlier one, and dominance is transitive, so
    each point is checked against the front found so far: O(n · |front|) instead of O(n²)."""
    order = sorted(range(len(points)), key=lambda k: tuple(points[k]))
    front: list[int] = []
    for k in order:
        if not any(dominates(points[j], points[k]) for j in front):
            front.append(k)
    return sorted(front)


def hypervolume(points: Sequence[Point], ref: Point) -> float:
    """Exact volume dominated by `points` and bounded by the reference point `ref` (minimisation).
    Points not strictly better than `ref` in every objective contribute nothing; dominated points may be
    included. 3-D: a sweep along the last objective keeping the 2-D staircase, O(n·front); other
    dimensions: slicing recursion (HSO)."""
    pts = [tuple(map(float, p)) for p in points if all(x < r for x, r in zip(p, ref))]
    return _hv(pts, tuple(map(float, ref)))


def _hv(pts: list[tuple], ref: tuple) -> float:
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        best_y, area = ref[1], 0.0
        for x, y in sorted(pts):  # sweep x upwards; each point adds the strip below the running minimum y
            if y < best_y:
                area += (ref[0] - x) * (best_y - y)
                best_y = y
        return area
    if len(ref) == 3:
        return _hv3(pts, ref)
    pts = sorted(pts, key=lambda p: p[-1])
    volume = 0.0
    for k, p in enumerate(pts):
        top = pts[k + 1][-1] if k + 1 < len(pts) else ref[-1]
        if top > p[-1]:  # slab [p_z, next_z): every point seen so far is active in it
            active = [q[:-1] for q in pts[: k + 1]]
            front = [active[i] for i in pareto_front(active)]
            volume += _hv(front, ref[:-1]) * (top - p[-1])
    return volume


def _hv3(pts: list[tuple], ref: tuple) -> float:
    """Sweep z upwards; between consecutive z values the dominated (x, y) area is that of the staircase of
    the points seen so far (xs ascending, ys strictly descending), updated as each point arrives."""
    pts = sorted(pts, key=lambda p: p[2])
    xs: list[float] = []
    ys: list[float] = []
    area = volume = 0.0
    for k, (x, y, z) in enumerate(pts):
        j = bisect.bisect_right(xs, x)
        if not (j > 0 and ys[j - 1] <= y):  # not dominated by a staircase point with x' <= x
            lo = hi = bisect.bisect_left(xs, x)
            while hi < len(xs) and ys[hi] >= y:  # the points (x, y) dominates form a run from lo
                hi += 1
            xs[lo:hi], ys[lo:hi] = [x], [y]
            area = sum((nx - px) * (ref[1] - py) for px, py, nx in zip(xs, ys, xs[1:] + [ref[0]]))
        top = pts[k + 1][2] if k + 1 < len(pts) else ref[2]
        volume += area * (top - z)
    return volume


def knee(points: Sequence[Point]) -> Optional[int]:
    """Index of the knee of the (cost, error) front of `points` (both minimised; cost > 0), None if no point
    has a finite error.

    The front is the non-dominated set of the points with finite error. In normalised coordinates
    x = (log cost − min) / (max − min) and y = (error − min) / (max − min), both over the front, its two
    extreme points are (0, 1) (the cheapest) and (1, 0) (the most accurate), and the knee is the member of
    largest signed distance (1 − x − y) / √2 to the line through them, positive on the side of the ideal point
    (0, 0): the point where a step along the front stops buying much error per factor of cost. Ties, and a
    front on or above that line everywhere (every distance <= 0: no knee), go to the cheaper member; a front of
    one distinct point is that point. Log cost, so a factor of 2 in cost weighs the same anywhere."""
    ok = [k for k, (c, e) in enumerate(points) if math.isfinite(e)]
    if not ok:
        return None
    front = [ok[j] for j in pareto_front([(math.log(points[k][0]), points[k][1]) for k in ok])]
    xs = [math.log(points[k][0]) for k in front]
    ys = [float(points[k][1]) for k in front]
    dx, dy = max(xs) - min(xs), max(ys) - min(ys)

    def height(j: int) -> float:
        x = (xs[j] - min(xs)) / dx if dx > 0 else 0.0
        y = (ys[j] - min(ys)) / dy if dy > 0 else 0.0
        return (1.0 - x - y) / math.sqrt(2.0)

    best = min(range(len(front)), key=lambda j: (-height(j), xs[j], ys[j], front[j]))
    return front[best]


def cheapest_under(points: Sequence[Point], cap: float) -> Optional[int]:
    """Index of the cheapest point (lowest cost; ties: lower error, then first) with error <= cap; None if
    none. `points` are (cost, error) pairs; a NaN or infinite error never qualifies."""
    ok = [k for k, (c, e) in enumerate(points) if math.isfinite(e) and e <= cap]
    if not ok:
        return None
    return min(ok, key=lambda k: (points[k][0], points[k][1], k))


def best_under_cost(points: Sequence[Point], cost_cap: float) -> Optional[int]:
    """Index of the most accurate point (lowest error; ties: lower cost, then first) with cost <= cost_cap;
    None if none. The dual of `cheapest_under`: a user who needs a speed-up asks for the best model that has
    it (cost_cap = i_T / speed-up)."""
    ok = [k for k, (c, e) in enumerate(points) if math.isfinite(e) and c <= cost_cap]
    if not ok:
        return None
    return min(ok, key=lambda k: (points[k][1], points[k][0], k))
