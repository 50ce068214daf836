"""A finished fine-tuning run, back in memory: the model with its trained head, the tokenizer, the task and
the run's own config and metrics. Agora's labellers, the exporter and inference all read runs through here.

A run directory (`outputs/<task>/<time>`) holds `.hydra/config.yaml` (how the model was built),
`metrics.json` (the shape actually built: vocabulary, pooler...) and `checkpoints/best.ckpt` (else
`last.ckpt`); a `.ckpt` inside such a directory stands for its run.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from bortlab.config import SetupError

log = logging.getLogger(__name__)


@dataclass
class FineTuned:
    model: torch.nn.Module       # SequenceClassifier or MultipleChoice, in eval mode
    tokenizer: object
    task: object                 # bortlab.data.tasks.Task it was trained on
    cfg: object                  # the run's composed config (DictConfig)
    metrics: dict                # the run's metrics.json ({} when it has none)
    checkpoint: Path
    run_dir: Path

    @property
    def max_length(self) -> int:
        return int(self.cfg.data.get("max_length") or self.cfg.task.get("max_length") or self.task.max_length)


CHOICES = ("best", "last")


def run_checkpoint(path: Path, what: str = "path", checkpoint: str = "best") -> Path:
    """A run directory -> its checkpoints/best.ckpt (else last.ckpt), or with checkpoint="last" its last.ckpt
    (the final weights: no selection on dev); a checkpoint file as it is."""
    if checkpoint not in CHOICES:
        raise SetupError(f"checkpoint={checkpoint!r} for {what}: choose best (the best dev check, else last) or "
                         "last (the final weights, no selection on dev).")
    path = Path(path).expanduser()
    if path.is_dir() and checkpoint == "last" and not (path / "config.json").exists():
        if not (path / "checkpoints" / "last.ckpt").exists():
            raise SetupError(f"{what}={path} with checkpoint=last: the run has no checkpoints/last.ckpt (was it "
                             "trained with callbacks.checkpoint.save_last=false?). Use checkpoint=best, or pass "
                             "a .ckpt file.")
        return path / "checkpoints" / "last.ckpt"
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).exists():
                return path / "checkpoints" / name
        raise SetupError(f"{what}={path}: a directory with neither config.json (a transformers checkpoint) nor "
                         f"checkpoints/best.ckpt or last.ckpt (a bortlab fine-tuning run).")
    if not path.exists():
        raise SetupError(f"{what}={path}: no such run directory or checkpoint file.")
    return path


def load_finetuned(path, what: str = "path", checkpoint: str = "best") -> FineTuned:
    """Rebuild the run's model from its config and shape, and load its checkpoint's weights (weights only)."""
    from omegaconf import OmegaConf

    from bortlab.config import register_resolvers
    from bortlab.data.tasks import get_task
    from bortlab.models.build import build_model, build_tokenizer

    ckpt = run_checkpoint(Path(path), what, checkpoint)
    run_dir = ckpt.parent.parent
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    own = (state.get("hyper_parameters") or {}).get("task")
    if not own:
        raise SetupError(f"{ckpt} records no task in its hyper-parameters; is it a bortlab fine-tuning checkpoint? "
                         "(A pre-training run's export/ directory is already a transformers checkpoint.)")
    task = get_task(own)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.exists():
        raise SetupError(f"{ckpt}: no {cfg_path} to rebuild its model from. Pass a checkpoint inside a run "
                         "directory written by train.py.")
    register_resolvers()
    cfg = OmegaConf.load(cfg_path)
    tokenizer = build_tokenizer(cfg)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if metrics.get("arch"):       # the shape actually built (pooler, vocab...): no pre-trained weights to load
        cfg.arch = OmegaConf.create(metrics["arch"])
        cfg.model.init = "scratch"
    model, _ = build_model(cfg, task, tokenizer)
    weights = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise SetupError(f"{ckpt} does not fit the model rebuilt from {cfg_path}: {str(e)[:300]}") from e
    log.info("loaded %s (fine-tuned on %s)", ckpt, own)
    return FineTuned(model.eval(), tokenizer, task, cfg, metrics, ckpt, run_dir)
