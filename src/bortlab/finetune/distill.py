"""Plain distillation for fine-tuning (`distill.teacher=<run dir>`): every training row gets the teacher's
probabilities as a soft target, trained with (1 − alpha)·CE(gold) + alpha·T²·KL(teacher_T ‖ student_T)
(FineTuneModule.soft_loss), and `distill.pool_size` unlabelled rows, drawn from the spare rows that
data.train_subset left out, join the training set with the teacher's soft labels alone (their gold labels are
never read: the row's label is the teacher's argmax and its CE weight is 0).

This is issue 19's arm A4, the baseline that Agora's labelled points must beat: the same labeller, used
directly as a teacher instead of labelling perturbed dev mistakes.
"""
from __future__ import annotations

import logging
import numbers
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError

log = logging.getLogger(__name__)
POOL = "distill_pool"


def distill_options(cfg: DictConfig) -> Optional[dict]:
    """The checked `distill` node, or None when distillation is off (no teacher)."""
    node = OmegaConf.select(cfg, "distill", default=None)
    node = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    pool = node.get("pool_size") or 0
    if not node.get("teacher"):
        if pool:
            raise SetupError(f"distill.pool_size={pool} without distill.teacher: the pool rows are unlabelled and "
                             "only a teacher can give them targets. Set distill.teacher=<a fine-tuned run dir>, or "
                             "distill.pool_size=0.")
        return None
    alpha, temp = node.get("alpha", 0.5), node.get("temperature", 2.0)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise SetupError(f"distill.alpha={alpha!r} must lie in [0, 1]: the share of the KL term (0.5: equal parts "
                         "CE on the gold label and KL to the teacher).")
    if isinstance(temp, bool) or not isinstance(temp, numbers.Real) or not temp > 0:
        raise SetupError(f"distill.temperature={temp!r} must be a positive number (e.g. 2.0).")
    if isinstance(pool, bool) or not isinstance(pool, numbers.Integral) or pool < 0:
        raise SetupError(f"distill.pool_size={pool!r} must be a whole number >= 0.")
    return {"teacher": str(node["teacher"]), "checkpoint": str(node.get("checkpoint") or "last"),
            "labels": node.get("labels"), "alpha": float(alpha), "temperature": float(temp), "pool_size": int(pool)}


def attach_teacher(opts: dict, dm, seed: int) -> dict:
    """Give the datamodule's training rows the teacher's soft targets and add the unlabelled pool. Returns
    what metrics.json records about it (the teacher and its accuracy on the official dev split, the gate of
    issue 19's protocol)."""
    from bortlab.agora.labellers import load_labeller
    from bortlab.agora.rows import set_label
    from bortlab.data.datamodule import SOFT, SOFT_WEIGHT, SPARE

    task = dm.task
    if task.kind == "regression":
        raise SetupError(f"distill.teacher: {task.name} is a regression task; distillation here matches class "
                         "distributions (KL), which a regression output does not have.")
    teacher = load_labeller({"path": opts["teacher"], "checkpoint": opts["checkpoint"], "labels": opts["labels"]},
                            task, what="distill.teacher")
    dm.setup("fit")
    train = dm.train_split
    dm.set_soft_labels(train, teacher.probs(dm.rows[train]).tolist(), opts["alpha"])
    pool = opts["pool_size"]
    if pool:
        if not dm.rows.get(SPARE):
            raise SetupError(f"distill.pool_size={pool} draws unlabelled rows from those data.train_subset left "
                             "out, and this run has none. Set data.train_subset (e.g. with data.reserve and "
                             "data.use=reserve), or distill.pool_size=0.")
        dm.take_spare(POOL, pool, balanced=False, seed=seed)     # uniform: a real unlabelled pool has no labels
        rows = dm.rows[POOL]
        probs = teacher.probs(rows)
        new = []
        for r, p, y in zip(rows, probs.tolist(), probs.argmax(-1).tolist()):
            row = set_label(task, r, int(y))         # the teacher's argmax: the gold label is never read
            row[SOFT], row[SOFT_WEIGHT] = p, 1.0
            new.append(row)
        dm.add_train_rows(new)
    dev = dm.rows[dm.dev_splits[0]]
    acc = teacher.accuracy(task, dev) if dev and all(task.target(r) is not None for r in dev) else None
    log.info("distill: teacher %s (%s), dev accuracy %s; %d training rows with soft targets (alpha %.2f, T %.1f), "
             "%d of them unlabelled pool rows", teacher.name, opts["checkpoint"],
             "n/a" if acc is None else f"{acc:.4f}", len(dm.rows[train]), opts["alpha"], opts["temperature"], pool)
    return {**{k: v for k, v in opts.items() if k != "labels"}, "teacher_name": teacher.name,
            "teacher_dev_accuracy": acc, "train_rows": len(dm.rows[train])}
