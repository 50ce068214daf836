"""The pipeline's unit of work: one `train.py` (or other command) run in its own directory, resumable.

A job's directory is named by what it is (model, task, seed) plus a hash of its command, so a rerun with the
same settings finds the finished run (its `metrics.json` beside a `pipeline_job.json` holding the same command)
and skips it, and a rerun with other settings gets a directory of its own instead of reusing a result made
with different ones. Jobs run in subprocesses (each an ordinary run dir a user can open, resume or rerun by
hand from `pipeline_job.json`), `jobs` at a time with `threads` threads each.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bortlab.files import write_atomic

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]


# arguments that change how a job runs, not what it computes: a rerun with other parallelism reuses the results
NOT_KEYS = ("hydra.launcher.n_jobs=", "hydra.sweeper.max_batch_size=", "trainer.enable_progress_bar=",
            "++trainer.enable_progress_bar=")


def result_key(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith(NOT_KEYS)]


@dataclass
class Job:
    name: str                      # e.g. finetune/bortlab/glue-sst2/seed0: where it goes under the pipeline dir
    argv: list[str]                # the command after the Python executable
    done_file: str = "metrics.json"  # what a finished job leaves in its directory
    dir_arg: str | None = "hydra.run.dir"   # how the command is told its directory (None: appended as a path)
    root: Path = field(default=Path("."))

    @property
    def digest(self) -> str:
        return hashlib.sha1(json.dumps(result_key(self.argv)).encode()).hexdigest()[:8]

    @property
    def dir(self) -> Path:
        return self.root / f"{self.name}-{self.digest}"

    def command(self) -> list[str]:
        where = [f"{self.dir_arg}={self.dir}"] if self.dir_arg else [str(self.dir)]
        return [sys.executable, *self.argv, *where]

    def finished(self) -> bool:
        record = self.dir / "pipeline_job.json"
        return (self.dir / self.done_file).exists() and record.exists() and \
            result_key(json.loads(record.read_text()).get("argv") or []) == result_key(self.argv)


class JobFailed(RuntimeError):
    pass


def thread_env(threads: int) -> dict:
    """The environment of a child run with `threads` threads (OpenMP and MKL), Hydra's short error form."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HYDRA_FULL_ERROR": "0"}


def last_words(text: str, n: int = 1) -> str:
    """The last `n` non-blank lines of a run's output: where bortlab's one-paragraph error is."""
    lines = [x for x in text.splitlines() if x.strip()]
    return "\n".join(lines[-n:]) if lines else "no output"


def run_train(overrides: list[str], run_dir: Path, threads: int = 1) -> tuple[dict, float]:
    """`python train.py *overrides` into `run_dir` in a subprocess with `threads` threads, the way a user runs
    it; returns (its metrics.json, wall seconds). A failure raises JobFailed with the command and the end of
    its output (bortlab logs its error to stdout, so stderr alone may hold only warnings)."""
    cmd = [sys.executable, str(REPO / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=thread_env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    seconds = time.perf_counter() - start
    metrics = Path(run_dir) / "metrics.json"
    if proc.returncode != 0 or not metrics.exists():
        raise JobFailed(f"{' '.join(cmd)}\nexit {proc.returncode}:\n{last_words(proc.stdout, 8)}")
    return json.loads(metrics.read_text()), seconds


def run_jobs(jobs: list[Job], n_parallel: int = 1, threads: int = 1, what: str = "jobs") -> list[Job]:
    """Run the unfinished `jobs`, `n_parallel` at a time; return them all. Raises JobFailed naming every job
    that failed (after the others have finished: one bad job does not waste the rest of a stage)."""
    todo = [j for j in jobs if not j.finished()]
    if len(todo) < len(jobs):
        log.info("%s: %d of %d already done", what, len(jobs) - len(todo), len(jobs))
    if not todo:
        return jobs
    env = thread_env(threads)
    failed: list[str] = []
    start = time.perf_counter()

    def one(job: Job) -> Job:
        job.dir.mkdir(parents=True, exist_ok=True)
        with open(job.dir / "pipeline.log", "w") as out:
            proc = subprocess.run(job.command(), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0 or not (job.dir / job.done_file).exists():
            words = last_words((job.dir / "pipeline.log").read_text(errors="replace"))
            raise JobFailed(f"{job.name}: exit {proc.returncode}: {words} (log: {job.dir / 'pipeline.log'})")
        write_atomic(job.dir / "pipeline_job.json", json.dumps({"argv": job.argv}, indent=1) + "\n")
        return job

    with cf.ThreadPoolExecutor(max(1, n_parallel)) as pool:
        futures = {pool.submit(one, j): j for j in todo}
        for n, fut in enumerate(cf.as_completed(futures), 1):
            try:
                fut.result()
                log.info("%s: [%d/%d] %s done (%.0f s so far)", what, n, len(todo), futures[fut].name,
                         time.perf_counter() - start)
            except JobFailed as e:
                failed.append(str(e))
                log.error("%s: [%d/%d] %s", what, n, len(todo), e)
    if failed:
        raise JobFailed(f"{len(failed)} of {len(todo)} {what} failed; rerun the pipeline to retry them after "
                        "fixing the cause (finished ones are kept):\n  " + "\n  ".join(failed))
    return jobs
