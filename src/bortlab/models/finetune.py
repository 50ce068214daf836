"""The fine-tuning LightningModule: an encoder with a task head, AdamW with linear warm-up and decay,
official metrics on every dev split, predictions in file order for submissions."""
from __future__ import annotations

import logging
from typing import Optional

import lightning as L
import torch
import torch.nn.functional as F

from bortlab.data.tasks import Task, get_task

log = logging.getLogger(__name__)


class FineTuneModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, task: str | Task, lr: float = 5e-5, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, warmup_steps: Optional[int] = None, betas=(0.9, 0.999),
                 eps: float = 1e-8, soft_temperature: float = 1.0):
        super().__init__()
        self.model = model
        self.task = task if isinstance(task, Task) else get_task(task)
        self.lr, self.weight_decay, self.warmup_ratio, self.warmup_steps = lr, weight_decay, warmup_ratio, warmup_steps
        self.betas, self.eps = tuple(betas), eps
        # T of the soft-target term (rows with a soft label: Agora's soft labels, a distillation teacher)
        self.soft_temperature = float(soft_temperature)
        # plain values only: checkpoints must load with weights_only=True
        self.save_hyperparameters({"task": self.task.name, "lr": lr, "weight_decay": weight_decay,
                                   "warmup_ratio": warmup_ratio, "warmup_steps": warmup_steps,
                                   "betas": list(self.betas), "eps": eps, "soft_temperature": soft_temperature})
        self.end_epoch_early = False     # set by a callback (Agora's step rounds) to restart the train loader
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

    def soft_loss(self, logits: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
        """Mean over rows of (1 − w)·CE(label) + w·T²·KL(p_T ‖ softmax(z / T)), where p_T = the soft target
        sharpened or flattened to temperature T (softmax(log p / T); T = 1 leaves it as it is) and w the
        row's soft weight: 0 on real rows (plain CE), 1 on rows trained on the soft target alone. T² keeps the
        gradient's size independent of T (Hinton et al., 2015)."""
        T = self.soft_temperature
        ce = F.cross_entropy(logits, labels, reduction="none")
        teacher = torch.log(soft.clamp_min(1e-12)) / T
        teacher = teacher - teacher.logsumexp(-1, keepdim=True)
        kl = F.kl_div(F.log_softmax(logits.float() / T, -1), teacher, reduction="none", log_target=True).sum(-1)
        kl = torch.where(weight > 0, kl, torch.zeros_like(kl))   # rows without a soft target: no KL term
        return ((1 - weight) * ce + weight * (T * T) * kl).mean()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if "soft_labels" in batch and self.task.kind != "regression":
            loss = self.soft_loss(self(batch), batch["labels"], batch["soft_labels"], batch["soft_weight"])
        else:
            loss = self.loss(self(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["labels"].shape[0])
        return loss

    # ---- ending an epoch early ---------------------------------------------------------------------
    # Lightning ends an epoch when on_train_batch_start returns -1; the next epoch then rebuilds the train
    # loader (reload_dataloaders_every_n_epochs=1), which serves rows added since. The skipped batch is not
    # trained, and its lr-scheduler step is skipped too, so the schedule stays in step with global_step.
    def on_train_epoch_start(self) -> None:
        self.end_epoch_early = False      # this epoch's loader was built after the request: nothing to restart

    def on_train_batch_start(self, batch, batch_idx: int):
        if self.end_epoch_early:
            self.end_epoch_early, self._skip_scheduler_step = False, True
            return -1
        return None

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if getattr(self, "_skip_scheduler_step", False):
            self._skip_scheduler_step = False
            return
        scheduler.step() if metric is None else scheduler.step(metric)

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

        # the rows behind the scores (gold labels; MultiRC/ReCoRD groups) come from the Trainer's datamodule
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None and self._outputs:
            log.warning("no datamodule attached (trainer.fit/validate(module, datamodule=dm)): dev rows unknown, "
                        "so no dev metrics are computed")
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

    # ---- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        from bortlab.optim import adamw_with_schedule

        return adamw_with_schedule(self.model, self.trainer, lr=self.lr, weight_decay=self.weight_decay,
                                   warmup_ratio=self.warmup_ratio, warmup_steps=self.warmup_steps,
                                   betas=self.betas, eps=self.eps)


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
