"""Predict the unlabelled test splits and write them in the leaderboard's submission format.

Diagnostic tasks (GLUE AX, SuperGLUE AX-b/AX-g) have no training data: the leaderboard scores them with the
predictions of another task's model (`Task.predict_with`), so a run on that task predicts them too.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from bortlab.data.io import DataError
from bortlab.data.scoring import predictions
from bortlab.data.tasks import all_tasks

log = logging.getLogger(__name__)


def _predict_split(module, dm, split: str) -> torch.Tensor:
    """Logits for every row of `split`, in row order. A plain loop, not trainer.predict: Lightning rebuilds
    custom batch samplers for prediction and cannot rebuild the length-grouped one."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    index, logits = [], []
    with torch.inference_mode():
        for batch in dm.eval_loader(split):
            batch = {k: v.to(device) for k, v in batch.items()}
            index.append(batch["index"].cpu())
            logits.append(module(batch).float().cpu())
    module.train(was_training)
    order = torch.cat(index).argsort()
    return torch.cat(logits)[order]


def evaluate(module, dm) -> dict[str, float]:
    """Dev metrics of `module` over every dev split of `dm`, named as the training loop logs them."""
    from bortlab.data.scoring import score

    out = {}
    for k, split in enumerate(dm.dev_splits):
        dm.load_split(split)
        for name, value in score(dm.task, _predict_split(module, dm, split), dm.rows[split]).items():
            out[f"val/{name}" if k == 0 else f"val_{split}/{name}"] = float(value)
    return out


def predict_test(module, dm, out_dir: Path) -> Path | None:
    from bortlab.data.submission import write_submission

    written = []
    jobs = [(dm.task, dm)]
    for other in all_tasks().values():
        if other.predict_with == dm.task.name:
            jobs.append((other, dm.for_task(other)))
    for task, tdm in jobs:
        for split in task.test_splits:
            try:
                tdm.load_split(split)
            except DataError as e:
                log.warning("no %s/%s predictions: %s", task.name, split, str(e).split(". To fix")[0])
                continue
            logits = _predict_split(module, tdm, split)
            path = write_submission(task, split, tdm.rows[split], predictions(task, logits), out_dir)
            log.info("wrote %s (%d predictions)", path, len(logits))
            written.append(path)
    return Path(out_dir) if written else None

