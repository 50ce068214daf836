"""The pipeline's frontier plot: mean dev score against measured CPU latency, one point per model, per precision."""
from __future__ import annotations

import os
from pathlib import Path


def plot_frontier(items: list[dict], path: Path) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for it in items for k in it["latency"]})
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for it in items:
            if key not in it["latency"]:
                continue
            x, (low, high) = it["latency"][key], it["ci"]
            chosen = it["model"] == "bortlab"
            ax.errorbar([x], [it["mean"]], yerr=[[it["mean"] - low], [high - it["mean"]]], fmt="*" if chosen else "o",
                        ms=12 if chosen else 6, color="C3" if chosen else ("k" if it["model"] == "source" else "C0"),
                        capsize=3)
            ax.annotate(it["model"], (x, it["mean"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(key.removeprefix("latency_").replace("_ms", "") + " latency (ms, log)")
        ax.set_ylabel("mean dev score over tasks (95% CI over seeds)")
    fig.suptitle("score vs CPU latency: the searched model (red star), the source (black), baselines")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
