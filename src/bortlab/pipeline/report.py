"""The pipeline's evidence: latency side by side, the per-(model, task, seed) table, CIs and the frontier plot.

Latency: one process, every model loaded in each precision, calls interleaved model by model for `repeats`
rounds (so a burst of load on a shared machine hits all models alike), median per model; `threads` threads.
Scores: each fine-tuning run's dev selection metric (its final model). Means over tasks are per seed, and the
95% CI is the percentile bootstrap over seeds (bortlab.stats). "Kept gain" is (score − constant) / (source −
constant) per task, so a task whose metric a constant predictor already scores well (MRPC's F1: 0.81) cannot
carry the mean.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import statistics
import time
from pathlib import Path

from bortlab.files import write_atomic

log = logging.getLogger("bortlab.pipeline")


def _model_path(spec, finetune, exports) -> Path | None:
    """The first finished fine-tuning run of the model (its export, when there is one)."""
    for s, _, _, job in finetune:
        if s.name == spec.name and job.finished():
            exp = exports.get(job.name)
            return exp.dir if exp is not None and exp.finished() else job.dir
    return None


def machine() -> str:
    """What latency was measured on: the CPU, its bf16/int8 support, the torch build."""
    import torch

    from bortlab.models.cpu import cpu_model
    from bortlab.models.precision import cpu_name

    return f"{cpu_model()} ({cpu_name()}), torch {torch.__version__}"


def measure_latency(cfg, specs, finetune, exports, root: Path) -> dict:
    """{(model, precision, batch, length): median ms}; cached in root/latency.json for the same settings and
    models, otherwise measured again for all of them (ratios come from one run)."""
    import torch

    lat = cfg.latency
    paths = {s.name: _model_path(s, finetune, exports) for s in specs}
    paths = {k: v for k, v in paths.items() if v is not None}
    settings = {"models": {k: str(v) for k, v in sorted(paths.items())}, "precisions": list(lat.precisions),
                "shapes": [list(x) for x in lat.shapes], "threads": int(lat.threads), "repeats": int(lat.repeats),
                "machine": machine()}      # another CPU (the same out/ on another box) is measured again
    cache = root / "latency.json"
    if cache.exists():
        old = json.loads(cache.read_text())
        if old.get("settings") == settings:
            return {tuple(r["key"]): r["ms"] for r in old["rows"]}
    if not paths:
        return {}
    from bortlab.inference import load_classifier

    torch.set_num_threads(int(lat.threads))
    out = {}
    for precision in lat.precisions:
        models = {name: load_classifier(path, precision=precision) for name, path in paths.items()}
        for batch, length in lat.shapes:
            g = torch.Generator().manual_seed(0)
            ids = torch.randint(1000, 20000, (batch, length), generator=g)
            mask, types = torch.ones_like(ids), torch.zeros_like(ids)
            times = {name: [] for name in models}
            for _ in range(3):                       # warm-up: first calls allocate and pick kernels
                for m in models.values():
                    m(ids, attention_mask=mask, token_type_ids=types)
            for _ in range(int(lat.repeats)):
                for name, m in models.items():
                    start = time.perf_counter()
                    m(ids, attention_mask=mask, token_type_ids=types)
                    times[name].append((time.perf_counter() - start) * 1e3)
            for name, t in times.items():
                out[name, precision, batch, length] = statistics.median(t)
                log.info("latency %-22s %s %dx%d: %.2f ms", name, precision, batch, length, out[name, precision, batch, length])
    rows = [{"key": list(k), "ms": v} for k, v in out.items()]
    write_atomic(cache, json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    return out


def score_rows(cfg, specs, finetune, exports, latency) -> list[dict]:
    head_dim = int(cfg.source.head_dim)
    rows = []
    for spec, task, seed, job in finetune:
        if not job.finished():
            continue
        m = json.loads((job.dir / "metrics.json").read_text())
        d, a, h, i = spec.shape
        row = {"model": spec.name, "depth": d, "heads": a, "hidden": h, "intermediate": i, "head_dim": head_dim,
               "task": task, "seed": seed, "score": m["dev"][m["selection_metric"]], "metric": m["selection_metric"],
               "params_effective": m.get("params", {}).get("effective"),
               "exported": job.name in exports and exports[job.name].finished()}
        for (name, precision, b, n), ms in sorted(latency.items()):
            if name == spec.name:
                row[f"latency_{precision}_{b}x{n}_ms"] = round(ms, 3)
        rows.append(row)
    return rows


def _constant_scores(cfg, tasks) -> dict[str, float]:
    from bortlab.data import get_task, read_split
    from bortlab.data.baseline import baseline_score

    out = {}
    for t in tasks:
        task = get_task(t)
        out[t] = baseline_score(task, read_split(task, task.dev_splits[0], root=cfg.data_root))
    return out


def summary(rows: list[dict], constants: dict[str, float]) -> list[dict]:
    """Per model: mean score over tasks with its bootstrap CI over seeds, per-task means, kept gain."""
    from bortlab.stats import bootstrap_mean_ci

    tasks = sorted({r["task"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["model"], r["task"], r["seed"]): r["score"] for r in rows}
    source = {t: statistics.mean(by[m, t, s] for m, tt, s in by if m == "source" and tt == t)
              for t in tasks if any(m == "source" and tt == t for m, tt, _ in by)}
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        complete = [s for s in seeds if all((model, t, s) in by for t in tasks)]
        if not complete:
            continue
        per_seed = [statistics.mean(by[model, t, s] for t in tasks) for s in complete]
        mean, low, high = bootstrap_mean_ci(per_seed)
        item = {"model": model, "seeds": len(complete), "mean": mean, "ci": (low, high),
                "tasks": {t: statistics.mean(by[model, t, s] for s in complete) for t in tasks}}
        # kept gain is defined only where the source beats the constant predictor; elsewhere it is 0/0 or
        # negative/negative, and a task where the source learnt nothing says nothing about what a student keeps
        learnt = [t for t in tasks if t in source and source[t] > constants[t]]
        item["kept_gain"] = {t: (item["tasks"][t] - constants[t]) / (source[t] - constants[t]) for t in learnt}
        item["kept_gain_mean"] = statistics.mean(item["kept_gain"].values()) if learnt else float("nan")
        item["flat_tasks"] = {t: (source[t], constants[t]) for t in tasks if t in source and t not in learnt}
        first = next(r for r in rows if r["model"] == model)
        item["shape"] = (first["depth"], first["heads"], first["hidden"], first["intermediate"])
        item["latency"] = {k: v for k, v in first.items() if k.startswith("latency_")}
        item["exported"] = all(r["exported"] for r in rows if r["model"] == model)
        out.append(item)
    return out


def write_report(cfg, specs, finetune, exports, latency, report_dir: Path) -> Path:
    rows = score_rows(cfg, specs, finetune, exports, latency)
    report_dir.mkdir(parents=True, exist_ok=True)
    if not rows:
        log.warning("report: no finished fine-tuning run yet")
        return report_dir
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(report_dir / "bort_small.csv", buf.getvalue())
    items = summary(rows, _constant_scores(cfg, sorted({r["task"] for r in rows})))
    where = (f"\nLatency: {machine()}, {int(cfg.latency.threads)} threads, median of {int(cfg.latency.repeats)} "
             "interleaved rounds.\n") if latency else ""
    write_atomic(report_dir / "bort_small.md", markdown(items) + where)
    from bortlab.pipeline.frontier import plot_frontier

    plot_frontier(items, report_dir / "bort_small_frontier.png")
    log.info("report: %s, bort_small.md and bort_small_frontier.png in %s", "bort_small.csv", report_dir)
    return report_dir / "bort_small.md"


def markdown(items: list[dict]) -> str:
    tasks = sorted({t for it in items for t in it["tasks"]})
    source = next((it for it in items if it["model"] == "source"), None)
    lat_keys = sorted({k for it in items for k in it["latency"]})
    head = ["model", "⟨D, A, H, I⟩", "exported", "mean score [95% CI]", "of source", *[t.split("/")[-1] for t in tasks],
            "kept gain", *[f"speed-up {k.removeprefix('latency_').removesuffix('_ms')}" for k in lat_keys]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for it in items:
        speed = [f"{source['latency'][k] / it['latency'][k]:.2f}×" if source and k in it["latency"] and k in source["latency"]
                 else "" for k in lat_keys]
        lines.append("| " + " | ".join([
            it["model"], "⟨" + ", ".join(map(str, it["shape"])) + "⟩", "yes" if it["exported"] else "no",
            f"{it['mean']:.4f} [{it['ci'][0]:.4f}, {it['ci'][1]:.4f}] (n={it['seeds']})",
            f"{it['mean'] / source['mean']:.1%}" if source else "",
            *[f"{it['tasks'][t]:.4f}" for t in tasks],
            f"{it['kept_gain_mean']:.1%}" if it["kept_gain_mean"] == it["kept_gain_mean"] else "n/a", *speed]) + " |")
    return "\n".join(lines + [""] + target_lines(items)) + "\n"


def target_lines(items: list[dict], chosen: str = "bortlab", keep: float = 0.95, speedup: float = 4.0) -> list[str]:
    """Issue 20's targets, checked on the table: the chosen model keeps >= `keep` of the source's mean score,
    is >= `speedup` times faster (each measured shape and precision), and no baseline is both faster (there)
    and better on the mean score."""
    by = {it["model"]: it for it in items}
    if chosen not in by or "source" not in by:
        return []
    me, src = by[chosen], by["source"]
    ratio = me["mean"] / src["mean"]
    flat = src.get("flat_tasks") or {}
    verdict = "not judged" if flat and len(flat) == len(src["tasks"]) else ("met" if ratio >= keep else "missed")
    out = [f"- {chosen} keeps {ratio:.1%} of the source's mean score (target ≥ {keep:.0%}): {verdict}"]
    if flat:
        out.append("- the source is not above the constant predictor on " + ", ".join(
            f"{t} ({s:.4f} vs {c:.4f})" for t, (s, c) in flat.items()) + ": it learnt nothing there, so those "
            "scores cannot show what a smaller model keeps (train the source longer, or leave the task out)")
    for k in sorted(set(me["latency"]) & set(src["latency"])):
        shape = k.removeprefix("latency_").removesuffix("_ms")
        x = src["latency"][k] / me["latency"][k]
        beats = [m for m, it in by.items() if m not in (chosen, "source") and k in it["latency"]
                 and it["latency"][k] < me["latency"][k] and it["mean"] > me["mean"]]
        out.append(f"- {shape}: {x:.2f}× faster than the source (target ≥ {speedup:g}×): "
                   f"{'met' if x >= speedup else 'missed'}; baselines both faster and better: "
                   f"{', '.join(beats) if beats else 'none'}")
    return out
