"""The pre-training LightningModule: masked-LM, with or without a frozen teacher (the Bort recipe).

Per masked position (Bort's defaults α = 0.1, β = 0.5, T = 2):

    loss = α · CE(student, gold) + β · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

plus, for a teacher without an MLM head (or when `hidden_weight` > 0), hidden-state distillation:
γ · MSE(P · h_student, h_teacher) over every real token, with P a learned linear projection from the
student's width to the teacher's (dropped after pre-training). Without a teacher the loss is the plain
MLM cross-entropy. Optimiser: AdamW without decay on LayerNorm/bias, linear warm-up then linear decay.

The teacher is deliberately *not* a registered submodule: it is not saved in checkpoints (it can be larger
than the student by far; it is reloaded from its path on resume), Lightning's `train()` never switches it
out of eval mode, and the optimiser never sees its weights.
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from bortlab.models.mlm import MaskedLM


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, labels: torch.Tensor,
                 alpha: float = 0.1, beta: float = 0.5, temperature: float = 2.0) -> dict[str, torch.Tensor]:
    """Losses over N masked positions: logits (N, V), gold labels (N,). Returns loss, ce and (with a
    teacher) kl, each a mean over positions. Without a teacher `loss` is the cross-entropy alone."""
    ce = F.cross_entropy(student_logits.float(), labels)
    if teacher_logits is None:
        return {"loss": ce, "ce": ce}
    T = temperature
    kl = F.kl_div(F.log_softmax(student_logits.float() / T, dim=-1), F.log_softmax(teacher_logits.float() / T, dim=-1),
                  log_target=True, reduction="batchmean")
    return {"loss": alpha * ce + beta * T * T * kl, "ce": ce, "kl": kl}


class DistillModule(L.LightningModule):
    def __init__(self, student: MaskedLM, teacher: MaskedLM | None = None, *, alpha: float = 0.1, beta: float = 0.5,
                 temperature: float = 2.0, hidden_weight: float | None = None, lr: float = 1e-4,
                 weight_decay: float = 0.01, warmup_ratio: float = 0.01, warmup_steps: int | None = None,
                 betas=(0.9, 0.999), eps: float = 1e-6):
        super().__init__()
        self.student = student
        object.__setattr__(self, "teacher", teacher)   # unregistered on purpose (see module docstring)
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        logits_kd = teacher is not None and teacher.head is not None
        if hidden_weight is None:   # a teacher without an MLM head can only teach its hidden states
            hidden_weight = 0.0 if teacher is None or logits_kd else 1.0
        if teacher is not None and not logits_kd and hidden_weight <= 0:
            raise ValueError("The teacher has no MLM head, so logit distillation is impossible and "
                             "task.hidden_weight=0 leaves nothing to distil; set task.hidden_weight > 0.")
        self.alpha, self.beta, self.T, self.hidden_weight = alpha, beta, temperature, float(hidden_weight)
        self.logits_kd = logits_kd
        self.proj = (torch.nn.Linear(student.arch.hidden, teacher.arch.hidden)
                     if teacher is not None and self.hidden_weight > 0 else None)
        self.lr, self.weight_decay, self.warmup_ratio, self.warmup_steps = lr, weight_decay, warmup_ratio, warmup_steps
        self.betas, self.eps = tuple(betas), eps
        self.tokens_seen = 0
        self.save_hyperparameters({"alpha": alpha, "beta": beta, "temperature": temperature,
                                   "hidden_weight": self.hidden_weight, "lr": lr, "weight_decay": weight_decay,
                                   "warmup_ratio": warmup_ratio, "warmup_steps": warmup_steps,
                                   "betas": list(self.betas), "eps": eps, "student": student.arch.to_dict()})

    # ---- the loss ------------------------------------------------------------------------------------
    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        chosen = labels.ne(-100)
        h = self.student(ids, attention_mask=mask)                              # (B, L, Hs)
        s_logits = self.student.logits(h[chosen])                               # (N, V) at masked positions only
        t_logits = t_hidden = None
        if self.teacher is not None:
            with torch.no_grad():
                t_hidden = self.teacher(ids, attention_mask=mask)               # (B, L, Ht)
                if self.logits_kd:
                    t_logits = self.teacher.logits(t_hidden[chosen])
        out = distill_loss(s_logits, t_logits, labels[chosen], self.alpha, self.beta, self.T)
        if self.teacher is not None and not self.logits_kd:
            out["loss"] = self.alpha * out["ce"]                                # the gold term still applies
        if self.proj is not None:
            real = mask.bool()
            out["mse"] = F.mse_loss(self.proj(h[real]).float(), t_hidden[real].float())
            out["loss"] = out["loss"] + self.hidden_weight * out["mse"]
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.losses(batch)
        seen = batch["attention_mask"].sum()
        if self.trainer.world_size > 1:       # every rank's tokens: the run's count, not this shard's
            seen = self.all_gather(seen).sum()
        self.tokens_seen += int(seen)
        n = int(batch["input_ids"].shape[0])
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, prog_bar=False, batch_size=n)
        self.log("train/tokens", float(self.tokens_seen), batch_size=n)
        return out["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.losses(batch)
        n = int(batch["labels"].ne(-100).sum())   # weight batches by masked positions: a mean over positions
        self.log_dict({f"val/{k}": v for k, v in out.items()}, prog_bar=True, batch_size=n, sync_dist=True)

    # ---- devices, checkpoints ---------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._teacher_to_device()

    def on_validation_start(self) -> None:
        self._teacher_to_device()

    def _teacher_to_device(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device).eval()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))

    # ---- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self):
        from bortlab.optim import adamw_with_schedule

        return adamw_with_schedule(self, self.trainer, lr=self.lr, weight_decay=self.weight_decay,
                                   warmup_ratio=self.warmup_ratio, warmup_steps=self.warmup_steps,
                                   betas=self.betas, eps=self.eps)
