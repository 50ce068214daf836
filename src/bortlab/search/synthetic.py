"""Synthetic ABnC instances: error functions with a known optimum, for testing and benchmarking the FPTAS.

Every family has error decreasing in capacity, a mild optimum in the head count A and in the learning
rate, e_inf ~ U(0.05, 0.3), e_max ~ U(0.45, 0.7), γ ~ U(0, 0.05), λ ~ U(0, 0.2), A* and lr* drawn from the space:

    e(ξ, θ) = [e_inf + (e_max − e_inf) · g(ξ)] · (1 + γ ln²(A/A*)) · (1 + λ log10²(lr/lr*)) · exp(σ z(ξ))

- kind="capacity" (the ABnC family): g = (B_min / B(ξ))^α, α ~ U(0.1, 1), where B(ξ) is the parameter count
  of the middle layers (`num_params(non_embedding=True)`). The error is a decreasing function of the
  B-layer capacity (up to the head-count factor), the premise under which the FPTAS's guarantee holds.
- kind="threshold": the premise exactly (γ = 0): g = 1 / (1 + (B(ξ)/B_0)^κ), a sharp drop (κ ~ U(5, 30))
  at a capacity B_0 ~ U(0.5, 0.95) · B_max near the maximum point T, e_inf ~ U(0.001, 0.01): W's optimum lies
  near T, where p_T − p and i_T − i are small. Cells on (log p, log i) put it together with candidates of
  almost no saving; cells on the savings keep it apart.
- kind="shape": g = (D_min/D)^a (H_min/H)^b (I_min/I)^c with a, b, c ~ U(0.1, 1) drawn independently, so two
  architectures of equal cost can differ in error by more than (1+ε): a stress test outside the premise.
- kind="noisy": the capacity family times exp(σ z(ξ)), σ ~ U(0.02, 0.08) and z(ξ) ~ N(0, 1) drawn once per
  architecture (training noise: one seed per candidate), outside the premise.

Every instance is deterministic given its seed and kind.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from bortlab.models.arch import Arch

KINDS = ("capacity", "threshold", "shape", "noisy")


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
    alpha: float = 0.5   # exponent of the B-layer capacity (kind="capacity", "noisy")
    b0: float = 1.0      # capacity of the drop (kind="threshold")
    kappa: float = 1.0   # its sharpness
    b_min: int = 1
    sigma: float = 0.0   # log-normal noise per architecture (kind="noisy")
    seed: int = 0        # seeds the noise

    @classmethod
    def sample(cls, seed: int, candidates: Sequence[Arch], lrs: Sequence[float] = (1e-4,), kind: str = "capacity") -> "ABnCInstance":
        if kind not in KINDS:
            raise ValueError(f"Unknown synthetic family {kind!r}; use one of {', '.join(KINDS)}.")
        rng = random.Random(f"{kind}-{seed}")
        inst = cls(
            e_inf=rng.uniform(0.05, 0.3), e_max=rng.uniform(0.45, 0.7),
            a=rng.uniform(0.1, 1.0), b=rng.uniform(0.1, 1.0), c=rng.uniform(0.1, 1.0),
            gamma=rng.uniform(0.0, 0.05), a_star=float(rng.choice(sorted({x.heads for x in candidates}))),
            lam=rng.uniform(0.0, 0.2), lr_star=float(rng.choice(list(lrs))),
            d_min=min(x.depth for x in candidates), h_min=min(x.hidden for x in candidates),
            i_min=min(x.intermediate for x in candidates),
            kind=kind, alpha=rng.uniform(0.1, 1.0), b_min=min(x.num_params(non_embedding=True) for x in candidates),
            seed=seed,
        )
        if kind == "threshold":
            b_max = max(x.num_params(non_embedding=True) for x in candidates)
            inst = dataclasses.replace(inst, gamma=0.0, kappa=rng.uniform(5.0, 30.0), b0=rng.uniform(0.5, 0.95) * b_max,
                                       e_inf=rng.uniform(0.001, 0.01))
        if kind == "noisy":
            inst = dataclasses.replace(inst, sigma=rng.uniform(0.02, 0.08))
        return inst

    def error(self, arch: Arch, theta: Mapping | None = None) -> float:
        if self.kind == "threshold":
            g = 1.0 / (1.0 + (arch.num_params(non_embedding=True) / self.b0) ** self.kappa)
        elif self.kind != "shape":
            g = (self.b_min / arch.num_params(non_embedding=True)) ** self.alpha
        else:
            g = (self.d_min / arch.depth) ** self.a * (self.h_min / arch.hidden) ** self.b * (self.i_min / arch.intermediate) ** self.c
        e = self.e_inf + (self.e_max - self.e_inf) * g
        e *= 1.0 + self.gamma * math.log(arch.heads / self.a_star) ** 2
        lr = (theta or {}).get("lr", (theta or {}).get("optim.lr"))
        if lr is not None:
            e *= 1.0 + self.lam * math.log10(float(lr) / self.lr_star) ** 2
        if self.sigma:
            e *= math.exp(self.sigma * random.Random(f"noise-{self.seed}-{arch!r}").gauss(0.0, 1.0))
        return e

    def evaluate(self, pairs):
        """The `evaluate` callable of `bortlab.search.fptas.search`."""
        return [self.error(arch, theta) for arch, theta in pairs]
