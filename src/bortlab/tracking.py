"""Loggers (W&B offline-capable, CSV, none), callbacks and resume, from the `logger`/`callbacks` nodes."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def sweep_group(cfg: DictConfig) -> str | None:
    """Runs of one Hydra multirun share a W&B group: the sweep directory's name."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            hc = HydraConfig.get()
            if str(hc.mode) == "RunMode.MULTIRUN":
                return cfg.logger.get("group") or f"{hc.job.name}-{Path(hc.sweep.dir).as_posix().replace('/', '-')}"
    except ImportError:
        pass
    return cfg.logger.get("group")


def run_config(cfg: DictConfig, arch) -> dict:
    conf = OmegaConf.to_container(cfg, resolve=True)
    conf["arch_tuple"] = list(arch.tuple)
    conf["params_net"] = arch.num_params()
    conf["params_effective"] = arch.num_params(non_embedding=True)
    conf["ops_per_forward_128"] = arch.num_ops(128)
    return conf


def keep_previous_csv_log(path: Path) -> None:
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed (or repeated) run in the same
    directory keeps the earlier log beside it as metrics.1.csv, metrics.2.csv, ... (oldest first)."""
    if not path.exists():
        return
    n = 1
    while path.with_name(f"metrics.{n}.csv").exists():
        n += 1
    kept = path.with_name(f"metrics.{n}.csv")
    path.rename(kept)
    log.info("the earlier run's CSV log in this directory is kept as %s", kept)


def build_logger(cfg: DictConfig, arch, out: Path):
    kind = cfg.logger.get("name", "csv") if cfg.get("logger") else "none"
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        from bortlab.distributed import is_rank_zero

        if is_rank_zero():      # under DDP only rank 0 writes the log
            keep_previous_csv_log(out / "csv" / "metrics.csv")
        # the earlier metrics.csv was just moved aside, so Lightning's "previous log files will be deleted"
        # warning (it fires on any non-empty directory, hparams.yaml included) no longer tells the truth
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        lg = CSVLogger(save_dir=str(out), name="csv", version="")
        lg.log_hyperparams(run_config(cfg, arch))
        return lg
    if kind == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        # offline unless the environment says otherwise: runs land in <run dir>/wandb, `wandb sync` later
        os.environ.setdefault("WANDB_MODE", cfg.logger.get("mode", "offline"))
        lg = WandbLogger(
            project=cfg.logger.get("project", "bortlab"), entity=cfg.logger.get("entity"),
            name=cfg.logger.get("run_name") or f"{cfg.task.name}-{cfg.arch.get('name', 'custom')}-s{cfg.seed}",
            group=sweep_group(cfg), job_type=cfg.logger.get("job_type", "finetune"), save_dir=str(out),
            tags=list(cfg.logger.get("tags") or []),
        )
        lg.experiment.config.update(run_config(cfg, arch), allow_val_change=True)
        return lg
    raise ValueError(f"logger.name={kind!r}: choose logger=wandb, logger=csv or logger=none.")


def finish_tracking(cfg: DictConfig) -> None:
    """One W&B run per job: close it even when the job failed, so the next job of a sweep starts clean."""
    if cfg.get("logger") and cfg.logger.get("name") == "wandb":
        try:
            import wandb

            if wandb.run is not None:
                wandb.finish()
        except Exception as e:  # never mask the job's own exception
            log.warning("wandb.finish() failed: %s", e)


def build_callbacks(cfg: DictConfig, out: Path, *, monitor: str, mode: str):
    """The `callbacks` config group: progress bar, lr monitor, best checkpoint by `monitor` (`mode` max for
    a score, min for a loss; + last.ckpt for resume), early stopping on `monitor`, and `callbacks.extra`."""
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    cb_cfg = cfg.get("callbacks") or {}
    callbacks, ckpt = [], None
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(TQDMProgressBar(refresh_rate=int(cb_cfg.get("progress_refresh_rate", 10))))
    if cfg.get("logger") and cfg.logger.get("name", "none") != "none":
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    ck = cb_cfg.get("checkpoint") or {}
    if ck.get("enabled", True):
        weights_only = bool(ck.get("weights_only", False))
        ckpt = ModelCheckpoint(
            dirpath=str(out / "checkpoints"), filename="best", monitor=monitor, mode=mode,
            save_top_k=1, save_last=False, auto_insert_metric_name=False,
            save_weights_only=weights_only or bool(ck.get("best_weights_only", True)),
        )
        callbacks.append(ckpt)
        if ck.get("save_last", True):
            from bortlab.training import LastCheckpoint

            callbacks.append(LastCheckpoint(out / "checkpoints", weights_only=weights_only))
    es = cb_cfg.get("early_stopping") or {}
    if es.get("enabled", False):
        from lightning.pytorch.callbacks import EarlyStopping

        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=int(es.get("patience", 3))))
    for extra in (cb_cfg.get("extra") or {}).values():
        if extra is not None:
            from hydra.errors import InstantiationException
            from hydra.utils import instantiate

            try:
                callbacks.append(instantiate(extra))
            except InstantiationException as e:
                # a callback's own bad-input error (e.g. Agora's SetupError) is clearer than Hydra's wrapper
                from bortlab.errors import USER_ERRORS

                if isinstance(e.__cause__, USER_ERRORS):
                    raise e.__cause__ from None
                raise
    return callbacks, ckpt


def check_checkpoint(path: Path, run_dir: Path | None = None) -> None:
    """A checkpoint cut short (a full disk, an interrupted copy) fails deep inside torch.load; say which file
    and what to do. torch checkpoints are zip archives whose directory sits at the end: a cut one has none."""
    import zipfile

    if zipfile.is_zipfile(path):
        return
    best = path.with_name("best.ckpt")
    kept = (f" {best} is whole: it holds the weights of the best dev check (no optimizer state, so it cannot be "
            "resumed) for scoring, labelling and export." if best.exists() and best != path and zipfile.is_zipfile(best)
            else "")
    fresh = f"start afresh in a new run dir (or move {run_dir} away)" if run_dir else "start afresh without resume"
    from bortlab.config import SetupError

    raise SetupError(f"The checkpoint {path} is damaged or incomplete ({path.stat().st_size:,} bytes, not a whole "
                     f"torch checkpoint; an interrupted copy or a full disk?). Training cannot continue from it: "
                     f"{fresh}.{kept}")


def resolve_ckpt_path(cfg: DictConfig, out: Path):
    """`resume=auto` continues from <run dir>/checkpoints/last.ckpt when an interrupted run left one, and says
    so when there is none (a mistyped run dir would otherwise start afresh without a word)."""
    resume = cfg.get("resume")
    if resume in (None, False, "none", "null"):
        return None
    if resume in ("auto", True, "last"):
        last = out / "checkpoints" / "last.ckpt"
        if last.exists():
            check_checkpoint(last, out)
            log.info("resuming from %s", last)
            return str(last)
        log.warning("resume=auto: %s holds no checkpoints/last.ckpt, so this is a fresh run. If you meant to "
                    "continue an earlier run, pass its directory as hydra.run.dir=<run dir>.", out)
        return None
    path = Path(str(resume))
    if not path.exists():
        from bortlab.config import SetupError

        raise SetupError(f"resume={resume}: no such checkpoint file. Pass a .ckpt path, or resume=auto.")
    check_checkpoint(path)
    return str(path)
