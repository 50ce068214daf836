"""Start the other DDP processes of a one-machine run, the same way for a single run, a multirun job, a
sweeper's candidate and a submitit job.

Lightning starts them itself by re-running `sys.argv`; under a Hydra multirun that is the whole sweep again
(`-m` and every sweep value), and in a submitit or sweeper job `sys.argv` is not the job's command at all. So
bortlab starts ranks 1..N-1 itself, as single runs of the entry script with this job's own overrides in this
job's directory, and sets the environment Lightning reads (LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT): Lightning
then sees processes "created externally" and only joins them. Clusters that start every rank themselves
(SLURM with `tasks_per_node = devices`, torchrun) already set those variables, and nothing is started here.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

ENTRY: str | None = None    # the script the workers run (train.py sets it); None = sys.argv[0]
_STARTED_BY_US = "BORTLAB_DDP_WORKER"
_CLUSTER_VARS = ("SLURM_NTASKS", "TORCHELASTIC_RUN_ID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def rank() -> int:
    """This process's global rank, from the environment (0 before any process group exists)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def is_rank_zero() -> bool:
    return rank() == 0


def processes_to_start(trainer_kw: dict) -> int:
    """How many processes a DDP run on this one machine needs, when bortlab has to start them; 0 otherwise."""
    strategy = str(trainer_kw.get("strategy", "auto"))
    if strategy == "auto":      # several devices under "auto" is Lightning's ddp
        strategy = "ddp"
    if not strategy.startswith("ddp") or "spawn" in strategy or "fork" in strategy or "notebook" in strategy:
        return 0
    if "LOCAL_RANK" in os.environ or any(v in os.environ for v in _CLUSTER_VARS):
        return 0                                     # a launcher (or we) started the ranks already
    if int(trainer_kw.get("num_nodes", 1) or 1) != 1:
        return 0
    devices = trainer_kw.get("devices", 1)
    if isinstance(devices, (list, tuple)):
        return len(devices) if len(devices) > 1 else 0
    try:
        n = int(devices)
    except (TypeError, ValueError):
        return 0                                     # "auto": Lightning decides and launches
    return n if n > 1 else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workers:
    """Ranks 1..N-1 of this run. Use as a context manager around the training: on exit it waits for them
    (they end when rank 0 does), and a worker that dies early takes the run down instead of leaving rank 0
    waiting in a collective forever."""

    def __init__(self, n: int, out_dir: Path):
        self.n, self.out_dir, self.procs = n, Path(out_dir), []
        self._done = threading.Event()

    def __enter__(self) -> "Workers":
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            raise RuntimeError("bortlab starts DDP workers from a Hydra job (python train.py trainer=ddp ...)")
        hc = HydraConfig.get()
        entry = ENTRY or os.path.abspath(sys.argv[0])
        overrides = list(hc.overrides.task)
        self._saved = {v: os.environ.get(v) for v in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK")}
        port = os.environ.get("MASTER_PORT") or str(_free_port())
        os.environ.update(MASTER_ADDR=os.environ.get("MASTER_ADDR", "127.0.0.1"), MASTER_PORT=port,
                          WORLD_SIZE=str(self.n), NODE_RANK="0", LOCAL_RANK="0")
        log.info("DDP: starting %d more process(es) on this machine (ranks 1..%d, port %s)", self.n - 1, self.n - 1, port)
        for r in range(1, self.n):
            env = {**os.environ, "LOCAL_RANK": str(r), _STARTED_BY_US: "1"}
            # a worker logs to its own file (ddp_rank_<r>.log) only: the console shows rank 0
            cmd = [sys.executable, entry, *overrides, f"hydra.run.dir={self.out_dir}", "hydra.output_subdir=null",
                   "hydra.job_logging.root.handlers=[file]",
                   f"hydra.job.name=ddp_rank_{r}"]
            self.procs.append(subprocess.Popen(cmd, env=env, cwd=hc.runtime.cwd))
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(2.0):
            for r, p in enumerate(self.procs, start=1):
                code = p.poll()
                if code not in (None, 0):
                    log.error("DDP: rank %d exited with code %s; stopping the run (its own output above says why)",
                              r, code)
                    self._kill()
                    os.kill(os.getpid(), signal.SIGKILL)      # rank 0 may be stuck in a collective

    def _kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._done.set()
            self._kill()
        else:
            deadline = time.time() + 600
            while any(p.poll() is None for p in self.procs) and time.time() < deadline:
                time.sleep(0.2)
            self._done.set()
            self._kill()
            bad = [(r, p.returncode) for r, p in enumerate(self.procs, start=1) if p.returncode not in (0, None)]
            if bad:
                raise RuntimeError(f"DDP worker(s) failed: {bad} (rank, exit code)")
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():   # the next job of a multirun starts a group anew
            dist.destroy_process_group()
        for var, value in self._saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
