"""The plots of `python -m bortlab.report`: the objective and dev metrics by swept value, against cost, and
the runs' learning curves, each returned as PNG bytes for the self-contained HTML page (matplotlib, Agg,
imported only when a plot is drawn)."""
from __future__ import annotations

import io
import math

from bortlab.report_runs import Run, metric_at, swept_keys

MAX_METRIC_PANELS = 6


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _png(fig, bottom: float = 0.0) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _grid(n: int, width: float = 4.2, height: float = 3.3):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _label(r: Run, swept: list[str]) -> str:
    return r.rel + (": " + ", ".join(f"{k}={r.overrides[k]}" for k in swept if k in r.overrides) if swept else "")


def plot_by_swept_value(runs: list[Run], key: str) -> bytes:
    """The objective and each dev metric against one swept override: numbers on a number line (log when they
    span a decade, as learning rates do), anything else as categories in the order of the runs."""
    names = ["objective", *dict.fromkeys(k for r in runs for k in r.dev)][:MAX_METRIC_PANELS]
    have = [r for r in runs if key in r.overrides]
    xs = [_float(r.overrides[key]) for r in have]
    numeric = all(x is not None for x in xs)
    if not numeric:
        cats = list(dict.fromkeys(r.overrides[key] for r in have))
        xs = [cats.index(r.overrides[key]) for r in have]
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        ys = [_float(r.metrics.get("objective") if name == "objective" else r.dev.get(name)) for r in have]
        pts = sorted((x, y) for x, y in zip(xs, ys) if y is not None)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, alpha=0.7)
        means = {}
        for x, y in pts:                       # the mean over the other swept keys (seeds, ...) at each value
            means.setdefault(x, []).append(y)
        # the mean: a line along a number line, a tick per category (a line between categories means nothing)
        ax.plot(list(means), [sum(v) / len(v) for v in means.values()], "-" if numeric else "_", ms=18, lw=1,
                color="tab:red", alpha=0.6)
        if numeric and xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right", fontsize=7)
        ax.set(xlabel=key, ylabel=name, title=name + (" (lower is better)" if name == "objective" else ""))
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_cost(runs: list[Run]) -> bytes | None:
    """The objective against what the model costs: parameters and operations per 128-token forward pass."""
    costs = [c for c in ("params.net", "ops_per_forward_128") if any(_float(metric_at(r.metrics, c)) for r in runs)]
    if not costs:
        return None
    fig, axes = _grid(len(costs))
    for ax, name in zip(axes, costs):
        pts = [(_float(metric_at(r.metrics, name)), _float(r.metrics.get("objective")), r.rel) for r in runs]
        pts = [p for p in pts if p[0] and p[1] is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, alpha=0.7)
        if len(pts) <= 12:
            for x, y, rel in pts:
                ax.annotate(rel, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", xlabel=name, ylabel="objective", title=f"objective vs {name}")
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_learning_curves(runs: list[Run], swept: list[str]) -> bytes | None:
    """Every run's curves overlaid: train loss, dev loss, and the run's selection metric when it is not a loss."""
    runs = [r for r in runs if r.history]
    if not runs:
        return None
    from matplotlib.lines import Line2D
    selections = list(dict.fromkeys(r.metrics.get("selection_metric") or "val/loss" for r in runs))
    names = ["train/loss", "val/loss", *(s for s in selections if s != "val/loss")][:MAX_METRIC_PANELS]
    fig, axes = _grid(len(names), width=5.0, height=3.6)
    handles = []
    for i, r in enumerate(runs):
        color = f"C{i % 10}"            # one colour per run in every panel, so one legend serves them all
        handles.append(Line2D([], [], color=color, marker="o", ms=3, label=_label(r, swept)))
        for ax, name in zip(axes, names):
            if name == "train/loss":
                pts = [p for p in r.history.get("train", []) if isinstance(p, (list, tuple)) and len(p) == 2]
            else:
                pts = [(p[0], p[1][name]) for p in r.history.get("val", [])
                       if isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[1], dict) and name in p[1]]
            if pts:
                # dots on a short curve: a single point drawn as a line is invisible
                marker = "o" if name != "train/loss" or len(pts) < 20 else None
                ax.plot(*zip(*pts), "-", marker=marker, lw=1.2, ms=3, color=color)
    for ax, name in zip(axes, names):
        ax.set(xlabel="step", ylabel=name, title=name)
        ax.grid(alpha=0.3)
    if len(runs) > 30:                  # a legend taller than the plots: the table says which run is which
        return _png(fig)
    fig.legend(handles=handles, loc="lower left", fontsize=7, frameon=False)
    height = fig.get_figheight()
    fig.set_figheight(height + 0.17 * len(runs) + 0.2)
    return _png(fig, bottom=(0.17 * len(runs) + 0.2) / fig.get_figheight())


def figures(runs: list[Run]) -> list[tuple[str, bytes]]:
    swept = swept_keys(runs)
    out = [(f"objective and dev metrics by {k}", plot_by_swept_value(runs, k)) for k in swept]
    cost = plot_cost(runs)
    if cost:
        out.append(("objective vs cost (parameters, operations per 128-token forward pass)", cost))
    curves = plot_learning_curves(runs, swept)
    if curves:
        out.append(("learning curves (history.json of each run that has one)", curves))
    return out
