"""Lightning plumbing shared by the fine-tuning and pre-training stages."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)
BF16_PRECISIONS = ("bf16", "bf16-mixed", "bf16-true")   # Lightning's spellings of bf16 training


def training_precision(kw: dict) -> dict:
    """Resolve `trainer.precision=auto` in the Trainer's arguments `kw` (in place; returned): bf16-mixed where
    the device computes bf16 natively (CUDA with bf16, a CPU with AVX512-BF16/AMX), else 32-true, because
    emulated bf16 trains many times slower than fp32. An explicit bf16 on such a CPU is kept, with a warning."""
    import torch

    from bortlab.models.precision import cpu_name, native_bf16, warn_if_emulated

    precision = str(kw.get("precision", "32-true"))
    accelerator = str(kw.get("accelerator", "auto"))
    device = "cuda" if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()) else "cpu"
    if precision == "auto":
        kw["precision"] = "bf16-mixed" if native_bf16(device) else "32-true"
        log.info("trainer.precision=auto: %s (%s)", kw["precision"],
                 "CUDA" if device == "cuda" else cpu_name())
    elif precision in BF16_PRECISIONS and device == "cpu":
        warn_if_emulated("bf16", f"trainer.precision={precision}")
    return kw


def route_lightning_logs() -> None:
    """Lightning puts a stderr handler on its own loggers at import; under Hydra, which already logs to the
    console and the job's .log file, every Lightning line then appeared twice. Send them through Hydra's
    handlers only. Also silence the advice to `sync_dist` dev metrics: the module gathers every rank's
    predictions itself, so each rank logs the same whole-dev-set values."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            lg = logging.getLogger(name)
            for h in [h for h in lg.handlers if type(h) is logging.StreamHandler]:
                lg.removeHandler(h)
            lg.propagate = True
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(.*sync_dist=True")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames: an interrupted save never
    leaves a truncated `.ckpt` where a resumable one used to be."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        from bortlab.files import atomic_path

        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class LastCheckpoint(Callback):
    """Keeps `<dirpath>/last.ckpt` = the latest training state, for `resume=auto`.

    Lightning's own `ModelCheckpoint(save_last=True)` (2.6) rewrites last.ckpt only when its top-k checkpoint
    was saved at the same step, i.e. when the monitored metric improved: a resume would go back to the best
    dev check and retrain everything after it. This one saves after every dev check during fit and again at
    the end of each training epoch (unless a dev check already saved that very step), so the epoch's tail
    after its last dev check is never lost either.
    """

    def __init__(self, dirpath, weights_only: bool = False):
        self.path = Path(dirpath) / "last.ckpt"
        self.weights_only = weights_only
        self._saved_step = -1

    def _save(self, trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run or trainer.global_step == self._saved_step:
            return
        trainer.save_checkpoint(self.path, weights_only=self.weights_only)
        self._saved_step = trainer.global_step

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._save(trainer)
