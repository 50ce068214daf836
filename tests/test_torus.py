"""The torus (bortlab.agora.torus): a small MLP fails on a ring whose training set covers one arc, and
learns it with Agora. Scored on a test sample that no round looked at."""
import math

import torch

from bortlab.agora.torus import plot_torus, run_torus, sample_ring, torus_label


def test_ring_sampler_and_rule():
    gen = torch.Generator().manual_seed(0)
    x = sample_ring(2000, gen)
    r = x.norm(dim=1)
    assert r.min() >= 0.65 - 1e-6 and r.max() <= 1.35 + 1e-6
    y = torus_label(x)
    assert 0.4 < y.float().mean() < 0.6          # the checkerboard is balanced over the whole ring
    arc = sample_ring(500, gen, (0.0, math.pi / 2))
    theta = torch.atan2(arc[:, 1], arc[:, 0])
    assert (theta >= 0).all() and (theta <= math.pi / 2 + 1e-6).all()


def test_agora_learns_the_torus_the_baseline_does_not(tmp_path):
    res = run_torus(seed=0)
    # without Agora the MLP only knows one arc: close to chance on the full ring
    assert res.baseline_acc < 0.75
    # with Agora (mistakes on the dev sample -> Gaussian neighbours -> 90%-right labeller) it learns it
    assert res.agora_acc > 0.9
    assert res.agora_acc - res.baseline_acc > 0.2
    # fewer dev mistakes after the first round: the added points are where the model was wrong
    assert res.round_mistakes[-1] < res.round_mistakes[0] / 3
    assert len(res.added_x) == len(res.added_y) > 0
    # deterministic: the same seed gives the same numbers
    again = run_torus(seed=0, rounds=0)
    assert again.baseline_acc == res.baseline_acc and again.round_acc == []
    plot_torus(res, str(tmp_path / "torus.png"))
    assert (tmp_path / "torus.png").stat().st_size > 10_000
