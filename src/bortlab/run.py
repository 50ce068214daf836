"""The task function behind `train.py`: fine-tune one architecture on one task and return the objective.

`run(cfg)` returns 1 − the task's selection metric on its first dev split (lower is better), so any Hydra
sweeper — the FPTAS sweeper, Optuna, a grid — can minimise it. Each run writes `metrics.json` (final dev
metrics, objective, architecture tuple, parameter and operation counts) into its run directory.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError
from bortlab.models.build import arch_from_cfg, build_model, build_tokenizer

log = logging.getLogger(__name__)


def output_dir(cfg: DictConfig) -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir)
    except ImportError:
        pass
    return Path(cfg.get("output_dir") or os.getcwd())


def write_json_atomic(path: Path, obj) -> None:
    from bortlab.files import write_json_atomic as write

    write(path, obj)


def check_task(task) -> None:
    """A task a job can train on: diagnostic sets (AX, AX-b, AX-g) have no training data."""
    if task.predict_with:
        from bortlab.data.tasks import TaskError

        raise TaskError(f"{task.name} is a diagnostic set with no training data: the leaderboard scores it with "
                        f"the {task.predict_with} model. Run task={task.predict_with} (with predict=true); its run "
                        f"writes the {task.name} predictions too.")


def run(cfg: DictConfig) -> float:
    import lightning as L

    from bortlab.data.datamodule import TaskDataModule
    from bortlab.data.tasks import get_task
    from bortlab.models.finetune import FineTuneModule
    from bortlab.tracking import build_callbacks, build_logger, finish_tracking, resolve_ckpt_path
    from bortlab.training import AtomicCheckpointIO, route_lightning_logs

    route_lightning_logs()

    from bortlab.checks import check_config, check_max_length

    check_config(cfg)
    if str(cfg.task.name).startswith("pretrain/"):   # distillation / MLM pre-training stage
        from bortlab.pretrain.run import run_pretrain

        return run_pretrain(cfg)
    arch_from_cfg(cfg)                      # a bad tuple fails here, before any loading
    task = get_task(cfg.task.name)
    check_task(task)
    L.seed_everything(int(cfg.seed), workers=True)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg)
    model, arch = build_model(cfg, task, tokenizer)
    log.info("task %s, arch %s: %.2fM parameters (%.2fM effective)", task.name, arch,
             arch.num_params() / 1e6, arch.num_params(non_embedding=True) / 1e6)

    max_length = int(cfg.data.max_length or cfg.task.get("max_length") or task.max_length)
    check_max_length(max_length, arch)
    dm = TaskDataModule(
        task, tokenizer, root=cfg.data.root, max_length=max_length,
        batch_size=cfg.data.batch_size, eval_batch_size=cfg.data.eval_batch_size,
        group_by_length=cfg.data.group_by_length, num_workers=cfg.data.num_workers, seed=int(cfg.seed),
        use_token_types=arch.uses_token_types, passage_fit=cfg.data.passage_fit,
    )
    module = FineTuneModule(model, task, datamodule=dm, **OmegaConf.to_container(cfg.optim, resolve=True))
    from bortlab.distributed import Workers, is_rank_zero, processes_to_start

    trainer_kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    # the datamodule shards its own length-grouped batches per rank (Lightning cannot rebuild that sampler)
    trainer_kw.setdefault("use_distributed_sampler", False)
    workers = processes_to_start(trainer_kw)
    if workers and trainer_kw.get("strategy", "auto") == "auto":
        trainer_kw["strategy"] = "ddp"
    started = time.time()
    try:
        with (Workers(workers, out) if workers else contextlib.nullcontext()):
            logger = build_logger(cfg, arch, out)
            callbacks, ckpt_cb = build_callbacks(cfg, task, out)
            trainer = L.Trainer(**trainer_kw, logger=logger, callbacks=callbacks, default_root_dir=str(out),
                                plugins=[AtomicCheckpointIO()], enable_checkpointing=ckpt_cb is not None)
            # TaskDataModule carries its place in the epoch in the checkpoint and skips what was trained, so
            # Lightning's warning about a non-resumable loader on a mid-epoch resume does not apply here
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
            trainer.fit(module, datamodule=dm, ckpt_path=resolve_ckpt_path(cfg, out))
            best = ckpt_cb.best_model_path if ckpt_cb is not None else ""
            # final dev metrics from the best checkpoint (selection metric), not from the last step
            trainer.validate(module, datamodule=dm, ckpt_path=best or None, verbose=False)
            dev = dict(module.last_metrics)
            selection = f"val/{task.metrics[0]}"
            if selection not in dev:
                raise SetupError(f"No dev score {selection!r} was computed for {task.name}: is the dev split empty, "
                                 f"or trainer.limit_val_batches=0? Got {sorted(dev)}.")
            objective = 1.0 - dev[selection]
            if not is_rank_zero():        # under DDP, rank 0 alone predicts and writes the run's files
                return float(objective)
            submission = None
            if cfg.get("predict", False):
                from bortlab.predict import predict_test

                submission = predict_test(module, dm, out / "submission")
            result = {
                "task": task.name, "objective": objective, "selection_metric": selection, "dev": dev,
                "arch": arch.to_dict(), "tuple": list(arch.tuple),
                "params": {"net": arch.num_params(), "effective": arch.num_params(non_embedding=True)},
                "ops_per_forward_128": arch.num_ops(128), "init": cfg.model.init,
                "steps": int(trainer.global_step), "train_seconds": round(time.time() - started, 1),
                "processes": int(trainer.world_size),
                "best_checkpoint": best or None, "submission": str(submission) if submission else None,
            }
            write_json_atomic(out / "metrics.json", result)
            log.info("%s dev: %s; objective %.4f (metrics.json in %s)", task.name,
                     ", ".join(f"{k}={v:.4f}" for k, v in dev.items()), objective, out)
            if logger:
                for lg in trainer.loggers:
                    lg.log_metrics({"final/objective": objective, **{f"final/{k}": v for k, v in dev.items()}},
                                   step=trainer.global_step)
            return float(objective)
    finally:
        finish_tracking(cfg)
