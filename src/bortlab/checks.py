"""Checks of a job config that need no loading: each bad value a user plausibly types becomes one SetupError
naming the key and the fix (train.py prints it and exits 2) instead of a traceback from deep inside torch,
Lightning or the hub client, or a run that trains forever or reports a score after 0 steps.

`check_config(cfg)` runs first in every job (fine-tuning and pre-training).
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError

LOGGERS = ("csv", "wandb", "none")


def _int(cfg, key: str, low: int | None = None):
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SetupError(f"{key}={value!r} is not a whole number. Pass e.g. {key}={low if low is not None else 0}.")
    if low is not None and value < low:
        raise SetupError(f"{key}={value} must be >= {low}.")
    return int(value)


def check_paths(cfg: DictConfig) -> None:
    """A local path that does not exist is named as such; otherwise the hub client answers that a missing
    directory is "not a valid repo id", which sends the user looking in the wrong place."""
    from bortlab.models.hf import _looks_local     # the loader's own rule for "a path, not a hub id"

    keys = [k for k in ("pretrained", "tokenizer", "source") if OmegaConf.select(cfg, f"model.{k}", default=None)]
    init = OmegaConf.select(cfg, "model.init", default=None)
    for k in keys:
        if (k == "pretrained" and init == "scratch") or (k == "source" and init != "extract"):
            continue     # not read by this run
        name = str(cfg.model[k])
        if _looks_local(name) and not Path(name).expanduser().exists():
            raise SetupError(
                f"model.{k}={name}: that path does not exist. Point model.{k} at an existing directory (a checkpoint "
                "with config.json and weights, a bortlab pre-training run or its export/), a hub id such as "
                "bert-base-uncased" + (", or train from random weights with model.init=scratch." if k != "tokenizer"
                                        else ", or leave model.tokenizer unset to use the checkpoint's own."))


def check_budget(cfg: DictConfig) -> None:
    steps = _int(cfg, "trainer.max_steps", low=-1)
    epochs = _int(cfg, "trainer.max_epochs", low=-1)
    if (steps is None or steps == -1) and (epochs is None or epochs == -1):
        raise SetupError(
            f"trainer.max_epochs={epochs} with trainer.max_steps={steps} trains without end, and the learning-rate "
            "schedule decays over a known number of steps. Set trainer.max_epochs to a positive number (e.g. 3) or "
            "trainer.max_steps (e.g. 1000).")
    if steps == 0 or epochs == 0:
        raise SetupError(f"trainer.max_steps={steps}, trainer.max_epochs={epochs}: a budget of 0 trains nothing and "
                         "would report the untrained model's dev score. Give a positive budget.")


def check_optim(node, where: str) -> None:
    if node is None:
        return
    lr = node.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0 and math.isfinite(lr)):
        raise SetupError(f"{where}.lr={lr!r}: the learning rate must be a positive number, e.g. {where}.lr=5e-5.")
    wd = node.get("weight_decay", 0.0)
    if isinstance(wd, bool) or not isinstance(wd, numbers.Real) or wd < 0:
        raise SetupError(f"{where}.weight_decay={wd!r} must be a number >= 0 (e.g. 0.01).")
    ratio = node.get("warmup_ratio", 0.0)
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio <= 1:
        raise SetupError(f"{where}.warmup_ratio={ratio!r} must lie in [0, 1] (e.g. 0.1).")


def check_config(cfg: DictConfig) -> None:
    """Raise a SetupError for the first bad value found."""
    _int(cfg, "seed")
    for key in ("data.batch_size", "data.eval_batch_size"):
        _int(cfg, key, low=1)
    _int(cfg, "data.max_length", low=0)        # null or 0: the task's own
    _int(cfg, "data.num_workers", low=0)
    check_budget(cfg)
    check_optim(OmegaConf.select(cfg, "optim", default=None), "optim")
    if str(OmegaConf.select(cfg, "task.name", default="")).startswith("pretrain/"):
        check_optim(OmegaConf.select(cfg, "task.optim", default=None), "task.optim")
    kind = OmegaConf.select(cfg, "logger.name", default="none") if cfg.get("logger") else "none"
    if kind not in LOGGERS:
        raise SetupError(f"logger.name={kind!r} is not a logger bortlab knows. Choose logger=csv (the default), "
                         "logger=wandb or logger=none (the config group, not logger.name).")
    resume = cfg.get("resume")
    if resume not in (None, False, "none", "null", "auto", True, "last") and not Path(str(resume)).exists():
        raise SetupError(f"resume={resume}: no such checkpoint file. Pass the path of a .ckpt (e.g. "
                         "<run dir>/checkpoints/last.ckpt), or resume=auto with hydra.run.dir=<the run dir> to "
                         "continue from its last.ckpt.")
    from bortlab.models.precision import check_precision

    check_precision(OmegaConf.select(cfg, "eval.precision", default="fp32"), "eval.precision")
    check_paths(cfg)


def check_max_length(max_length: int, arch) -> None:
    """Inputs longer than the position table would fail at the first long batch, mid-training."""
    room = arch.max_positions - arch.position_offset
    if max_length > room:
        raise SetupError(f"A max length of {max_length} tokens is more than this architecture's {room} positions "
                         f"({arch}). Pass data.max_length={room} or less.")


def check_task(task) -> None:
    """A task a job can train on: diagnostic sets (AX, AX-b, AX-g) have no training data."""
    if task.predict_with:
        from bortlab.data.tasks import TaskError

        raise TaskError(f"{task.name} is a diagnostic set with no training data: the leaderboard scores it with "
                        f"the {task.predict_with} model. Run task={task.predict_with} (with predict=true); its run "
                        f"writes the {task.name} predictions too.")
