"""Learning curves of any run, fine-tuning or pre-training: a callback that records them by global step
(independent of the logger, kept in checkpoints so a resumed run continues its curve), `history.json` with
the points and a PNG of them.

`Curves` replaces `bortlab.pretrain.report.LossHistory` by an import change: the same attributes (`train`,
`val`, `fit_seconds`, `fit_tokens`), the same `save` JSON (`{"train": [[step, loss], ...], "val": [[step,
{metric: value}], ...]}`) and a `plot_curve(history, path, title)` with the same call.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from bortlab.files import write_atomic

# the dev metrics: `val/<name>` for a task's first dev split, `val_<split>/<name>` for the others (MNLI's mm)
_VAL_KEY = re.compile(r"^val(_[^/]+)?/")


def is_val_key(key: str) -> bool:
    return bool(_VAL_KEY.match(key))


def is_loss_key(key: str) -> bool:
    """Losses (lower is better, the train loss's scale) share a panel; scores get the other one."""
    return key.rsplit("/", 1)[-1] == "loss"


class Curves(Callback):
    """Train loss every `trainer.log_every_n_steps` steps (and step 1) and the dev metrics of every
    validation outside the sanity check, by global step; also the wall time and tokens of the last `fit`.

    `fit_only=True` ignores validations outside `trainer.fit`: fine-tuning's final `trainer.validate` reads
    the best checkpoint, and its scores would otherwise replace the last step's point. `dirpath` given: at the
    end of `fit` the global-zero process writes `history.json` and `curves.png` there (titled `title`).
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, title: str = "", fit_only: bool = False):
        self.dirpath, self.title, self.fit_only = dirpath, title, fit_only
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, dict]] = []
        self.fit_seconds, self.fit_tokens = 0.0, 0
        self._t0, self._tok0 = None, 0

    # ---- recording ---------------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        # a fine-tuning module counts no tokens: fit_tokens stays 0 there
        self._t0, self._tok0 = time.perf_counter(), getattr(pl_module, "tokens_seen", 0)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._t0 is not None:
            self.fit_seconds = time.perf_counter() - self._t0
        self.fit_tokens = getattr(pl_module, "tokens_seen", 0) - self._tok0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:                      # a training_step that skipped its batch
            return
        # under gradient accumulation several batches end at one global step: keep the first
        if self.train and self.train[-1][0] == step:
            return
        if step % max(1, trainer.log_every_n_steps) == 0 or step == 1:
            self.train.append((step, float(loss)))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or (self.fit_only and trainer.state.fn != "fit"):
            return
        metrics = {}
        for k, v in trainer.callback_metrics.items():
            if is_val_key(k):
                try:
                    metrics[k] = float(v)
                except (TypeError, ValueError, RuntimeError):   # a non-scalar logged value: not a curve point
                    pass
        if "val/ce" in metrics:
            metrics["val/ppl"] = math.exp(min(metrics["val/ce"], 50.0))   # perplexity of a pre-trained MLM
        self.val = [p for p in self.val if p[0] != trainer.global_step] + [(trainer.global_step, metrics)]

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.dirpath is not None and trainer.is_global_zero:
            out = Path(self.dirpath)
            self.save(out / "history.json")
            self.plot(out / "curves.png", self.title)

    # ---- resume ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"train": self.train, "val": self.val}

    def load_state_dict(self, state: dict) -> None:
        self.train = [tuple(p) for p in state.get("train", [])]
        self.val = [tuple(p) for p in state.get("val", [])]

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # a pre-training checkpoint written before the switch keeps its curve under LossHistory's state key;
        # Lightning only hands this callback the entry under "Curves"
        states = checkpoint.get("callbacks") or {}
        if self.state_key not in states and "LossHistory" in states:
            self.load_state_dict(states["LossHistory"])

    # ---- files -------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        return write_atomic(path, json.dumps({"train": self.train, "val": self.val}, indent=1) + "\n")

    def plot(self, path: str | os.PathLike, title: str = "") -> Path:
        return plot_curve(self, path, title)


def plot_curve(history, path: str | os.PathLike, title: str = "") -> Path:
    """A PNG of `history` (anything with `train` and `val` as `Curves` holds them): train and dev losses by
    step on the left, the other dev metrics on the right."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4.0), dpi=110)
    if history.train:
        # dots on a short curve: a single point drawn as a line is invisible
        ax_loss.plot(*zip(*history.train), lw=1, alpha=0.6, marker="o" if len(history.train) < 20 else None,
                     ms=3, label="train/loss")
    keys = list(dict.fromkeys(k for _, m in history.val for k in m))
    for key in keys:
        pts = [(s, m[key]) for s, m in history.val if key in m]
        (ax_loss if is_loss_key(key) else ax_score).plot(*zip(*pts), "o-", lw=1.5, ms=3, label=key)
    scores = [m[k] for _, m in history.val for k in m if not is_loss_key(k)]
    # perplexity beside cross-entropy, or a loss-like score beside accuracy: a linear axis flattens the small one
    if scores and min(scores) > 0 and max(scores) / min(scores) > 50:
        ax_score.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="loss", title="losses")
    ax_score.set(xlabel="step", ylabel="value", title="dev metrics")
    for ax in (ax_loss, ax_score):
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes, color="0.5")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_atomic(path, buf.getvalue())
