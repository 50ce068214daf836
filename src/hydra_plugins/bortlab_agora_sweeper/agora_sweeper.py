"""The `agora` Hydra sweeper: Agora's outer loop over hyperparameter sets (bortlab.agora.theta).

    python train.py -m hydra/sweeper=agora callbacks=agora task=superglue/cb arch=tiny \
        optim.lr=1e-4,3e-4 data.batch_size=8,16 agora.labeller.path=<labeller run dir>

Sweep overrides (a,b,c) span Θ; plain overrides go to every job. Each round launches one job per remaining θ
through the configured launcher, with `agora.pool=[...]` (the points gathered so far) and
`agora.final_round=true`, ranks the jobs by their Agora-dev score (`<job dir>/agora/summary.json`), prunes,
and feeds the best job's `agora/final.jsonl` to the next round. `agora_theta.yaml` in the sweep directory is
rewritten after every round: the ranking, what was pruned and the best job, with its official dev score,
which no decision used.

What ranks the jobs (`hydra.sweeper.rank_on`): `agora_dev` (default, the paper's reading) is the final model's
score on Agora's dev set. Agora makes its points next to that set's mistakes, so the score rises with them
(on SST-2, arm A2 of docs/agora.md: 77.1 → 91.3 over three rounds, while its official dev ends at 75.5) and it
favours the θ that fit that neighbourhood best. `run` ranks on the run's own dev score (metrics.json). With
`data.tune_split=N data.tune_skip=<|H|>` that is a development split disjoint from S and H, which Agora never
reads: an honest ranking (the official dev is then not scored; score the chosen θ on it once, at the end). On
the official dev it would select on the test, so the sweeper refuses that.

A rerun with the same sweep dir resumes: a job dir there whose `.hydra/overrides.yaml` holds exactly the
overrides a job would get, with its `agora/summary.json` and `metrics.json` written, is that job, finished,
and is not launched again (jobs finished inside an interrupted batch count too). The overrides include θ, the
fixed settings and the pool the job trained on, so a job made with other settings is never reused; job
numbers continue after the existing job dirs, so nothing is overwritten.
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
    def __init__(self, keep: float = 0.5, max_rounds: Optional[int] = None, rank_on: str = "agora_dev") -> None:
        self.keep, self.max_rounds, self.rank_on = float(keep), max_rounds, str(rank_on)
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

        if self.rank_on not in RANK_ON:
            raise SetupError(f"hydra.sweeper.rank_on={self.rank_on!r} is not one of {', '.join(RANK_ON)}: agora_dev "
                             "ranks on Agora's own dev set, run on the run's dev score (with data.tune_split).")
        fixed, thetas = self._thetas(arguments)
        if self.rank_on == "run" and not any(o.split("=", 1)[0].lstrip("+") == "data.tune_split" for o in fixed):
            raise SetupError("hydra.sweeper.rank_on=run ranks the jobs on their dev score; without data.tune_split "
                             "that is the official dev split, and ranking on it selects on the test. Add "
                             "data.tune_split=<rows> data.tune_skip=<Agora's holdout size> (a development split "
                             "disjoint from Agora's), or rank on Agora's dev set (rank_on=agora_dev).")
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

        done = _finished_jobs(sweep_dir, self.rank_on)
        if done:
            log.info("agora Θ loop: resuming in %s, %d finished jobs there", sweep_dir, len(done))
        # job numbers continue after the existing job dirs, so a resumed sweep never overwrites them
        self.job_idx = 1 + max((int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit()), default=-1)

        def launch(pairs: List[tuple]) -> None:
            """Launch the batch's jobs that are not finished already; record the finished ones in `done`."""
            todo = [(theta, ov) for theta, ov in pairs if json.dumps(ov) not in done]
            if not todo:
                return
            self.validate_batch_is_legal([ov for _, ov in todo])
            returns = self.launcher.launch([ov for _, ov in todo], initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for (theta, ov), ret in zip(todo, returns):
                line = _job_record(ov, ret, self.rank_on)
                if line["status"] != "ok":
                    log.warning("agora Θ loop: job %s failed (%s)", theta, ret._return_value)
                else:
                    done[json.dumps(ov)] = line

        def train_batch(batch: List[List[str]], pool: List[str], r: int) -> List[Job]:
            extra = [f"agora.pool=[{','.join(quote(p) for p in pool)}]", "agora.final_round=true"]
            pairs = [(theta, list(fixed) + theta + extra) for theta in batch]
            launch(pairs)
            jobs = []
            for theta, ov in pairs:
                line = done.get(json.dumps(ov))
                if line is None:
                    jobs.append(Job(theta, r, float("-inf"), status="failed"))
                else:
                    jobs.append(Job(theta, r, float(line["score"]), points=line["points"], reported=line["reported"],
                                    dir=line["dir"]))
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


RANK_ON = ("agora_dev", "run")


def _job_record(overrides: List[str], ret, rank_on: str = "agora_dev") -> dict:
    """A launched job's result: status ok only with its agora/summary.json."""
    out = Path(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else None
    if ret.status != JobStatus.COMPLETED or out is None:
        return {"overrides": overrides, "status": "failed", "dir": str(out)}
    return _read_job(out, overrides, rank_on)


def _read_job(out: Path, overrides: List[str], rank_on: str = "agora_dev") -> dict:
    """score: what ranks the job (rank_on); reported: the run's dev score (the official dev, unless the run
    scored a tune split instead: then None, since no official figure exists)."""
    summary, metrics = out / "agora" / "summary.json", out / "metrics.json"
    if not summary.exists() or (rank_on == "run" and not metrics.exists()):
        return {"overrides": overrides, "status": "failed", "dir": str(out)}
    s = json.loads(summary.read_text())
    m = json.loads(metrics.read_text()) if metrics.exists() else None
    run_score = m["dev"].get(m["selection_metric"]) if m else None
    official = m is not None and m.get("dev_split", "dev") == "dev"
    score = float(s["agora_dev_score"]) if rank_on == "agora_dev" else float(run_score)
    return {"overrides": overrides, "status": "ok", "score": score, "agora_dev_score": float(s["agora_dev_score"]),
            "points": s.get("final_points"), "reported": run_score if official else None, "dir": str(out)}


def _finished_jobs(sweep_dir: Path, rank_on: str = "agora_dev") -> dict:
    """The finished jobs already in a sweep dir, keyed by their overrides (json): what a rerun need not launch."""
    import yaml

    done = {}
    for d in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        ov_file = d / ".hydra" / "overrides.yaml"
        if not (ov_file.exists() and (d / "metrics.json").exists() and (d / "agora" / "summary.json").exists()):
            continue
        overrides = yaml.safe_load(ov_file.read_text()) or []
        done[json.dumps(overrides)] = _read_job(d, overrides, rank_on)
    return done
