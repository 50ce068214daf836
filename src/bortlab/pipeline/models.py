"""The models a pipeline run compares: the source, the searched one, and baselines at about its cost.

Each is a `ModelSpec`: a shape ⟨D, A, H, I⟩ (head_dim fixed to the source's, so heads are whole source heads),
how its weights start (the source itself, extracted from it, or random) and whether it is distilled from the
source before fine-tuning. Every model is fine-tuned with the same recipe (bortlab.pipeline.run).

Baselines, the simple choices a user would make instead of searching (DistilBERT, the CoFi and AutoTinyBERT
papers' comparisons):
- `every_other_layer`: half the source's layers (0, 2, 4, ...) at full width, DistilBERT's initialisation;
- `width_cut`: the source's depth with a uniform width cut, the exportable full-depth shape whose op count is
  closest to the searched model's;
- `same_shape_no_distil`: the searched shape, extracted, fine-tuned without distillation;
- `same_shape_scratch`: the searched shape from random weights, with the same distillation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from bortlab.models.arch import Arch

BASELINES = ("every_other_layer", "width_cut", "same_shape_no_distil", "same_shape_scratch")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    shape: tuple[int, int, int, int]         # (depth, heads, hidden, intermediate)
    init: str                                # pretrained (the source itself) | extract | scratch
    distil: bool
    layers: tuple[int, ...] | None = None    # extract: which source layers; None: uniform
    notes: str = field(default="", compare=False)

    def arch_overrides(self, head_dim: int) -> list[str]:
        d, a, h, i = self.shape
        return [f"arch.depth={d}", f"arch.heads={a}", f"arch.hidden={h}", f"arch.intermediate={i}",
                f"arch.head_dim={head_dim}"]


def exportable(shape: Sequence[int], head_dim: int) -> bool:
    """transformers' BERT has attention width = hidden: only heads * head_dim == hidden can be exported."""
    return shape[1] * head_dim == shape[2]


def width_cut(source: Arch, target_ops: float, head_dim: int, intermediates: Sequence[int],
              hiddens: Sequence[int]) -> tuple[int, int, int, int]:
    """The full-depth, exportable shape (heads = hidden / head_dim) whose op count is closest to target_ops
    (in log space: a factor of 2 too big weighs like a factor of 2 too small); ties go to the cheaper."""
    import math

    best = None
    for h in hiddens:
        if h % head_dim or h > source.hidden:
            continue
        for i in intermediates:
            if i > source.intermediate:
                continue
            shape = (source.depth, h // head_dim, h, i)
            ops = Arch(**{**source.to_dict(), "depth": shape[0], "heads": shape[1], "hidden": h,
                          "intermediate": i, "head_dim": head_dim}).num_ops()
            key = (abs(math.log(ops / target_ops)), ops)
            if best is None or key < best[0]:
                best = (key, shape)
    if best is None:
        raise ValueError(f"No exportable full-depth width cut of {source.tuple} with hidden in {list(hiddens)}.")
    return best[1]


def model_specs(source: Arch, chosen: Sequence[int], head_dim: int, baselines: Sequence[str],
                intermediates: Sequence[int], hiddens: Sequence[int]) -> list[ModelSpec]:
    """The source, the searched model (`bortlab`) and the named baselines, in that order."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ValueError(f"Unknown baseline(s) {unknown}; choose from {list(BASELINES)}.")
    chosen = tuple(int(x) for x in chosen)
    specs = [ModelSpec("source", source.tuple, "pretrained", False, notes="the source model itself"),
             ModelSpec("bortlab", chosen, "extract", True, notes="searched, extracted, distilled")]
    chosen_ops = Arch(**{**source.to_dict(), "depth": chosen[0], "heads": chosen[1], "hidden": chosen[2],
                         "intermediate": chosen[3], "head_dim": head_dim}).num_ops()
    for b in baselines:
        if b == "every_other_layer":
            layers = tuple(range(0, source.depth, 2))
            specs.append(ModelSpec(b, (len(layers), source.heads, source.hidden, source.intermediate), "extract", True,
                                   layers=layers, notes="DistilBERT-style: every other layer, full width"))
        elif b == "width_cut":
            specs.append(ModelSpec(b, width_cut(source, chosen_ops, head_dim, intermediates, hiddens), "extract", True,
                                   notes="full depth, uniform width cut to about the searched model's op count"))
        elif b == "same_shape_no_distil":
            specs.append(ModelSpec(b, chosen, "extract", False, notes="the searched shape without distillation"))
        else:
            specs.append(ModelSpec(b, chosen, "scratch", True, notes="the searched shape from random weights"))
    return specs
