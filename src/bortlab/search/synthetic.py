"""Synthetic ABnC instances: error functions with a known optimum, for testing and benchmarking the FPTAS.

Two families, both with error decreasing in capacity, a mild optimum in the head count A and in the
learning rate, e_inf ~ U(0.05, 0.3), e_max ~ U(0.45, 0.7), γ ~ U(0, 0.05), λ ~ U(0, 0.2), A* and lr* drawn
from the space:

    e(ξ, θ) = [e_inf + (e_max − e_inf) · g(ξ)] · (1 + γ ln²(A/A*)) · (1 + λ log10²(lr/lr*))

- kind="capacity" (the ABnC family): g = (B_min / B(ξ))^α, α ~ U(0.1, 1), where B(ξ) is the parameter count
  of the middle layers (`num_params(non_embedding=True)`). The error is a decreasing function of the
  B-layer capacity alone, the premise under which the ε-partition argument holds.
- kind="shape": g = (D_min/D)^a (H_min/H)^b (I_min/I)^c with a, b, c ~ U(0.1, 1) drawn independently, so two
  architectures of equal cost can differ in error by more than (1+ε): a stress test outside the premise.

Every instance is deterministic given its seed and kind.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from bortlab.models.arch import Arch


@dataclass(frozen=True)
class ABnCInstance:
    e_inf: float
    e_max: float
    a: float          # exponent of depth
    b: float          # exponent of hidden
    c: float          # exponent of intermediate
    gamma: float      # strength of the head-count optimum
    a_star: float     # best head count
    lam: float        # strength of the learning-rate optimum
    lr_star: float
    d_min: int
    h_min: int
    i_min: int
    kind: str = "capacity"
    alpha: float = 0.5   # exponent of the B-layer capacity (kind="capacity")
    b_min: int = 1

    @classmethod
    def sample(cls, seed: int, candidates: Sequence[Arch], lrs: Sequence[float] = (1e-4,), kind: str = "capacity") -> "ABnCInstance":
        if kind not in ("capacity", "shape"):
            raise ValueError(f"Unknown synthetic family {kind!r}; use 'capacity' or 'shape'.")
        rng = random.Random(f"{kind}-{seed}")
        return cls(
            e_inf=rng.uniform(0.05, 0.3), e_max=rng.uniform(0.45, 0.7),
            a=rng.uniform(0.1, 1.0), b=rng.uniform(0.1, 1.0), c=rng.uniform(0.1, 1.0),
            gamma=rng.uniform(0.0, 0.05), a_star=float(rng.choice(sorted({x.heads for x in candidates}))),
            lam=rng.uniform(0.0, 0.2), lr_star=float(rng.choice(list(lrs))),
            d_min=min(x.depth for x in candidates), h_min=min(x.hidden for x in candidates),
            i_min=min(x.intermediate for x in candidates),
            kind=kind, alpha=rng.uniform(0.1, 1.0), b_min=min(x.num_params(non_embedding=True) for x in candidates),
        )

    def error(self, arch: Arch, theta: Mapping | None = None) -> float:
        if self.kind == "capacity":
            g = (self.b_min / arch.num_params(non_embedding=True)) ** self.alpha
        else:
            g = (self.d_min / arch.depth) ** self.a * (self.h_min / arch.hidden) ** self.b * (self.i_min / arch.intermediate) ** self.c
        e = self.e_inf + (self.e_max - self.e_inf) * g
        e *= 1.0 + self.gamma * math.log(arch.heads / self.a_star) ** 2
        lr = (theta or {}).get("lr", (theta or {}).get("optim.lr"))
        if lr is not None:
            e *= 1.0 + self.lam * math.log10(float(lr) / self.lr_star) ** 2
        return e

    def evaluate(self, pairs):
        """The `evaluate` callable of `bortlab.search.fptas.search`."""
        return [self.error(arch, theta) for arch, theta in pairs]
