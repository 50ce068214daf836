"""The one optimiser of every stage: AdamW without decay on biases and LayerNorm weights, linear warm-up to
the peak lr, then linear decay to 0 at the last step (BERT's recipe, kept by Bort)."""
from __future__ import annotations

import math
from typing import Optional

import torch


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """BERT's rule: no weight decay on biases and LayerNorm weights (1-D tensors), decay on the rest."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup_decay(optimizer, total_steps: int, warmup_steps: int):
    """Linear warm-up from 0 to the peak lr over `warmup_steps`, then linear decay to 0 at `total_steps`."""
    total_steps, warmup_steps = max(1, total_steps), max(0, warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def total_steps(trainer) -> int:
    """The steps the schedule spans: Lightning's estimate, or 1 where it has none. The estimate is infinite
    with `max_epochs=-1` and no `max_steps`, so the finiteness check comes before any int()."""
    total = trainer.estimated_stepping_batches if trainer is not None else 1
    return int(total) if math.isfinite(total) and total > 0 else 1


def adamw_with_schedule(model: torch.nn.Module, trainer, *, lr: float, weight_decay: float, warmup_ratio: float,
                        warmup_steps: Optional[int], betas, eps: float) -> dict:
    """What a LightningModule's `configure_optimizers` returns: AdamW over `model` and its per-step schedule.
    `warmup_steps` wins over `warmup_ratio` (a share of the total steps, rounded down) when given."""
    opt = torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps)
    total = total_steps(trainer)
    warmup = warmup_steps if warmup_steps is not None else int(warmup_ratio * total)
    return {"optimizer": opt,
            "lr_scheduler": {"scheduler": linear_warmup_decay(opt, total, warmup), "interval": "step"}}
