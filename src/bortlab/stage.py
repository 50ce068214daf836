"""The house every training stage lives in: fine-tuning (`bortlab.finetune.run`) and pre-training
(`bortlab.pretrain.run`) build their model and data, then let a `Stage` do the rest the same way.

    with Stage(cfg) as stage:                       # logs routed, seed set, run dir made
        trainer = stage.trainer(arch, monitor="val/accuracy", mode="max")
        stage.fit(module, dm)                       # resume=auto / a .ckpt, checked first
        ...
        stage.finish(result, final={"objective": ...})   # metrics.json (rank 0), final/* to the loggers
    # on leaving, however it left: DDP workers reaped, the W&B run closed

The logger and the callbacks come from the `logger` and `callbacks` config groups for every stage (a stage
adds its own on top, e.g. pre-training's loss curve); checkpoints are written atomically; under
`trainer=ddp` on one machine the stage starts ranks 1..N-1 itself (`bortlab.distributed`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def output_dir(cfg: DictConfig) -> Path:
    """The Hydra job's run directory; outside Hydra (tests, notebooks) `output_dir=` or the working dir."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except ImportError:
        pass
    return Path(cfg.get("output_dir") or os.getcwd())


class Stage:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.out = output_dir(cfg)
        self.checkpoint = None          # the ModelCheckpoint keeping best.ckpt, when checkpoints are on
        self.started = time.time()
        self._exits = contextlib.ExitStack()
        self._trainer = None

    def __enter__(self) -> "Stage":
        import lightning as L

        from bortlab.training import route_lightning_logs

        route_lightning_logs()
        L.seed_everything(int(self.cfg.seed), workers=True)
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        from bortlab.tracking import finish_tracking

        try:
            self._exits.__exit__(exc_type, exc, tb)      # DDP workers: waited for, or killed on an error
        finally:
            finish_tracking(self.cfg)                    # one W&B run per job, closed even on failure

    # ---- the trainer ---------------------------------------------------------------------------------
    def trainer(self, arch, *, monitor: str, mode: str, callbacks=(), shards_itself: bool = True,
                **trainer_overrides):
        """A Lightning Trainer from `cfg.trainer` (plus `trainer_overrides`), the configured logger and
        callbacks (best checkpoint by `monitor`/`mode`) and the stage's own `callbacks`.
        `shards_itself`: the datamodule splits batches across DDP ranks itself (TaskDataModule does; its
        length-grouped sampler cannot be rebuilt by Lightning)."""
        import lightning as L

        from bortlab.distributed import Workers, processes_to_start
        from bortlab.tracking import build_callbacks, build_logger
        from bortlab.training import AtomicCheckpointIO, training_precision

        kw = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        kw.update(trainer_overrides)
        training_precision(kw)          # precision=auto: bf16-mixed only where the hardware has bf16
        if shards_itself:
            kw.setdefault("use_distributed_sampler", False)
        workers = processes_to_start(kw)
        if workers:
            if kw.get("strategy", "auto") == "auto":
                kw["strategy"] = "ddp"
            self._exits.enter_context(Workers(workers, self.out))
        logger = build_logger(self.cfg, arch, self.out)
        configured, self.checkpoint = build_callbacks(self.cfg, self.out, monitor=monitor, mode=mode)
        self._trainer = L.Trainer(**kw, logger=logger, callbacks=[*callbacks, *configured],
                                  default_root_dir=str(self.out), plugins=[AtomicCheckpointIO()],
                                  enable_checkpointing=self.checkpoint is not None)
        return self._trainer

    def resume_from(self) -> str | None:
        """The checkpoint `resume=` names (checked whole), or None for a fresh run."""
        from bortlab.tracking import resolve_ckpt_path

        return resolve_ckpt_path(self.cfg, self.out)

    def fit(self, module, dm, ckpt_path: str | None = None) -> None:
        self._trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path if ckpt_path is not None else self.resume_from())

    @property
    def best_checkpoint(self) -> str | None:
        return (self.checkpoint.best_model_path or None) if self.checkpoint is not None else None

    # ---- the end -------------------------------------------------------------------------------------
    def finish(self, result: dict, final: dict[str, float]) -> None:
        """Rank 0 writes `metrics.json` atomically; every logger gets the `final/*` figures."""
        from bortlab.distributed import is_rank_zero
        from bortlab.files import write_json_atomic

        if not is_rank_zero():
            return
        if self._trainer is not None:       # what it trained in, after trainer.precision=auto was resolved
            result = {**result, "trainer_precision": str(self._trainer.precision)}
        write_json_atomic(self.out / "metrics.json", result)
        if self._trainer is not None and self._trainer.loggers:
            for lg in self._trainer.loggers:
                lg.log_metrics({f"final/{k}": float(v) for k, v in final.items()}, step=self._trainer.global_step)

    @property
    def seconds(self) -> float:
        return round(time.time() - self.started, 1)
