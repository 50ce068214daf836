"""Agora on real tasks: official-dev score of the same student, same step budget, with and without Agora.

    python bench/bench_agora.py --task superglue/cb --labeller outputs/labellers/cb/checkpoints/last.ckpt \
        --seeds 0 1 2 --steps 300 -- arch=minilm arch.depth=2 model.init=extract 'model.source=${minilm_path:}'

Arms (all at `trainer.max_steps=--steps`, the same batch size and lr schedule, no checkpoint selection: the
score is the final model's on the official dev split, which no arm ever looks at before that):
  base     the student fine-tuned on the full training set;
  holdout  the same on train minus Agora's hold-out (what Agora's arm trains on before its first round);
  agora    callbacks=agora, agora.dev=holdout: rounds fed by the hold-out's mistakes, labelled by --labeller.
Extra arguments after `--` are Hydra overrides for every run (the student, data, optim, agora.*; agora.*
reach only the arms with callbacks=agora). `--agora-name agora_k2` keeps several Agora settings side by side
in one --out directory, sharing the base and holdout runs. Runs are
in-process, one after another; a run whose metrics.json exists is read back, not retrained, so an
interrupted bench resumes. Prints a mean ± std table per arm and writes it to <out>/results_<agora name>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = {
    "base": ["callbacks.checkpoint.enabled=false"],
    "holdout": ["callbacks=agora", "callbacks.checkpoint.enabled=false", "agora.rounds=0"],
    "agora": ["callbacks=agora", "callbacks.checkpoint.enabled=false"],
}


def compose(overrides):
    from hydra import compose as hydra_compose, initialize_config_dir

    from bortlab.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def one_run(task, arm, seed, steps, labeller, extra, out: Path) -> dict:
    metrics = out / "metrics.json"
    if not metrics.exists():
        from bortlab.run import run

        overrides = [f"task={task}", f"seed={seed}", f"trainer.max_steps={steps}", "trainer.max_epochs=-1",
                     "trainer.check_val_every_n_epoch=100000", "trainer.enable_progress_bar=false",
                     "logger=csv", "predict=false", f"+output_dir={out}",
                     # agora.* options exist only where callbacks=agora put the node
                     *[e for e in extra if arm != "base" or not e.startswith("agora.")],
                     *ARMS[arm]]          # last: the arm's own settings win (holdout: agora.rounds=0)
        if arm != "base" and labeller:
            overrides.append(f"agora.labeller.path={labeller}")
        if arm == "holdout" and not labeller:
            overrides.append("agora.labeller.kind=student")
        t0 = time.time()
        run(compose(overrides))
        print(f"  {task} {arm} seed {seed}: {time.time() - t0:.0f}s", flush=True)
    m = json.loads(metrics.read_text())
    res = {"dev": m["dev"], "steps": m["steps"], "seconds": m["train_seconds"]}
    summary = out / "agora" / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        res.update(train_rows=s["train_rows"], labeller_acc_holdout=s["labeller_acc"],
                   agora_dev_score=s["agora_dev_score"])
    rounds = out / "agora" / "rounds.jsonl"
    if rounds.exists():
        res["rounds"] = [json.loads(line) for line in rounds.read_text().splitlines() if line.strip()]
    return res


def mean_std(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--labeller", default=None, help="labeller run dir / .ckpt / transformers dir (agora.labeller.path)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, required=True, help="trainer.max_steps of every run: the shared budget")
    p.add_argument("--arms", default="base,holdout,agora")
    p.add_argument("--agora-name", default="agora", help="label and directory of the agora arm, to keep several "
                   "Agora settings side by side in one --out (base and holdout runs are shared)")
    p.add_argument("--out", default=None, help="default: outputs/bench_agora/<task> (git-ignored)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (shared machines: 1)")
    args, extra = p.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bortlab.agora").setLevel(logging.INFO)
    out = Path(args.out or REPO / "outputs" / "bench_agora" / args.task.replace("/", "_"))
    arms = [args.agora_name if a == "agora" else a for a in args.arms.split(",")]
    results = {arm: {} for arm in arms}
    for seed in args.seeds:
        for arm in arms:
            kind = "agora" if arm == args.agora_name else arm
            results[arm][seed] = one_run(args.task, kind, seed, args.steps, args.labeller, extra, out / arm / f"seed{seed}")
    metric_names = list(next(iter(results[arms[0]].values()))["dev"])
    table = {"task": args.task, "steps": args.steps, "seeds": args.seeds, "overrides": extra,
             "labeller": args.labeller, "arms": {}}
    lines = [f"{args.task}, {args.steps} steps, seeds {args.seeds}; official dev, mean ± std",
             "| arm | " + " | ".join(m.replace("val/", "") for m in metric_names) + " | train rows at end | s/run |",
             "|---|" + "---|" * (len(metric_names) + 2)]
    for arm in arms:
        runs = results[arm]
        row = {m: mean_std([r["dev"][m] for r in runs.values()]) for m in metric_names}
        rows_end = [r.get("train_rows") for r in runs.values() if r.get("train_rows")]
        secs = statistics.mean(r["seconds"] for r in runs.values())
        table["arms"][arm] = {"mean_std": row, "runs": runs}
        lines.append(f"| {arm} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in row.values()) +
                     f" | {round(statistics.mean(rows_end)) if rows_end else '-'} | {secs:.0f} |")
    if args.agora_name in results:
        labs = [r.get("labeller_acc_holdout") for r in results[args.agora_name].values() if r.get("labeller_acc_holdout") is not None]
        if labs:
            lines.append(f"labeller accuracy on Agora's hold-out: {statistics.mean(labs):.4f}")
    print("\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_{args.agora_name}.json").write_text(json.dumps(table, indent=2, default=str) + "\n")
    (out / f"results_{args.agora_name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
