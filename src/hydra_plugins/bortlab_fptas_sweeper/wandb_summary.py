"""The sweep's W&B summary run: the candidate table, the (p, i, e) front, the best solution, pareto.png.

wandb is imported only when a summary is written (Hydra imports this module while scanning for plugins).
Offline by default (WANDB_MODE=offline unless the user set it): `wandb sync <sweep dir>/wandb/offline-run-*`
uploads it later. The files in the sweep dir are the record; a W&B failure is logged, never fatal."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

COLUMNS = ["depth", "heads", "hidden", "intermediate", "head_dim", "cell_saving", "cell_cost", "representative",
           "status", "p", "i", "e", "W", "theta"]


def _row(c) -> list:
    finite = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731  (W&B rejects inf)
    theta = " ".join(f"{k}={v}" for k, v in sorted((c.theta or {}).items()))
    return [c.arch.depth, c.arch.heads, c.arch.hidden, c.arch.intermediate, c.arch.head_dim, c.cell[0], c.cell[1],
            c.representative, c.status, c.p, c.i, finite(c.e), finite(c.W), theta]


def log_summary(result, results: dict, sweep_dir: Path, project: str, with_plot: bool) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        import wandb

        run = wandb.init(project=project, group=sweep_dir.name, job_type="fptas", name=f"fptas-{sweep_dir.name}",
                         dir=str(sweep_dir), config={"epsilon": result.epsilon, **results.get("counts", {})})
    except Exception as exc:  # noqa: BLE001 - tracking must not lose a finished sweep
        log.warning("FPTAS: no W&B summary run (%s: %s); the results are in %s", type(exc).__name__, exc, sweep_dir)
        return
    try:
        data = {
            "candidates": wandb.Table(columns=COLUMNS, data=[_row(c) for c in result.table]),
            "front": wandb.Table(columns=COLUMNS, data=[_row(c) for c in result.front]),
        }
        if with_plot and (sweep_dir / "pareto.png").exists():
            data["pareto"] = wandb.Image(str(sweep_dir / "pareto.png"))
        run.log(data)
        best = result.best_row
        run.summary.update({"best/arch": str(best.arch), "best/W": best.W, "best/p": best.p, "best/i": best.i,
                            "best/e": best.e, "best/params": results.get("best_params", {})})
    except Exception as exc:  # noqa: BLE001
        log.warning("FPTAS: writing the W&B summary failed (%s: %s)", type(exc).__name__, exc)
    finally:
        run.finish()
