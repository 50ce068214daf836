"""The fine-tuning LightningModule: an encoder with a task head, AdamW with linear warm-up and decay,
official metrics on every dev split, predictions in file order for submissions."""
from __future__ import annotations

import math
from typing import Optional

import lightning as L
import torch
import torch.nn.functional as F

from bortlab.data.tasks import Task, get_task


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


class FineTuneModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, task: str | Task, lr: float = 5e-5, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, warmup_steps: Optional[int] = None, betas=(0.9, 0.999),
                 eps: float = 1e-8, datamodule=None):
        super().__init__()
        self.model = model
        self.task = task if isinstance(task, Task) else get_task(task)
        self.lr, self.weight_decay, self.warmup_ratio, self.warmup_steps = lr, weight_decay, warmup_ratio, warmup_steps
        self.betas, self.eps = tuple(betas), eps
        self.dm = datamodule                     # rows are needed for grouped metrics (MultiRC, ReCoRD)
        # plain values only: checkpoints must load with weights_only=True
        self.save_hyperparameters({"task": self.task.name, "lr": lr, "weight_decay": weight_decay,
                                   "warmup_ratio": warmup_ratio, "warmup_steps": warmup_steps,
                                   "betas": list(self.betas), "eps": eps})
        self._outputs: dict[int, list] = {}
        self.last_metrics: dict[str, float] = {}

    # ---- forward and loss --------------------------------------------------------------------------
    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch["input_ids"], attention_mask=batch["attention_mask"],
                          token_type_ids=batch.get("token_type_ids"))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.task.kind == "regression":
            return F.mse_loss(logits.squeeze(-1), labels.float())
        return F.cross_entropy(logits, labels)   # classification, or a softmax over choices

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].shape[0])
        return loss

    # ---- evaluation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self(batch)
        self._outputs.setdefault(dataloader_idx, []).append(
            (batch["index"].cpu(), logits.detach().float().cpu(), batch["labels"].cpu() if "labels" in batch else None))

    def _gathered(self) -> dict[int, list]:
        """This process's outputs, or under DDP every rank's (each rank scored its shard of the dev set)."""
        if self.trainer is None or self.trainer.world_size <= 1:
            return self._outputs
        import torch.distributed as dist

        every = [None] * self.trainer.world_size
        dist.all_gather_object(every, self._outputs)
        merged: dict[int, list] = {}
        for outs in every:
            for k, batches in outs.items():
                merged.setdefault(k, []).extend(batches)
        return merged

    def on_validation_epoch_end(self) -> None:
        from bortlab.data.scoring import score

        dm = self._datamodule()
        splits = dm.dev_splits if dm is not None else self.task.dev_splits
        metrics = {}
        for k, outs in sorted(self._gathered().items()):
            split = splits[k]
            index, logits, labels = _in_order(outs)
            if k == 0 and labels is not None:
                metrics["val/loss"] = float(self.loss(logits, labels))
            rows = [dm.rows[split][i] for i in index.tolist()] if dm is not None else None
            for name, value in score(self.task, logits, rows).items():
                key = f"val/{name}" if k == 0 else f"val_{split}/{name}"
                metrics[key] = float(value)
        if metrics:
            # every rank holds the same (gathered) values, so no further reduction is needed
            self.log_dict(metrics, prog_bar=True, sync_dist=False, rank_zero_only=False)
            self.last_metrics = metrics

    def _datamodule(self):
        """The rows behind the dev scores: the datamodule the Trainer runs with, else the one given."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return dm if dm is not None else self.dm

    # ---- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = torch.optim.AdamW(decay_groups(self.model, self.weight_decay), lr=self.lr, betas=self.betas, eps=self.eps)
        total = int(self.trainer.estimated_stepping_batches) if self.trainer is not None else 1
        total = total if math.isfinite(total) and total > 0 else 1
        warmup = self.warmup_steps if self.warmup_steps is not None else int(self.warmup_ratio * total)
        sched = linear_warmup_decay(opt, total, warmup)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _in_order(outs: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Concatenate per-batch (row index, logits, labels) and sort by row index, once per row: batches were
    sorted by length, with `limit_val_batches` only some rows were seen, and a DDP rank whose shard was one
    batch short repeated its last one."""
    index = torch.cat([o[0] for o in outs])
    logits = torch.cat([o[1] for o in outs])
    labels = None if any(o[2] is None for o in outs) else torch.cat([o[2] for o in outs])
    order = index.argsort(stable=True)
    index, logits = index[order], logits[order]
    labels = labels[order] if labels is not None else None
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[1:] != index[:-1]
    return index[first], logits[first], (labels[first] if labels is not None else None)
