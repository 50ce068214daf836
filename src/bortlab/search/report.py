"""What a search leaves on disk: candidates.csv (also the resume state), optimization_results.yaml and
pareto.png. Every file is written with `bortlab.files.write_atomic` (a temporary name, then moved into place),
so a crash mid-write (or a reader polling the sweep dir) never sees half a file."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from bortlab.files import write_atomic
from bortlab.models.arch import Arch
from bortlab.search.fptas import Candidate, SearchResult, theta_key
from bortlab.search.pareto import best_under_cost, cheapest_under, knee

BASE_COLUMNS = ["cell_saving", "cell_cost", "family", "representative", "status", "depth", "heads", "hidden",
                "intermediate", "head_dim", "p", "i", "e", "W", "theta"]


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def write_candidates_csv(path: str | os.PathLike, table: list[Candidate], thetas: list[Mapping]) -> None:
    """One row per candidate: its cell, whether its family represents the cell, p, i, the error per θ
    (`e[<theta>]`; inf = failed, empty = not evaluated), e = min over θ, W, status, and the full Arch."""
    keys = [theta_key(t) for t in thetas]
    columns = BASE_COLUMNS + [f"e[{k}]" for k in keys] + ["arch"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for c in table:
        writer.writerow([
            c.cell[0], c.cell[1], c.family, int(c.representative), c.status, c.arch.depth, c.arch.heads,
            c.arch.hidden, c.arch.intermediate, "" if c.arch.head_dim is None else c.arch.head_dim,
            int(c.p) if float(c.p).is_integer() else c.p, int(c.i) if float(c.i).is_integer() else c.i,
            _num(c.e), _num(c.W), "" if c.theta is None else theta_key(c.theta),
            *[_num(c.errors.get(k)) for k in keys],
            json.dumps(c.arch.to_dict(), sort_keys=True, separators=(",", ":")),
        ])
    write_atomic(path, buf.getvalue())


def read_done(path: str | os.PathLike) -> dict[tuple[Arch, str], float]:
    """The (arch, theta_key) -> error pairs recorded in a candidates.csv (failed ones included, as inf);
    {} when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return {}
    done = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            arch = Arch.from_dict(json.loads(row["arch"]))
            for col, value in row.items():
                if col.startswith("e[") and col.endswith("]") and value not in ("", None):
                    done[(arch, col[2:-1])] = float(value)
    return done


def results_dict(result: SearchResult, overrides: Callable[[Arch, Mapping], Mapping[str, Any]] | None = None,
                 extra: Mapping[str, Any] | None = None, error_cap: float | None = None,
                 min_speedup: float | None = None) -> dict:
    """The content of optimization_results.yaml. `overrides(arch, theta)` renders a solution as the
    command-line overrides that reproduce it (the sweeper passes one); without it, the Arch fields.
    Beside argmax W: `knee`, the knee of the evaluated candidates' (i, e) front (`pareto.knee`: log i and e
    min-max normalised over the front, the member farthest below the line through its extremes), and, with
    `error_cap`, `cheapest_under_cap`: the evaluated candidate of lowest i with e <= error_cap (null if none);
    with `min_speedup`, `best_at_speedup`: the evaluated candidate of lowest e with i <= i_T / min_speedup
    (at least that many times fewer operations than the maximum point T; null if none)."""
    def params(c: Candidate) -> dict:
        if overrides is not None:
            return dict(overrides(c.arch, c.theta or {}))
        return {**{k: v for k, v in zip(("depth", "heads", "hidden", "intermediate"), c.arch.tuple)}, **(c.theta or {})}

    def row(c: Candidate | None) -> dict | None:
        if c is None:
            return None
        return {"arch": str(c.arch), "params": params(c), "p": c.p, "i": c.i, "e": c.e, "W": c.W}

    best = result.best_row
    evaluated = [c for c in result.table if c.e is not None and math.isfinite(c.e)]
    points = [(c.i, c.e) for c in evaluated]
    k_knee = knee(points)
    k_cap = cheapest_under(points, float(error_cap)) if error_cap is not None else None
    k_fast = best_under_cost(points, result.i_T / float(min_speedup)) if min_speedup is not None else None
    return {
        "name": "fptas",
        "epsilon": result.epsilon,
        "best_params": params(best),
        "best_value": best.W,
        "best": {"arch": str(best.arch), "p": best.p, "i": best.i, "e": best.e, "W": best.W},
        "knee": row(evaluated[k_knee] if k_knee is not None else None),
        "error_cap": None if error_cap is None else float(error_cap),
        "cheapest_under_cap": row(evaluated[k_cap] if k_cap is not None else None),
        "min_speedup": None if min_speedup is None else float(min_speedup),
        "best_at_speedup": row(evaluated[k_fast] if k_fast is not None else None),
        "maximum_point": {"p": result.p_T, "i": result.i_T},
        "counts": {"candidates": len(result.table), "cells": result.n_cells, "evaluations": result.n_evaluations,
                   "launched": result.n_launched, "failed": result.n_failed},
        # shaped like the optuna sweeper's multi-objective output: the non-dominated (p, i, e) solutions
        "solutions": [{"params": params(c), "values": [c.p, c.i, c.e], "W": c.W} for c in result.front],
        **dict(extra or {}),
    }


def write_results_yaml(path: str | os.PathLike, results: Mapping) -> None:
    import yaml

    write_atomic(path, yaml.safe_dump(_plain(results), sort_keys=False, allow_unicode=True))


def _plain(x):
    """Python scalars only (numpy / OmegaConf values would make safe_dump fail)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return x.item() if hasattr(x, "item") else str(x)


def _cell_borders(ax, table, result: SearchResult) -> None:
    """The cells' borders in the p-i plane: the contours S(p, i) = w^k of the saving W multiplies."""
    import numpy as np

    from bortlab.search.cells import _log_width

    ps = np.geomspace(min(c.p for c in table), max(c.p for c in table), 200)
    is_ = np.geomspace(min(c.i for c in table), max(c.i for c in table), 200)
    P, I = np.meshgrid(ps, is_)
    S = np.clip(result.p_T - P, 0, None) * np.clip(result.i_T - I, 0, None) / (result.p_T * result.i_T)
    level = np.log(np.where(S > 0, S, np.nan)) / _log_width(result.epsilon)
    lo, hi = np.nanmin(level), np.nanmax(level)
    if np.isfinite(lo) and hi - lo < 60:     # unless too dense to read
        ax.contour(P, I, level, levels=np.arange(np.floor(lo), np.ceil(hi) + 1), colors="0.85", linewidths=0.6,
                   zorder=0)


def plot_pareto(path: str | os.PathLike, result: SearchResult, title: str = "") -> None:
    """Three panels: the p-i plane with the ε-cells (every candidate, representatives, best), then e against
    p and against i with the non-dominated front."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    table, front, best = result.table, result.front, result.best_row
    ok = [c for c in table if c.W is not None]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    ax.scatter([c.p for c in table], [c.i for c in table], s=10, c="0.75", label="candidate")
    reps = [c for c in table if c.representative]
    ax.scatter([c.p for c in reps], [c.i for c in reps], s=16, c="tab:blue", label="representative (evaluated)")
    _cell_borders(ax, table, result)
    ax.set(xscale="log", yscale="log", xlabel="p (parameters)", ylabel="i (operations)", title=f"ε-cells (ε={result.epsilon:g})")
    for ax, attr, label in ((axes[1], "p", "p (parameters)"), (axes[2], "i", "i (operations)")):
        ax.scatter([getattr(c, attr) for c in ok], [c.e for c in ok], s=12, c="tab:blue", alpha=0.6, label="evaluated")
        ax.scatter([getattr(c, attr) for c in front], [c.e for c in front], s=28, facecolors="none", edgecolors="tab:red", label="(p, i, e) front")
        ax.set(xscale="log", xlabel=label, ylabel="e (error)")
    for ax, x, y in ((axes[0], best.p, best.i), (axes[1], best.p, best.e), (axes[2], best.i, best.e)):
        ax.scatter([x], [y], marker="*", s=160, c="gold", edgecolors="k", zorder=5, label=f"argmax W {best.arch}")
    axes[0].legend(fontsize=7, loc="upper left")
    axes[1].legend(fontsize=7)
    fig.suptitle(title or f"FPTAS: {len(table)} candidates, {result.n_cells} cells, {result.n_evaluations} evaluations")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
