"""The `fptas` Hydra sweeper: a thin layer that turns the Hydra config into a candidate list, launches
(candidate, θ) jobs through the configured launcher and hands their errors to `bortlab.search.search`.

    python train.py -m hydra/sweeper=fptas search=minilm task=glue/rte hydra.sweeper.epsilon=0.2

Each job gets the command line's plain overrides, then the candidate's `arch.*` overrides, its θ
overrides and `++<steps_key>=<steps>` (and, with `replicates`, one job per replicate: e is their mean); it
must return its error as a float (lower is better). Files in the sweep dir: candidates.csv (after every batch;
also what a re-run resumes from), replicates.csv (one row per replicate job), optimization_results.yaml,
pareto.png, and a W&B summary run.
"""
from __future__ import annotations

import logging
import math
import numbers
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.bortlab_fptas_sweeper.command_line import CommandLineSpace, to_plain, render

log = logging.getLogger(__name__)


class FPTASSweeper(CommandLineSpace, Sweeper):
    def __init__(self, epsilon: float, steps: Optional[int], steps_key: str, thetas: List[Any],
                 max_batch_size: Optional[int], max_failure_rate: float, space: Any, space_key: str,
                 arch_key: str, source: Any, representative: str, fold: List[str], cost: Any,
                 params: Dict[str, str], plot: bool, wandb: bool, wandb_project: str,
                 job_defaults: Optional[Dict[str, Any]] = None, init_key: Optional[str] = None,
                 preflight: Optional[str] = None, refine: float = 1.0, budget: Optional[int] = None,
                 error_cap: Optional[float] = None, error_ceiling: Optional[float] = None,
                 replicates: Optional[Dict[str, List[Any]]] = None, min_speedup: Optional[float] = None) -> None:
        self.epsilon, self.steps, self.steps_key = epsilon, steps, steps_key
        self.refine, self.budget = refine, budget
        self.error_cap = None if error_cap is None else float(error_cap)
        self.min_speedup = None if min_speedup is None else float(min_speedup)
        self.error_ceiling = None if error_ceiling is None else float(error_ceiling)
        self.replicates = dict(to_plain(replicates) or {})
        self.thetas = [dict(to_plain(t)) for t in (to_plain(thetas) or [])]
        self.max_batch_size, self.max_failure_rate = max_batch_size, max_failure_rate
        self.space_cfg, self.space_key, self.arch_key = to_plain(space), space_key, arch_key
        self.source, self.representative, self.fold = to_plain(source), representative, list(fold)
        self.cost_cfg, self.params = dict(to_plain(cost) or {}), dict(to_plain(params) or {})
        self.plot, self.use_wandb, self.wandb_project = plot, wandb, wandb_project
        self.job_defaults, self.init_key, self.preflight = dict(to_plain(job_defaults) or {}), init_key, preflight
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    # ---- the sweep ------------------------------------------------------------------------------------
    def sweep(self, arguments: List[str]) -> Any:
        """The search; bad input (a space, ε, weights or data that cannot work) ends it with one paragraph and
        exit code 2, before any job is launched where it can be known then."""
        import sys

        from bortlab.errors import USER_ERRORS
        from bortlab.search import SearchError

        try:
            return self._sweep(arguments)
        except (SearchError, *USER_ERRORS) as e:
            log.error("FPTAS: %s: %s", type(e).__name__, e)
            sys.exit(2)

    def _defaults(self, fixed: Dict[str, str]) -> List[str]:
        """Overrides every job gets unless the command line set the key (job_defaults, model.init=extract)."""
        out = [f"++{k}={render(v)}" for k, v in self.job_defaults.items() if k not in fixed]
        if self.init_key and self.init_key not in fixed and OmegaConf.select(self.config, self.init_key) == "pretrained":
            source = OmegaConf.select(self.config, "model.pretrained", default=None)
            log.info("FPTAS: candidates inherit the weights of %s (%s=extract); pass %s=scratch to train them "
                     "from random weights", source, self.init_key, self.init_key)
            out.append(f"{self.init_key}=extract")
        return out

    def _check_settings(self, sweep_dir: Path, settings: dict, done: dict) -> None:
        """A sweep dir's evaluations were made with certain job settings; a re-run with others must not reuse
        them as if they were its own."""
        import json

        from bortlab.files import write_atomic

        path = sweep_dir / "sweep_settings.json"
        if path.exists():
            old = json.loads(path.read_text())
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            if changed and done:
                from bortlab.search import SearchError

                def differ(k):
                    then, now = old.get(k), settings.get(k)
                    if isinstance(then, list) and isinstance(now, list):
                        gone, new = [o for o in then if o not in now], [o for o in now if o not in then]
                        return f"{k}: " + ", ".join([f"then {' '.join(gone)}"] * bool(gone) + [f"now {' '.join(new)}"] * bool(new))
                    return f"{k}: {then!r} then, {now!r} now"

                diff = "; ".join(differ(k) for k in changed)
                raise SearchError(
                    f"The sweep dir {sweep_dir} holds {len(done)} evaluations made with other settings ({diff}). "
                    "Its errors cannot be compared with this run's. Give this sweep its own directory "
                    "(hydra.sweep.dir=<new dir>), or re-run with the settings above to resume the old one.")
        elif done:
            log.warning("FPTAS: %s has evaluations but no sweep_settings.json (an older bortlab); resuming "
                        "from them as made with this run's settings", sweep_dir)
        write_atomic(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    def _sweep(self, arguments: List[str]) -> Any:
        from bortlab.search import CostModel, search
        from bortlab.search.report import read_done, write_candidates_csv

        from bortlab.search.fptas import check_epsilon
        from bortlab.search.replicates import ReplicateLog, expand

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        check_epsilon(self.epsilon)
        if self.min_speedup is not None and not self.min_speedup > 0:
            from bortlab.search import SearchError

            raise SearchError(f"hydra.sweeper.min_speedup={self.min_speedup} must be a positive factor (e.g. 4: "
                              "report the best candidate with at least 4x fewer operations than the source), or null.")
        fixed, grid, arch_choices, theta_dims = self._parse(arguments)
        archs, space = self._candidates(fixed, grid, arch_choices)
        thetas = self._thetas(theta_dims)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        csv_path = sweep_dir / "candidates.csv"
        done = read_done(csv_path)
        defaults = self._defaults(fixed)
        # what an evaluation depends on besides (arch, θ): θ are columns of candidates.csv of their own
        reps = expand(self.replicates)
        self._check_settings(sweep_dir, {"overrides": sorted(fixed.values()) + defaults, "steps": self.steps,
                                         "steps_key": self.steps_key, "replicates": self.replicates}, done)
        if done:
            log.info("FPTAS: resuming from %s (%d evaluations on record)", csv_path, len(done))
        # job numbers continue after the existing job dirs, so a resumed sweep never overwrites them
        self.job_idx = 1 + max((int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit()), default=-1)

        def candidate_overrides(arch, theta) -> List[str]:
            out = list(defaults)
            out += [f"{self.arch_key}={archs[arch]}"] if archs[arch] is not None else []
            out += [f"{k}={render(v)}" for k, v in space.overrides(arch, prefix=self.arch_key + ".").items()]
            out += [f"{k}={render(v)}" for k, v in theta.items()]
            if self.steps is not None:
                key = self.steps_key if self.steps_key.startswith("+") else "++" + self.steps_key
                out.append(f"{key}={self.steps}")
            return out

        # a plain override of a key the sweeper sets per job would clash with it: the sweeper's value wins
        def replicate_overrides(rep) -> List[str]:
            return [f"{k}={render(v)}" for k, v in rep.items()]

        owned = {o.split("=", 1)[0].lstrip("+~") for t in thetas for o in candidate_overrides(next(iter(archs)), t)}
        owned |= set(self.replicates)
        fixed_list = [v for k, v in fixed.items() if k.lstrip("+~") not in owned]
        first = next(iter(archs))
        job_cfg = self.hydra_context.config_loader.load_sweep_config(
            self.config, fixed_list + candidate_overrides(first, thetas[0]) + replicate_overrides(reps[0]))
        if self.preflight:   # everything that would fail in every job, found once before any is launched
            from hydra.utils import get_method

            get_method(self.preflight)(job_cfg, list(archs))
        self._warn_mixed_objectives(job_cfg)
        replicate_log = ReplicateLog(sweep_dir / "replicates.csv") if self.replicates else None

        def evaluate(pairs):
            batch = [fixed_list + candidate_overrides(arch, theta) + replicate_overrides(rep)
                     for arch, theta in pairs for rep in reps]
            # compose one job's config before launching: a bad override fails here, not in every job. One, not
            # all: composing costs as much as launching a job does on a small machine
            self.validate_batch_is_legal(batch[:1])
            returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            errors = [self._error_of(r, self.job_idx + k, batch[k]) for k, r in enumerate(returns)]
            if replicate_log is not None:
                errors = replicate_log.pool_batch(pairs, reps, errors, first_job=self.job_idx)
            self.job_idx += len(batch)
            return errors

        cost_cfg = dict(self.cost_cfg)
        if cost_cfg.get("effective") is None:   # extraction: embeddings are inherited, not what a candidate saves
            cost_cfg["effective"] = OmegaConf.select(job_cfg, self.init_key or "model.init", default=None) == "extract"
            log.info("FPTAS: p = %s parameters (cost.effective=%s)", "non-embedding" if cost_cfg["effective"] else "all",
                     cost_cfg["effective"])
        cost = CostModel(**cost_cfg)
        ceiling = self._ceiling(job_cfg)
        result = search(
            list(archs), evaluate, self.epsilon, thetas, cost.params, cost.ops,
            source=self._source_arch(space), fold=self.fold, representative=self.representative,
            max_batch_size=self.max_batch_size, max_failure_rate=self.max_failure_rate, done=done,
            refine=self.refine, budget=self.budget, error_ceiling=ceiling,
            on_batch=lambda table: write_candidates_csv(csv_path, table, thetas),
        )
        write_candidates_csv(csv_path, result.table, thetas)
        self._write_outputs(result, sweep_dir, candidate_overrides, cost, replicate_log, ceiling)
        return result

    def _ceiling(self, job_cfg) -> Optional[float]:
        """hydra.sweeper.error_ceiling, or 1 when the jobs return rescaled errors (1 = the constant predictor)."""
        if self.error_ceiling is not None:
            return self.error_ceiling if math.isfinite(self.error_ceiling) else None
        return 1.0 if OmegaConf.select(job_cfg, "objective", default=None) == "rescaled" else None

    def _warn_mixed_objectives(self, job_cfg) -> None:
        if any(k.lstrip("+~") in ("task", "task.name") for k in self.replicates) and \
                OmegaConf.select(job_cfg, "objective", default=None) != "rescaled":
            log.warning("FPTAS: replicates over tasks average their raw errors (1 - accuracy, 1 - F1, 1 - MCC ...), "
                        "which are not on one scale; objective=rescaled puts every task's constant predictor at 1")

    @staticmethod
    def _error_of(ret, job_num: int, overrides: Sequence[str]) -> float:
        """A JobReturn as an error: inf when the job failed; a clear error when it returned no number."""
        from bortlab.search import SearchError

        if ret.status != JobStatus.COMPLETED:
            log.warning("FPTAS: job #%d failed (%s): %r; recorded as a failed evaluation", job_num,
                        " ".join(overrides), ret._return_value)
            return math.inf
        value = ret.return_value
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SearchError(
                f"Job #{job_num} ({' '.join(overrides)}; its dir: {ret.working_dir}) returned {value!r} "
                f"({type(value).__name__}) instead of a number. The task function must return its error "
                "(lower is better, e.g. 1 - dev accuracy) as a float for the fptas sweeper to rank candidates.")
        return float(value)

    def _write_outputs(self, result, sweep_dir: Path, candidate_overrides, cost, replicate_log=None,
                       ceiling: Optional[float] = None) -> None:
        from bortlab.search.report import plot_pareto, results_dict, write_results_yaml

        def overrides(arch, theta):  # what reproduces a solution on top of the sweep's own command line
            plain = (o.split("=", 1) for o in candidate_overrides(arch, theta))
            return {k: v for k, v in plain if k.lstrip("+") not in self.job_defaults}   # not predict=false

        extra = {"cost_model": cost.describe(), "error_ceiling": ceiling}
        if replicate_log is not None:
            from bortlab.search import theta_key

            extra["replicates"] = {"over": self.replicates, "best_error_se": replicate_log.se(
                str(result.best), theta_key(result.best_theta))}
        results = results_dict(result, overrides, extra=extra, error_cap=self.error_cap,
                               min_speedup=self.min_speedup)
        write_results_yaml(sweep_dir / "optimization_results.yaml", results)
        log.info("FPTAS: best %s W=%.4g (p=%.4g, i=%.4g, e=%.4g) after %d evaluations (%d launched now) in %d cells; "
                 "results in %s", result.best, result.best_W, result.best_row.p, result.best_row.i,
                 result.best_error, result.n_evaluations, result.n_launched, result.n_cells, sweep_dir)
        if self.plot:
            plot_pareto(sweep_dir / "pareto.png", result)
        if self.use_wandb:
            from hydra_plugins.bortlab_fptas_sweeper.wandb_summary import log_summary

            log_summary(result, results, sweep_dir, self.wandb_project, self.plot)
