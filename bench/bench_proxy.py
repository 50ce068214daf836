"""Does the FPTAS's error proxy predict downstream quality? MiniLM sub-architectures, proxy vs fine-tuned scores.

    python -m bortlab.pretrain.make_corpus --data ../shared/data --out corpus.txt
    python bench/bench_proxy.py --corpus corpus.txt --out bench/results/proxy.jsonl          # runs, resumable
    python bench/bench_proxy.py --corpus corpus.txt --out bench/results/proxy.jsonl --report # table + figures

Every job is a plain `train.py` run in a subprocess (the path a sweep takes), one thread each, `--jobs` at a time:
- proxy (`experiment=proxy_kd`): hidden-state distillation from the full MiniLM into the extracted candidate,
  150 steps of 16 x 64 tokens; the proxy is the held-out MSE at the end (lower is better). Seeds change the
  data order and the masking.
- downstream (`experiment=proxy_finetune`): the extracted candidate fine-tuned 300 steps (batch 32, lr 1e-4)
  on each task and scored once on dev at its last step; the task's selection metric (higher is better).
One JSON line per finished job goes to `--out`, keyed by the settings that made it; a rerun skips what is there.
The proxy runs first for every seed, then the downstream jobs seed by seed, so an interrupted bench has whole
seeds.

`--judge D-A-H-I` runs the same jobs for one more shape (a sweep's choice, picked after the table was made, so
kept out of it), and `--report --judge D-A-H-I` then says where that shape stands: its downstream mean against
the table's best candidate at no more operations (the downstream front at its cost), the gap's standard error
and 95% bootstrap CI paired by seed, and each task's score against the task's constant predictor.

`--report` writes docs/figures/fptas_proxy_validation.csv (for the default `--tasks glue/sst2 glue/stsb glue/cola@800`;
another list writes fptas_proxy_validation_<tasks>.csv, e.g. _sst2_stsb) (one row per candidate: arch, proxy_mean, proxy_sd,
downstream_mean, then per-seed and per-task columns) and .png, and prints Spearman(proxy_mean, downstream_mean)
and the median seed sd as a share of the proxy's spread across candidates (targets: rho <= -0.6, share < 10%).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import os
import shutil
import statistics
import tempfile
import threading
from pathlib import Path

from bortlab.errors import die

REPO = Path(__file__).resolve().parents[1]

# Sub-architectures of MiniLM's search space (conf/search/minilm.yaml, head_dim 32), chosen before any result to
# span depth 1-6, every head count, every width and every FFN size; the source itself (6, 12, 384, 1536) is T.
ARCHS = [(1, 4, 192, 384), (1, 12, 384, 1536), (2, 6, 192, 768), (2, 8, 288, 1152), (3, 6, 192, 768),
         (3, 12, 384, 768), (4, 8, 288, 768), (4, 4, 384, 1536), (5, 6, 288, 1152), (6, 12, 192, 384),
         (6, 8, 384, 1152)]
# Three tasks where MiniLM is far above the constant predictor. CoLA needs its own budget: at proxy_finetune's 300
# steps it is MCC 0 for all 11 candidates (each predicts the majority class), so it runs 800 steps (the full MiniLM
# reaches MCC 0.271 at 804, docs/pipeline.md). MRPC ranks nothing at 300 either (F1 0.799 < the constant 0.812 for
# <4,8,288,768>) and QNLI has no train split here.
PROTOCOL_TASKS = ["glue/sst2", "glue/stsb", "glue/cola@800"]


def arch_name(arch) -> str:
    return "-".join(map(str, arch))


def arch_tuple(name: str) -> tuple:
    return tuple(map(int, name.split("-")))


def overrides(job: dict, args) -> list[str]:
    d, a, h, i = job["arch"]
    arch = [f"arch.depth={d}", f"arch.heads={a}", f"arch.hidden={h}", f"arch.intermediate={i}", "arch.head_dim=32"]
    common = [f"seed={job['seed']}", "trainer.enable_progress_bar=false"]
    if job["kind"] == "proxy":
        return ["experiment=proxy_kd", f"data.corpus={args.corpus}", *arch, *common]
    task, _, steps = job["task"].partition("@")         # glue/cola@800: that task at 800 steps, not 300
    budget = [f"trainer.max_steps={steps}"] if steps else []
    return ["experiment=proxy_finetune", f"task={task}", f"data.root={args.data}", *arch, *common, *budget]


def settings(args) -> dict:
    """What makes a row reusable: the experiment configs' values (not their comments) and the corpus's content."""
    import yaml

    configs = {n: yaml.safe_load((REPO / "conf" / "experiment" / f"{n}.yaml").read_text())
               for n in ("proxy_kd", "proxy_finetune")}
    return {"configs": configs, "corpus_sha1": _sha1(args.corpus)}


def _sha1(path) -> str:
    """The corpus by content, not by path: make_corpus writes the same file anywhere, and rows stay reusable."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def key(job: dict) -> tuple:
    return job["kind"], arch_name(job["arch"]), job.get("task"), job["seed"]


def jobs(seeds, tasks, archs=ARCHS) -> list[dict]:
    """Every proxy seed first (they are cheap, and the seed sd needs all of them), then downstream seed by seed."""
    out = [{"kind": "proxy", "arch": arch, "task": None, "seed": seed} for seed in seeds for arch in archs]
    for seed in seeds:
        out += [{"kind": "downstream", "arch": arch, "task": task, "seed": seed} for arch in archs for task in tasks]
    return out


def read_rows(path: Path, want: dict) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("settings") == want]


def run_job(job: dict, args, want: dict, lock: threading.Lock) -> dict:
    from bortlab.files import append_jsonl
    from bortlab.pipeline.jobs import run_train

    workdir = Path(tempfile.mkdtemp(prefix="proxy-", dir=args.workdir))
    metrics, seconds = run_train([*overrides(job, args)], workdir, args.threads)
    row = {"kind": job["kind"], "arch": arch_name(job["arch"]), "task": job["task"], "seed": job["seed"],
           "objective": metrics["objective"], "seconds": round(seconds, 1), "settings": want}
    if job["kind"] == "proxy":
        row["heldout"], row["initial_heldout"] = metrics["heldout"], metrics["initial_heldout"]
        row["params"] = metrics["params"]
    else:
        row["score"] = metrics["dev"][metrics["selection_metric"]]
        row["metric"], row["dev"] = metrics["selection_metric"], metrics["dev"]
    with lock:                                    # one whole line per job
        append_jsonl(args.out, row)
    shutil.rmtree(workdir, ignore_errors=True)   # checkpoints of 100+ candidates would fill the disk
    return row


def run_all(args) -> None:
    want = settings(args)
    done = {key({**r, "arch": arch_tuple(r["arch"])}) for r in read_rows(args.out, want)}
    todo = [j for j in jobs(args.seeds, args.tasks, [args.judge] if args.judge else ARCHS) if key(j) not in done]
    print(f"{len(done)} jobs already in {args.out}; {len(todo)} to run, {args.jobs} at a time", flush=True)
    lock = threading.Lock()
    args.workdir.mkdir(parents=True, exist_ok=True)
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_job, j, args, want, lock): j for j in todo}
        for n, fut in enumerate(cf.as_completed(futures), 1):
            job = futures[fut]
            try:
                row = fut.result()
            except RuntimeError as e:          # JobFailed: the command and the end of its output
                print(f"[{n}/{len(todo)}] FAILED {key(job)}\n{e}", flush=True)
                continue
            value = row.get("score", row["objective"])
            print(f"[{n}/{len(todo)}] {row['kind']:>10} {row['arch']:>14} {row['task'] or '':>10} seed {row['seed']}: "
                  f"{value:.4f} ({row['seconds']:.0f} s)", flush=True)


def report(args) -> None:
    from scipy.stats import spearmanr

    rows = read_rows(args.out, settings(args))
    # downstream seeds that every candidate has on every task: a seed some candidates lack would bias the means
    names = list(map(arch_name, ARCHS))
    have = {(r["arch"], r["task"], r["seed"]) for r in rows if r["kind"] == "downstream"}
    complete = sorted(s for s in {k[2] for k in have} if all((a, t, s) in have for a in names for t in args.tasks))
    rows = [r for r in rows if r["kind"] == "proxy" or r["seed"] in complete]
    print(f"downstream seeds complete for every candidate and task: {complete}")
    table = []
    for arch in map(arch_name, ARCHS):
        proxy = {r["seed"]: r["objective"] for r in rows if r["kind"] == "proxy" and r["arch"] == arch}
        down = {(r["task"], r["seed"]): r["score"] for r in rows if r["kind"] == "downstream" and r["arch"] == arch}
        per_task = {t: [v for (task, _), v in down.items() if task == t] for t in args.tasks}
        if not proxy or not all(per_task.values()):
            continue
        row = {"arch": arch, "proxy_mean": statistics.mean(proxy.values()),
               "proxy_sd": statistics.stdev(proxy.values()) if len(proxy) > 1 else float("nan"),
               "downstream_mean": statistics.mean(statistics.mean(v) for v in per_task.values())}
        row.update({f"proxy_seed{s}": v for s, v in sorted(proxy.items())})
        for t, values in per_task.items():
            name = t.split("/")[-1]
            row[f"{name}_mean"] = statistics.mean(values)
            row.update({f"{name}_seed{s}": down[t, s] for s in sorted(s for task, s in down if task == t)})
        table.append(row)
    if len(table) < 3:
        die(f"only {len(table)} candidates have both a proxy and every task in {args.out}; run more jobs first "
            f"(the same command without --report)")
    columns = list(dict.fromkeys(c for row in table for c in row))
    out = table_path(args.tasks)
    tmp = out.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()} for row in table)
    os.replace(tmp, out)

    rho = spearmanr([r["proxy_mean"] for r in table], [r["downstream_mean"] for r in table]).statistic
    spread = max(r["proxy_mean"] for r in table) - min(r["proxy_mean"] for r in table)
    sds = [r["proxy_sd"] for r in table if r["proxy_sd"] == r["proxy_sd"]]
    share = statistics.median(sds) / spread if sds else float("nan")
    print(f"{len(table)} candidates; seeds per proxy: {sorted({len([k for k in r if k.startswith('proxy_seed')]) for r in table})}")
    print(f"Spearman(proxy_mean, downstream_mean) = {rho:+.3f}  (target <= -0.6)")
    print(f"median seed sd / proxy spread = {share:.1%}  (target < 10%)")
    seeds = sorted({int(k[len("proxy_seed"):]) for r in table for k in r if k.startswith("proxy_seed")})
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:]
             if all(f"proxy_seed{a}" in r and f"proxy_seed{b}" in r for r in table)]
    if pairs:        # does one seed rank the candidates as the others do? (then one seed is enough in a sweep)
        between = [spearmanr([r[f"proxy_seed{a}"] for r in table], [r[f"proxy_seed{b}"] for r in table]).statistic
                   for a, b in pairs]
        print(f"Spearman between proxy seeds: {min(between):.3f}-{max(between):.3f} over {len(pairs)} pair(s)")
    for t in args.tasks:
        name = t.split("/")[-1]
        scores = [r[f"{name}_mean"] for r in table]
        if len(set(scores)) == 1:       # e.g. CoLA's MCC 0 for every candidate: no ranking to compare with
            print(f"  {name}: every candidate scores {scores[0]:.4f}; no rank correlation")
            continue
        r_t = spearmanr([r["proxy_mean"] for r in table], scores).statistic
        print(f"  Spearman(proxy_mean, {name}) = {r_t:+.3f}")
    print(f"wrote {out}")
    plot(table, rho, out.with_suffix(".png"), args.tasks)
    if getattr(args, "judge", None):
        judge(args, rows, table, complete)


def table_path(tasks) -> Path:
    """docs/figures/fptas_proxy_validation.csv for the protocol's tasks; another task list gets its own file
    (e.g. ..._sst2_stsb.csv), so that no report overwrites the table another one wrote."""
    suffix = "" if list(tasks) == PROTOCOL_TASKS else "_" + "_".join(t.split("/")[-1].replace("@", "") for t in tasks)
    return REPO / "docs" / "figures" / f"fptas_proxy_validation{suffix}.csv"


def ops_ratio(arch) -> float:
    """Forward operations at 128 tokens as a share of MiniLM's (head_dim 32, as the space)."""
    from bortlab.models.arch import Arch

    def ops(t):
        return Arch(*t, head_dim=32).num_ops()

    return ops(arch) / ops((6, 12, 384, 1536))


def judge(args, rows, table, seeds) -> None:
    """Where a sweep's choice stands on the table's downstream front, with the same seeds and tasks."""
    from bortlab.data import get_task, read_split
    from bortlab.data.baseline import baseline_score
    from bortlab.stats import paired_difference_ci

    name = arch_name(args.judge)
    mine = {(r["task"], r["seed"]): r["score"] for r in rows if r["kind"] == "downstream" and r["arch"] == name}
    missing = [(t, s) for t in args.tasks for s in seeds if (t, s) not in mine]
    if missing:
        die(f"--judge {name}: no downstream row for {missing[:3]} in {args.out}; run "
            f"`python bench/bench_proxy.py --corpus ... --tasks {' '.join(args.tasks)} --judge {name}` first")
    per_seed = {s: statistics.mean(mine[t, s] for t in args.tasks) for s in seeds}
    cost = ops_ratio(args.judge)
    cheaper = [r for r in table if ops_ratio(arch_tuple(r["arch"])) <= cost]
    print(f"\n--judge {name}: {1 / cost:.2f}x fewer operations than MiniLM (ops ratio {cost:.3f}); seeds {seeds}")
    for t in args.tasks:
        task = get_task(t.partition("@")[0])
        constant = baseline_score(task, read_split(task, task.dev_splits[0], root=args.data))
        values = [mine[t, s] for s in seeds]
        print(f"  {t}: {statistics.mean(values):.4f} (seeds {', '.join(f'{v:.4f}' for v in values)}); "
              f"constant predictor {constant:.4f}: {'above' if min(values) > constant else 'NOT above'} on every seed")
    mean = statistics.mean(per_seed.values())
    if not cheaper:
        print(f"  downstream mean {mean:.4f}; no table candidate costs as little, so there is no front to compare with")
        return
    best = max(cheaper, key=lambda r: r["downstream_mean"])
    theirs = [statistics.mean(best[f"{t.split('/')[-1]}_seed{s}"] for t in args.tasks) for s in seeds]
    gaps = [b - a for a, b in zip(per_seed.values(), theirs)]
    se = statistics.stdev(gaps) / len(gaps) ** 0.5 if len(gaps) > 1 else float("nan")
    diff, low, high = paired_difference_ci(theirs, list(per_seed.values()))
    verdict = ("on or above the front" if diff <= 0 else "within one SE of the front" if diff <= se
               else "NOT within one SE of the front")
    print(f"  downstream mean {mean:.4f}; the front at its cost: <{best['arch'].replace('-', ',')}> "
          f"{best['downstream_mean']:.4f} (ops ratio {ops_ratio(arch_tuple(best['arch'])):.3f})")
    print(f"  front - choice = {diff:+.4f}, SE {se:.4f} (paired by seed), 95% CI [{low:+.4f}, {high:+.4f}]: {verdict}")


def plot(table, rho, path: Path, tasks) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = [r["proxy_mean"] for r in table]
    y = [r["downstream_mean"] for r in table]
    ax.errorbar(x, y, xerr=[r["proxy_sd"] for r in table], fmt="o", capsize=3)
    for r in table:
        ax.annotate("⟨" + r["arch"].replace("-", ",") + "⟩", (r["proxy_mean"], r["downstream_mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("proxy: held-out hidden-state MSE after 150 KD steps (mean ± sd over seeds)")
    ax.set_ylabel("downstream: mean dev score over " + ", ".join(t.split("/")[-1] for t in tasks))
    ax.set_title(f"MiniLM sub-architectures: Spearman ρ = {rho:+.2f}")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="pre-training text (python -m bortlab.pretrain.make_corpus)")
    p.add_argument("--data", default=os.environ.get("BORTLAB_DATA") or str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "proxy.jsonl")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=PROTOCOL_TASKS,
                   help="downstream tasks (the mean is over these); TASK@STEPS fine-tunes that task for STEPS steps "
                        "instead of proxy_finetune's 300 (e.g. glue/cola@800), and its rows are kept apart")
    p.add_argument("--jobs", type=int, default=2, help="jobs at a time (each gets --threads threads)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bortlab-bench-proxy")
    p.add_argument("--report", action="store_true", help="write the validation table and figure from --out")
    p.add_argument("--judge", metavar="D-A-H-I", help="one more shape (a sweep's choice): run its jobs, or with "
                   "--report, compare it with the table's downstream front at its cost")
    args = p.parse_args()
    if args.judge:
        parts = args.judge.split("-")
        if len(parts) != 4 or not all(x.isdigit() and int(x) > 0 for x in parts):
            die(f"--judge {args.judge}: give the shape as depth-heads-hidden-intermediate, e.g. 2-9-288-1152.")
        args.judge = tuple(map(int, parts))
        if args.judge in ARCHS:
            die(f"--judge {arch_name(args.judge)}: this shape is in the validation table already; judge another one.")
    bad = [t for t in args.tasks if "@" in t and not (t.partition("@")[2].isdigit() and int(t.partition("@")[2]) > 0)]
    if bad:
        die(f"--tasks {' '.join(bad)}: TASK@STEPS needs a whole number of steps >= 1 after the @, e.g. glue/cola@800.")
    if not Path(args.corpus).exists():
        die(f"no corpus at {args.corpus}; write one with "
            "`python -m bortlab.pretrain.make_corpus --data ../shared/data --out corpus.txt`")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report(args) if args.report else run_all(args)


if __name__ == "__main__":
    main()
