"""The `agora` Hydra sweeper: Agora's outer loop over hyperparameter sets (bortlab.agora.theta).

    python train.py -m hydra/sweeper=agora callbacks=agora task=superglue/cb arch=tiny \
        optim.lr=1e-4,3e-4 data.batch_size=8,16 agora.labeller.path=<labeller run dir>

Sweep overrides (a,b,c) span Θ; plain overrides go to every job. Each round launches one job per remaining θ
through the configured launcher, with `agora.pool=[...]` (the points gathered so far) and
`agora.final_round=true`, ranks the jobs by their Agora-dev score (`<job dir>/agora/summary.json`), prunes,
and feeds the best job's `agora/final.jsonl` to the next round. `agora_theta.yaml` in the sweep directory is
rewritten after every round: the ranking, what was pruned and the best job, with its official dev score,
which no decision used.
"""
from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class AgoraSweeper(Sweeper):
    def __init__(self, keep: float = 0.5, max_rounds: Optional[int] = None) -> None:
        self.keep, self.max_rounds = float(keep), max_rounds
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def _thetas(self, arguments: List[str]):
        parsed = OverridesParser.create(config_loader=self.hydra_context.config_loader).parse_overrides(arguments)
        fixed, axes = [], []
        for o in parsed:
            if o.is_sweep_override():
                if not o.is_discrete_sweep():
                    from bortlab.config import SetupError

                    raise SetupError(f"hydra/sweeper=agora enumerates Θ from discrete values; {o.input_line!r} is "
                                     f"not one. Use a,b,c or range(start,stop,step).")
                axes.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
            else:
                fixed.append(o.input_line)
        return fixed, [list(c) for c in itertools.product(*axes)] if axes else [[]]

    def sweep(self, arguments: List[str]):
        """The Θ loop; bad input ends it with one paragraph and exit code 2 instead of a traceback."""
        import sys

        from bortlab.errors import USER_ERRORS

        try:
            return self._sweep(arguments)
        except USER_ERRORS as e:
            log.error("agora: %s: %s", type(e).__name__, e)
            sys.exit(2)

    def _sweep(self, arguments: List[str]):
        from bortlab.agora.theta import Job, theta_loop
        from bortlab.config import SetupError

        fixed, thetas = self._thetas(arguments)
        if not any(o.lstrip("+").startswith("predict=") for o in fixed):
            fixed.append("++predict=false")     # Θ jobs are ranked on dev; predicting test took most of a job
        if OmegaConf.select(self.config, "agora", default=None) is None:
            raise SetupError("hydra/sweeper=agora runs Agora's Θ loop: add callbacks=agora (and its labeller, "
                             "agora.labeller.path=...) to the command line.")
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("agora Θ loop: %d hyperparameter sets, keep %.2f per round, in %s", len(thetas), self.keep, sweep_dir)

        def quote(p: str) -> str:
            return "'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'"

        def train_batch(batch: List[List[str]], pool: List[str], r: int) -> List[Job]:
            extra = [f"agora.pool=[{','.join(quote(p) for p in pool)}]", "agora.final_round=true"]
            overrides = [list(fixed) + theta + extra for theta in batch]
            self.validate_batch_is_legal(overrides)
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            jobs = []
            for theta, ret in zip(batch, returns):
                out = Path(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else None
                summary = out / "agora" / "summary.json" if out else None
                if ret.status != JobStatus.COMPLETED or summary is None or not summary.exists():
                    log.warning("agora Θ loop: job %s failed (%s)", theta, ret._return_value)
                    jobs.append(Job(theta, r, float("-inf"), dir=str(out), status="failed"))
                    continue
                s = json.loads(summary.read_text())
                metrics = out / "metrics.json"
                reported = None
                if metrics.exists():
                    m = json.loads(metrics.read_text())
                    reported = m["dev"].get(m["selection_metric"])
                jobs.append(Job(theta, r, float(s["agora_dev_score"]), points=s.get("final_points"),
                                reported=reported, dir=str(out)))
            return jobs

        def write(res) -> None:
            (sweep_dir / "agora_theta.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(res.to_dict())))
            best = res.best
            if best:
                log.info("agora Θ loop, round %d: best so far %s (Agora-dev %.4f, official dev %s)",
                         res.rounds[-1]["round"], best.theta, best.score, best.reported)

        result = theta_loop(thetas, train_batch, keep=self.keep, max_rounds=self.max_rounds, on_round=write)
        write(result)
        return result
