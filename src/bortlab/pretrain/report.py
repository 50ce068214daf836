"""The loss curve of a pre-training run: collected by a callback (independent of the logger, kept in
checkpoints so a resumed run continues its curve) and drawn as `loss_curve.png`."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class LossHistory(Callback):
    """Train loss every `trainer.log_every_n_steps` steps and every held-out evaluation, by global step;
    also the wall time and tokens of the last `fit` (for throughput)."""

    def __init__(self):
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, dict]] = []
        self.fit_seconds, self.fit_tokens = 0.0, 0
        self._t0, self._tok0 = None, 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._tok0 = time.perf_counter(), pl_module.tokens_seen

    def on_train_end(self, trainer, pl_module) -> None:
        self.fit_seconds = time.perf_counter() - self._t0
        self.fit_tokens = pl_module.tokens_seen - self._tok0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % max(1, trainer.log_every_n_steps) == 0 or step == 1:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.train.append((step, float(loss)))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if "val/ce" in metrics:
            metrics["val/ppl"] = math.exp(min(metrics["val/ce"], 50.0))   # perplexity of the student's MLM
        self.val = [p for p in self.val if p[0] != trainer.global_step] + [(trainer.global_step, metrics)]

    def state_dict(self) -> dict:
        return {"train": self.train, "val": self.val}

    def load_state_dict(self, state: dict) -> None:
        self.train = [tuple(p) for p in state.get("train", [])]
        self.val = [tuple(p) for p in state.get("val", [])]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"train": self.train, "val": self.val}, indent=1) + "\n")


def plot_curve(history: LossHistory, path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if history.train:
        ax.plot(*zip(*history.train), lw=1, alpha=0.6, label="train loss")
    if history.val:
        ax.plot([s for s, _ in history.val], [m["val/loss"] for _, m in history.val], "o-", lw=2,
                label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
