"""Pareto front and hypervolume against brute force (inclusion-exclusion over boxes)."""
import itertools
import random

import pytest

from bortlab.search import hypervolume, pareto_front
from bortlab.search.pareto import dominates


def hv_inclusion_exclusion(points, ref):
    """Volume of the union of the boxes [p, ref]: sum over non-empty subsets of (-1)^(|S|+1) vol(∩ S)."""
    pts = [p for p in points if all(x < r for x, r in zip(p, ref))]
    total = 0.0
    for k in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, k):
            corner = [max(c) for c in zip(*subset)]
            vol = 1.0
            for c, r in zip(corner, ref):
                vol *= max(0.0, r - c)
            total += (-1) ** (k + 1) * vol
    return total


@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_hypervolume_equals_inclusion_exclusion(dim):
    rng = random.Random(dim)
    for _ in range(40):
        pts = [tuple(rng.choice([rng.random(), round(rng.random(), 1)]) for _ in range(dim)) for _ in range(rng.randint(0, 9))]
        ref = tuple([1.05] * dim)
        assert hypervolume(pts, ref) == pytest.approx(hv_inclusion_exclusion(pts, ref), abs=1e-12)


def test_hypervolume_ignores_points_outside_the_reference_box():
    assert hypervolume([(2.0, 0.1, 0.1)], (1.0, 1.0, 1.0)) == 0.0
    assert hypervolume([(0.5, 0.5, 0.5), (1.0, 0.0, 0.0)], (1.0, 1.0, 1.0)) == pytest.approx(0.125)


def test_pareto_front_equals_brute_force():
    rng = random.Random(0)
    for _ in range(100):
        pts = [tuple(rng.randint(0, 6) for _ in range(3)) for _ in range(rng.randint(0, 40))]
        brute = [i for i, p in enumerate(pts) if not any(dominates(q, p) for q in pts)]
        assert pareto_front(pts) == brute


# ---- knee and error cap on (cost, error) fronts ---------------------------------------------------------
def knee_brute_force(points):
    """All-pairs front; extremes = cheapest and most accurate member; the member farthest below the line
    through them (on the ideal point's side) in min-max normalised (log cost, error); ties to the cheaper."""
    import math

    ok = [k for k, p in enumerate(points) if math.isfinite(p[1])]
    logs = {k: (math.log(points[k][0]), points[k][1]) for k in ok}
    front = [k for k in ok if not any(dominates(logs[j], logs[k]) for j in ok)]
    x0, x1 = min(logs[k][0] for k in front), max(logs[k][0] for k in front)
    y0, y1 = min(logs[k][1] for k in front), max(logs[k][1] for k in front)
    norm = {k: ((logs[k][0] - x0) / (x1 - x0), (logs[k][1] - y0) / (y1 - y0)) for k in front}
    a = norm[min(front, key=lambda k: norm[k])]                       # cheapest
    b = norm[min(front, key=lambda k: norm[k][::-1])]                 # most accurate
    length = math.dist(a, b)

    def signed(q):   # cross product: > 0 when q lies on the origin's side of the line a -> b
        return ((b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0])) / length * -1

    side = 1 if signed((0.0, 0.0)) > 0 else -1
    return max(front, key=lambda k: (round(side * signed(norm[k]), 12), -logs[k][0]))


def test_knee_equals_brute_force_on_random_sets():
    from bortlab.search.pareto import knee

    rng = random.Random(7)
    for n in range(3, 30):
        pts = [(10 ** rng.uniform(5, 9), rng.uniform(0.1, 0.6)) for _ in range(n)]
        assert knee(pts) == knee_brute_force(pts), pts


def test_knee_on_hand_made_fronts():
    from bortlab.search.pareto import knee

    # cost 1e6..1e9 (log-spaced); the error falls fast then flattens: the knee is the bend at 1e7
    bent = [(1e6, 0.50), (1e7, 0.21), (1e8, 0.20), (1e9, 0.19), (1e8, 0.40), (5e8, float("inf"))]
    assert knee(bent) == 1 == knee_brute_force(bent)
    straight = [(1e6, 0.3), (1e7, 0.2), (1e8, 0.1)]        # on the line: no knee, the cheaper extreme
    assert knee(straight) == 0
    assert knee([(1e6, 0.3), (2e6, 0.1)]) == 0              # two points: distances 0, the cheaper
    assert knee([(1e6, 0.3), (1e6, 0.3)]) == 0 and knee([(5.0, float("inf"))]) is None and knee([]) is None


def test_cheapest_under_the_error_cap():
    from bortlab.search.pareto import cheapest_under

    pts = [(3e6, 0.2), (1e6, 0.35), (2e6, 0.25), (2e6, 0.22), (5e5, float("inf")), (4e6, 0.15)]
    for cap in (0.1, 0.15, 0.2, 0.22, 0.24, 0.3, 0.5, float("inf")):
        under = [k for k, (c, e) in enumerate(pts) if e <= cap and e != float("inf")]
        expected = min(under, key=lambda k: pts[k]) if under else None
        assert cheapest_under(pts, cap) == expected, cap
    assert cheapest_under(pts, 0.22) == 3 and cheapest_under(pts, 0.1) is None


def test_best_under_cost_is_the_most_accurate_within_the_cost_cap():
    """Against brute force over every cap: the lowest error among the points that cost at most the cap."""
    from bortlab.search.pareto import best_under_cost

    pts = [(3e6, 0.2), (1e6, 0.35), (2e6, 0.25), (2e6, 0.22), (5e5, float("inf")), (4e6, 0.15), (1.5e6, 0.22)]
    for cap in (1e5, 5e5, 1e6, 1.5e6, 2e6, 2.5e6, 3e6, 4e6, float("inf")):
        within = [k for k, (c, e) in enumerate(pts) if c <= cap and e != float("inf")]
        expected = min(within, key=lambda k: (pts[k][1], pts[k][0])) if within else None
        assert best_under_cost(pts, cap) == expected, cap
    assert best_under_cost(pts, 2e6) == 6 and best_under_cost(pts, 5e5) is None     # a tie on e: the cheaper
