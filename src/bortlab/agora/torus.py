"""The torus: Agora on a small non-NLP problem, as in the Bort blog's illustration.

Points live on a ring (a torus seen from above: angle θ, radius ρ in [R − w, R + w]). The label is a
checkerboard over (angular sector, inner/outer band), so every part of the ring must be seen to be learnt.
The training set covers only a narrow arc of the ring: it is not representative of the distribution, and a
small MLP trained on it extrapolates into the unseen arc at chance. Agora fixes that with the dev set: each
round the model is trained, it predicts the dev sample, and around each mistake `k` new points are drawn
(the transformation: Gaussian noise in the input space), labelled by an ok-ish labeller (the true rule with a
fraction of labels flipped) and appended to the training set.

Evaluation is honest: the reported accuracy is on a fresh test sample that no round ever looked at. Both
arms train the same MLP for the same number of steps per fit; everything is seeded and runs in seconds.

    python -m bortlab.agora.torus docs/img/torus.png
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

R, W, SECTORS = 1.0, 0.35, 8


def torus_label(x: torch.Tensor) -> torch.Tensor:
    """The true rule: sector index (8 sectors) plus inner/outer band, mod 2 (a checkerboard on the ring)."""
    theta = torch.atan2(x[:, 1], x[:, 0]) % (2 * math.pi)
    sector = (theta / (2 * math.pi / SECTORS)).floor().long() % SECTORS
    outer = (x.norm(dim=1) > R).long()
    return (sector + outer) % 2


def sample_ring(n: int, gen: torch.Generator, arc: tuple[float, float] = (0.0, 2 * math.pi)) -> torch.Tensor:
    """`n` points uniform over the ring's area restricted to angles in `arc` (radians)."""
    theta = arc[0] + (arc[1] - arc[0]) * torch.rand(n, generator=gen)
    # uniform in area: ρ² is uniform between (R − w)² and (R + w)²
    lo, hi = (R - W) ** 2, (R + W) ** 2
    rho = (lo + (hi - lo) * torch.rand(n, generator=gen)).sqrt()
    return torch.stack([rho * torch.cos(theta), rho * torch.sin(theta)], dim=1)


def make_mlp(seed: int, width: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))


def fit(x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 300, lr: float = 1e-2) -> nn.Module:
    """A fresh MLP trained full-batch for a fixed number of steps: the same budget for every fit."""
    model = make_mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(-1)


def noisy_labeller(accuracy: float, gen: torch.Generator):
    """An ok-ish second model: the true rule with a fraction 1 − `accuracy` of its answers flipped."""
    def label(x: torch.Tensor) -> torch.Tensor:
        y = torus_label(x)
        flip = torch.rand(len(x), generator=gen) > accuracy
        return torch.where(flip, 1 - y, y)
    return label


@dataclass
class TorusResult:
    baseline_acc: float                 # test accuracy of the MLP trained on the unrepresentative train set
    agora_acc: float                    # test accuracy after the last Agora round
    round_acc: list[float] = field(default_factory=list)       # test accuracy of the model of each round
    round_mistakes: list[int] = field(default_factory=list)    # dev mistakes found in each round
    train_x: torch.Tensor | None = None                        # original training set
    dev_x: torch.Tensor | None = None
    added_x: torch.Tensor | None = None                        # every point Agora generated
    added_y: torch.Tensor | None = None
    test_x: torch.Tensor | None = None
    baseline_pred: torch.Tensor | None = None
    agora_pred: torch.Tensor | None = None


def run_torus(seed: int = 0, n_train: int = 300, n_dev: int = 200, n_test: int = 4000, arc_deg: float = 90.0,
              rounds: int = 5, k: int = 20, sigma: float = 0.08, labeller_accuracy: float = 0.9,
              steps: int = 300) -> TorusResult:
    """Baseline vs Agora on the ring. The dev sample (drawn from the whole ring) is what Agora consumes;
    the test sample is separate and is the only one scored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # a 2-64-64-2 MLP: extra threads only add contention (10x slower when shared)
    try:
        return _run(seed, n_train, n_dev, n_test, arc_deg, rounds, k, sigma, labeller_accuracy, steps)
    finally:
        torch.set_num_threads(threads)


def _run(seed, n_train, n_dev, n_test, arc_deg, rounds, k, sigma, labeller_accuracy, steps) -> TorusResult:
    gen = torch.Generator().manual_seed(seed)
    train_x = sample_ring(n_train, gen, (0.0, math.radians(arc_deg)))
    train_y = torus_label(train_x)
    dev_x = sample_ring(n_dev, gen)
    dev_y = torus_label(dev_x)
    test_x = sample_ring(n_test, gen)
    test_y = torus_label(test_x)
    labeller = noisy_labeller(labeller_accuracy, torch.Generator().manual_seed(seed + 1))

    baseline = fit(train_x, train_y, seed, steps)
    base_pred = predict(baseline, test_x)
    res = TorusResult(baseline_acc=(base_pred == test_y).float().mean().item(), agora_acc=float("nan"),
                      train_x=train_x, dev_x=dev_x, test_x=test_x, baseline_pred=base_pred)

    x, y = train_x, train_y
    added_x, added_y = train_x[:0], train_y[:0]
    model = baseline
    for _ in range(rounds):
        wrong = (predict(model, dev_x) != dev_y).nonzero().squeeze(1)
        res.round_mistakes.append(len(wrong))
        if len(wrong) == 0:
            break
        # the transformation: k Gaussian neighbours of each mistake, in the input space
        centres = dev_x[wrong].repeat_interleave(k, dim=0)
        new_x = centres + sigma * torch.randn(centres.shape, generator=gen)
        new_y = labeller(new_x)
        added_x, added_y = torch.cat([added_x, new_x]), torch.cat([added_y, new_y])
        x, y = torch.cat([x, new_x]), torch.cat([y, new_y])
        model = fit(x, y, seed, steps)
        res.round_acc.append((predict(model, test_x) == test_y).float().mean().item())
    pred = predict(model, test_x)
    res.agora_acc = (pred == test_y).float().mean().item()
    res.agora_pred, res.added_x, res.added_y = pred, added_x, added_y
    return res


def plot_torus(res: TorusResult, path: str) -> None:
    """Five panels: the truth with the train arc and the dev sample; the points Agora added; the test sample
    as predicted without and with Agora; the test accuracy per round."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    cmap = matplotlib.colors.ListedColormap(["#1f77b4", "#ff7f0e"])
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.2))
    ax = axes[0]
    ax.scatter(*res.test_x.T, c=torus_label(res.test_x), cmap=cmap, s=2, alpha=0.25)
    ax.scatter(*res.train_x.T, c=torus_label(res.train_x), cmap=cmap, s=9, edgecolor="k", linewidth=0.4)
    ax.scatter(*res.dev_x.T, marker="x", c="k", s=12, linewidth=0.7)
    ax.set_title("truth; train = one arc (dots); dev (x)")
    ax = axes[1]
    ax.scatter(*res.train_x.T, c="lightgrey", s=4)
    ax.scatter(*res.added_x.T, c=res.added_y, cmap=cmap, s=3)
    ax.set_title(f"points Agora added ({len(res.added_x)}, labeller 90% right)")
    for ax, pred, title in ((axes[2], res.baseline_pred, f"without Agora: test acc {res.baseline_acc:.3f}"),
                            (axes[3], res.agora_pred, f"with Agora: test acc {res.agora_acc:.3f}")):
        ax.scatter(*res.test_x.T, c=pred, cmap=cmap, s=2)
        ax.set_title(title)
    for ax in axes[:4]:
        ax.set_aspect("equal")
        ax.set_xlim(-1.55, 1.55), ax.set_ylim(-1.55, 1.55)
        ax.set_xticks([]), ax.set_yticks([])
    ax = axes[4]
    accs = [res.baseline_acc] + res.round_acc
    ax.plot(range(len(accs)), accs, marker="o")
    ax.set_xlabel("Agora round (0 = no Agora)")
    ax.set_ylabel("accuracy on the unseen test sample")
    ax.set_ylim(0.4, 1.0)
    ax.grid(alpha=0.3)
    ax.set_title("test accuracy per round")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m bortlab.agora.torus", description=__doc__.splitlines()[0])
    ap.add_argument("png", nargs="?", help="also draw the ring, the arms' predictions and the added points here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5, help="Agora rounds")
    args = ap.parse_args(argv)
    if args.rounds < 0:
        ap.error(f"--rounds must be 0 or more, got {args.rounds}")
    t0 = time.time()
    res = run_torus(seed=args.seed, rounds=args.rounds)
    print(f"baseline {res.baseline_acc:.3f}  agora {res.agora_acc:.3f}  per round {[round(a, 3) for a in res.round_acc]}"
          f"  mistakes {res.round_mistakes}  ({time.time() - t0:.1f}s)")
    if args.png:
        plot_torus(res, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
