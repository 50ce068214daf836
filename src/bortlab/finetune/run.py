"""`task=<benchmark>/<task>`: fine-tune one architecture on one task and return the objective.

The objective is 1 − the task's selection metric on its first dev split (lower is better; with
`objective=rescaled` divided by 1 − the best constant predictor's score, see bortlab.data.baseline), so any Hydra
sweeper (the FPTAS sweeper, Optuna, a grid) can minimise it. The run directory gets `metrics.json` (final
dev metrics, objective, architecture tuple, parameter and operation counts), `history.json` and
`curves.png` (train loss and dev metrics by step), `checkpoints/{best,last}.ckpt` and, with `predict=true`,
the test predictions in the leaderboard format under `submission/`.
"""
from __future__ import annotations

import copy
import logging
import warnings

from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError

log = logging.getLogger(__name__)


def run_finetune(cfg: DictConfig) -> float:
    from bortlab.checks import check_max_length, check_task
    from bortlab.curves import Curves
    from bortlab.data.datamodule import TaskDataModule
    from bortlab.data.subsample import Selection
    from bortlab.data.tasks import get_task
    from bortlab.distributed import is_rank_zero
    from bortlab.models.build import arch_from_cfg, build_model, build_tokenizer
    from bortlab.models.finetune import FineTuneModule
    from bortlab.stage import Stage

    arch_from_cfg(cfg)                      # a bad tuple fails here, before any loading
    task = get_task(cfg.task.name)
    check_task(task)
    kind = _objective_kind(cfg, task)        # raw | rescaled: checked before any training is spent
    selection = Selection.from_cfg(cfg.data)  # data.reserve / use / train_subset: bad combinations fail here
    from bortlab.finetune.distill import attach_teacher, distill_options

    distill = distill_options(cfg)
    with Stage(cfg) as stage:
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
            use_token_types=arch.uses_token_types, passage_fit=cfg.data.passage_fit, selection=selection,
        )
        distilled = attach_teacher(distill, dm, int(cfg.seed)) if distill else None
        module = FineTuneModule(model, task, **OmegaConf.to_container(cfg.optim, resolve=True),
                                soft_temperature=distill["temperature"] if distill else 1.0)
        selection = f"val/{task.metrics[0]}"
        curves = Curves(fit_only=True)     # the final validate reads best.ckpt: not a point of the curve
        trainer = stage.trainer(arch, monitor=selection, mode="max", callbacks=[curves])
        # TaskDataModule carries its place in the epoch in the checkpoint and skips what was trained, so
        # Lightning's warning about a non-resumable loader on a mid-epoch resume does not apply here
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        stage.fit(module, dm)
        best = stage.best_checkpoint
        # final dev metrics from the best checkpoint (selection metric), not from the last step
        trainer.validate(module, datamodule=dm, ckpt_path=best, verbose=False)
        dev = dict(module.last_metrics)
        if selection not in dev:
            raise SetupError(f"No dev score {selection!r} was computed for {task.name}: is the dev split empty, "
                             f"or trainer.limit_val_batches=0? Got {sorted(dev)}.")
        objective, baseline = 1.0 - dev[selection], None
        if kind == "rescaled":     # (1 - score) / (1 - best constant predictor's score on the same dev split)
            from bortlab.data.baseline import baseline_score, rescaled_error

            baseline = baseline_score(task, dm.rows[dm.dev_splits[0]])
            objective = rescaled_error(dev[selection], baseline)
        if not is_rank_zero():        # under DDP, rank 0 alone predicts and writes the run's files
            return float(objective)
        precision = str(OmegaConf.select(cfg, "eval.precision", default="fp32"))
        served, at_precision = module, None
        if precision != "fp32":      # the model as it will be deployed: its dev scores, its test predictions
            from bortlab.models.precision import apply_precision
            from bortlab.predict import evaluate

            served = FineTuneModule(apply_precision(copy.deepcopy(module.model), precision), task)
            at_precision = evaluate(served, dm)
            log.info("%s dev in %s: %s", task.name, precision, ", ".join(f"{k}={v:.4f}" for k, v in at_precision.items()))
        submission = None
        if cfg.get("predict", False):
            from bortlab.predict import predict_test

            submission = predict_test(served, dm, stage.out / "submission")
        curves.save(stage.out / "history.json")
        curves.plot(stage.out / "curves.png", title=f"{task.name} {arch}")
        result = {
            "task": task.name, "objective": objective, "objective_kind": kind, "baseline_score": baseline,
            "selection_metric": selection, "dev": dev, "dev_split": dm.dev_splits[0],
            "arch": arch.to_dict(), "tuple": list(arch.tuple),
            "params": {"net": arch.num_params(), "effective": arch.num_params(non_embedding=True)},
            "ops_per_forward_128": arch.num_ops(128), "init": cfg.model.init,
            "steps": int(trainer.global_step), "train_seconds": stage.seconds,
            "processes": int(trainer.world_size),
            "best_checkpoint": best, "submission": str(submission) if submission else None,
            "eval_precision": precision, "dev_at_precision": at_precision,
            "train_rows": len(dm.rows[dm.train_split]), "distill": distilled,
        }
        stage.finish(result, final={"objective": objective, **dev})
        log.info("%s dev: %s; objective %.4f (metrics.json in %s)", task.name,
                 ", ".join(f"{k}={v:.4f}" for k, v in dev.items()), objective, stage.out)
        return float(objective)


def _objective_kind(cfg: DictConfig, task) -> str:
    from bortlab.data.baseline import OBJECTIVES, BaselineError, check_has_baseline

    kind = str(cfg.get("objective", "raw"))
    if kind not in OBJECTIVES:
        raise SetupError(f"objective={kind!r} is not one of {', '.join(OBJECTIVES)}.")
    if kind == "rescaled":
        try:
            check_has_baseline(task)
        except BaselineError as e:
            raise SetupError(str(e)) from None
    return kind
