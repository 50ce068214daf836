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
