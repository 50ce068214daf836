"""What a sweep's jobs need, checked once before any job is launched.

A sweep that launches 59 jobs to learn, 59 times, that the checkpoint has another shape or that the task has no
data wastes an hour and ends in a wall of tracebacks. `check_jobs(cfg, archs)` builds what every job builds
first (the task, its data, the tokenizer, the model of one candidate) from the first job's config and checks
that every candidate fits the model's weights; it raises one of the user errors (bortlab.errors) whose
message names the problem and the fix.
"""
from __future__ import annotations

import logging
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError
from bortlab.models.arch import Arch

log = logging.getLogger(__name__)


def _source_arch(cfg: DictConfig) -> Arch | None:
    """The shape of the checkpoint the candidates take their weights from (None for scratch)."""
    from bortlab.models.build import build_encoder

    init = str(cfg.model.init)
    if init == "scratch":
        return None
    return build_encoder(cfg, check_shape=False).arch


def check_candidates(cfg: DictConfig, archs: Sequence[Arch]) -> None:
    """Each candidate must be buildable from the job's weights: the same shape as a pretrained checkpoint,
    or no larger than the extraction source in any dimension."""
    from bortlab.models.arch import ArchError
    from bortlab.models.extract import target_arch

    source = _source_arch(cfg)
    if source is None:
        return
    init, name = str(cfg.model.init), cfg.model.get("source") or cfg.model.get("pretrained")
    if init == "pretrained":
        other = [a for a in archs if a.tuple != source.tuple]
        if other:
            raise SetupError(
                f"{len(other)} of {len(archs)} candidates, e.g. {other[0]}, differ from the shape {source} of the "
                f"checkpoint {name!r} that model.init=pretrained loads. To search sub-architectures of it, let them "
                "inherit its weights with model.init=extract (the fptas sweeper's default when you do not set "
                "model.init), or train them from random weights with model.init=scratch.")
    elif init == "extract":
        too_big = []
        for a in archs:
            try:
                target_arch(source, a)
            except ArchError:
                too_big.append(a)
        if too_big:
            raise SetupError(
                f"{len(too_big)} of {len(archs)} candidates, e.g. {too_big[0]}, are larger than the source {source} "
                f"({name!r}) in some dimension, so model.init=extract cannot build them. Narrow the space (a "
                "search=... file or arch.* sweep values no larger than the source), or use model.init=scratch.")


def check_jobs(cfg: DictConfig, archs: Sequence[Arch]) -> None:
    """Raise a user error if the jobs of a sweep over `archs` (their config: `cfg`, composed for the first
    candidate) cannot run. Apps without bortlab's `task`/`model` nodes are not checked."""
    if OmegaConf.select(cfg, "task.name") is None or OmegaConf.select(cfg, "model.init") is None:
        return
    from bortlab.models.build import arch_from_cfg

    arch_from_cfg(cfg)
    if str(cfg.task.name).startswith("pretrain/"):
        check_candidates(cfg, archs)
        return
    from bortlab.data.datamodule import require_rows
    from bortlab.data.tasks import get_task, read_split
    from bortlab.models.build import build_model, build_tokenizer
    from bortlab.checks import check_task

    task = get_task(cfg.task.name)
    check_task(task)
    for split in ("train", *task.dev_splits):
        require_rows(task, split, read_split(task, split, root=cfg.data.root))
    check_candidates(cfg, archs)
    build_model(cfg, task, build_tokenizer(cfg))
    log.info("pre-flight: %s data, tokenizer and weights are in place for all %d candidates", task.name, len(archs))
