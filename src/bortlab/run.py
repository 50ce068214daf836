"""The task function behind `train.py`: check the job config, then hand it to its stage.

    task=pretrain/kd | pretrain/mlm     -> bortlab.pretrain.run.run_pretrain (held-out loss)
    task=<benchmark>/<task>             -> bortlab.finetune.run.run_finetune (1 - dev selection metric)

Both return the number a Hydra sweeper minimises, and both run in the same house (`bortlab.stage.Stage`).
"""
from __future__ import annotations

from omegaconf import DictConfig


def run(cfg: DictConfig) -> float:
    from bortlab.checks import check_config

    check_config(cfg)
    if str(cfg.task.name).startswith("pretrain/"):   # distillation / MLM pre-training stage
        from bortlab.pretrain.run import run_pretrain

        return run_pretrain(cfg)
    from bortlab.finetune.run import run_finetune

    return run_finetune(cfg)
