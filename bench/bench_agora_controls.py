"""Issue 19: is Agora's gain attributable? SST-2 in the scarce-data regime, a labeller stronger than the student,
and controls that isolate the targeting of dev mistakes. Every job is a plain `train.py` run (config keys only).

    python bench/bench_agora_controls.py                       # labeller, then seeds 0..9 x 5 arms; resumable
    python bench/bench_agora_controls.py --seeds 0 1 2         # fewer seeds (a later run with more adds to them)
    python bench/bench_agora_controls.py --report              # docs/figures/agora_controls.csv, CIs, verdict

The protocol (docs/agora.md, "Scarce data, a reserve, distillation"):
- Data: a reserve R of --reserve (20,000) SST-2 train rows, drawn once with data.reserve_seed=0 (fixed for all
  seeds and arms). Per seed s: S = a balanced --subset (500) of R and H = the next balanced --holdout (500) of
  R (data.train_subset_seed=s; nested draws, so data.train_subset=|S|+|H| is exactly S ∪ H). The official
  dev split is the test, scored once at the end of every run.
- Labeller (stage 1, once): the full MiniLM fine-tuned on U = train − R (data.use=rest) for one epoch
  (ceil(|U| / batch) steps), its final weights (checkpoints/last.ckpt; the one dev evaluation is at that last
  step, so nothing is selected on dev). It lives in --labeller-dir, outside the repo, and is kept: the arms
  read it. A finished labeller there with the same settings is reused, not retrained.
- Student: a MiniLM extraction <3, 6, 192, 768> (--student), the same --steps (600), batch (32), lr (1e-4, as
  conf/experiment/proxy_finetune.yaml for small extractions), linear schedule with 10% warm-up in every arm;
  no checkpoint selection: one dev evaluation, at the last step (trainer.check_val_every_n_epoch=null,
  trainer.val_check_interval=<steps>), and the final model is scored. Measured (2026-12-02, arm A1, 1000 steps,
  one thread on the shared 2-CPU box): 164 s of CPU (342 s wall beside three other jobs), so ~0.15 s a step;
  600 steps are ~1.5 min of one free core plus ~10 s of start-up (Agora's rounds and A4's teacher add seconds).
- Arms, per seed: A0 S only; A1 S ∪ H with gold labels; A2 Agora (callbacks=agora, agora.dev=holdout with
  agora.holdout_size=|H|, rounds at 25/50/75% of the steps via agora.at_steps, agora.points_per_round points
  a round from k perturbations (transform nn) of the student's H mistakes, labelled by the labeller's final
  checkpoint); A3 the same with agora.source=random (H rows drawn uniformly, right or wrong); A4 plain
  distillation (distill.teacher = the labeller's final checkpoint, 0.5·CE + 0.5·T²·KL at T = 2, plus
  distill.pool_size = rounds × points_per_round unlabelled rows of R − S with its soft labels: as many as
  Agora adds).

Agora's open choices keep docs/agora.md's defaults: k = 8, transform nn in the labeller's embedding space
(fraction 0.15, 10 neighbours), hard labels, no threshold, no class balancing, 500 points a round.
Not tuned yet. Tuning them (points per round, k, balance, soft labels, transform) must happen on a
development split, never on the official dev: e.g. carve a second balanced draw D from R − S − H (a seed
outside 0..9), train A2 variants with each candidate setting, score them on D, pick one, then run this
protocol once with it. train.py scores only the official dev split, so this needs a way to score another
split (or a small script reading the run's last.ckpt): still to do, not done here.

One JSON line per finished job goes to --out, keyed by the settings that made it (data sizes, steps, student,
Agora options, and the labeller's own settings); a rerun skips what is there, and jobs run seed by seed, so
an interrupted bench has whole seeds first. Each arm's run dir is removed once its row is written.

--report writes --csv (arm, seed, dev_accuracy: a row per arm and seed, plus arm=labeller), prints every arm's
mean with a 95% bootstrap CI over seeds, the gate (labeller >= A1 + 5 points, else the experiment is void),
the paired bootstrap 95% CI of A2 − the best control (the one of A1, A3, A4 with the highest mean, paired by
seed) and the issue's verdict rule. Give --report the same settings flags as the runs.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from bortlab.errors import die

REPO = Path(__file__).resolve().parents[1]
TASK = "glue/sst2"
ARMS = ("A0", "A1", "A2", "A3", "A4")
CONTROLS = ("A1", "A3", "A4")
STUDENT = ("arch=minilm arch.depth=3 arch.heads=6 arch.hidden=192 arch.intermediate=768 arch.head_dim=32 "
           "model.init=extract model.source=${minilm_path:}")
LABELLER = "arch=minilm"
MARKER = "bench_agora_controls.json"     # in --labeller-dir: the settings it was trained with, and whether it finished


# ---- settings and the jobs' overrides ------------------------------------------------------------------
def train_rows(args) -> int:
    from bortlab.data import read_split

    return len(read_split(TASK, "train", root=args.data))


def labeller_settings(args, n_train: int) -> dict:
    steps = args.labeller_steps or math.ceil((n_train - args.reserve) / args.batch)   # one epoch of U
    return {"task": TASK, "reserve": args.reserve, "reserve_seed": args.reserve_seed, "batch": args.batch,
            "steps": steps, "args": args.labeller_args, "seed": 0}


def round_steps(args) -> list[int]:
    return [int(f * args.steps) for f in args.round_at]


def arm_settings(args, labeller: dict) -> dict:
    """What makes an arm's row reusable: everything the arm's command depends on, the labeller's settings too."""
    return {"task": TASK, "reserve": args.reserve, "reserve_seed": args.reserve_seed, "subset": args.subset,
            "holdout": args.holdout, "steps": args.steps, "batch": args.batch, "lr": args.lr,
            "student": args.student, "at_steps": round_steps(args), "points_per_round": args.points_per_round,
            "k": args.k, "pool_size": len(args.round_at) * args.points_per_round, "extra": args.extra,
            "labeller": labeller}


def common(args) -> list[str]:
    return [f"task={TASK}", f"data.root={args.data}", f"data.reserve={args.reserve}",
            f"data.reserve_seed={args.reserve_seed}", f"data.batch_size={args.batch}", "logger=none",
            "predict=false", "trainer.enable_progress_bar=false", "trainer.check_val_every_n_epoch=null"]


def labeller_overrides(args, want: dict) -> list[str]:
    steps = want["steps"]
    return [*common(args), "data.use=rest", "seed=0", *shlex.split(args.labeller_args),
            f"trainer.max_steps={steps}", "trainer.max_epochs=-1", f"trainer.val_check_interval={steps}",
            "callbacks=default", "callbacks.checkpoint.save_last=true"]   # last.ckpt = the final weights


def arm_overrides(arm: str, seed: int, args) -> list[str]:
    lab = str(args.labeller_dir)
    base = [*common(args), "data.use=reserve", f"seed={seed}", f"data.train_subset_seed={seed}",
            *shlex.split(args.student), f"optim.lr={args.lr}", f"trainer.max_steps={args.steps}",
            "trainer.max_epochs=-1", f"trainer.val_check_interval={args.steps}"]
    extra = [e for e in args.extra if arm in ("A2", "A3") or not e.startswith("agora.")]
    if arm in ("A0", "A1"):
        n = args.subset + (args.holdout if arm == "A1" else 0)
        return [*base, f"data.train_subset={n}", "callbacks=none", *extra]
    if arm == "A4":
        return [*base, f"data.train_subset={args.subset}", "callbacks=none", f"distill.teacher={lab}",
                "distill.checkpoint=last", "distill.alpha=0.5", "distill.temperature=2.0",
                f"distill.pool_size={len(args.round_at) * args.points_per_round}", *extra]
    at = ",".join(map(str, round_steps(args)))
    return [*base, f"data.train_subset={args.subset}", "callbacks=agora", "callbacks.checkpoint.enabled=false",
            "agora.dev=holdout", f"agora.holdout_size={args.holdout}", f"agora.at_steps=[{at}]",
            f"agora.points_per_round={args.points_per_round}", f"agora.k={args.k}",
            f"agora.source={'mistakes' if arm == 'A2' else 'random'}", "agora.labeller.kind=checkpoint",
            f"agora.labeller.path={lab}", "agora.labeller.checkpoint=last", *extra]


# ---- running ---------------------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(path: Path, row: dict, lock: threading.Lock) -> None:
    from bortlab.files import append_jsonl

    with lock:                                # one whole line per job
        append_jsonl(path, row)


def train(overrides: list[str], workdir: Path, threads: int) -> tuple[dict, float]:
    """One train.py run in a subprocess (bortlab.pipeline.jobs.run_train): its metrics.json and wall seconds."""
    from bortlab.pipeline.jobs import run_train

    return run_train(overrides, workdir, threads)


def _shown(path: Path) -> str:
    """A path as a result row records it: relative to the checkout when inside it (rows are committed)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def accuracy(metrics: dict) -> float:
    return float(metrics["dev"]["val/accuracy"])


def ensure_labeller(args, want: dict, lock: threading.Lock) -> None:
    """Train the labeller into --labeller-dir unless a finished run with the same settings is there; make sure
    --out has its row."""
    d = args.labeller_dir
    marker = d / MARKER
    have = json.loads(marker.read_text()) if marker.exists() else None
    finished = (have is not None and have.get("settings") == want and have.get("finished")
                and (d / "metrics.json").exists() and (d / "checkpoints" / "last.ckpt").exists())
    if not finished:
        if d.exists() and any(d.iterdir()):
            if have is None or have.get("settings") != want:
                die(f"--labeller-dir {d} holds another run (made with other settings, or not by this bench). "
                    "Pass another --labeller-dir, or remove that directory yourself if it is no longer needed; "
                    "the bench never deletes a labeller it did not start with these settings.")
            shutil.rmtree(d)          # our own run with these settings, interrupted before it finished
        d.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"settings": want, "finished": False}, indent=1))
        threads = args.jobs * args.threads        # the labeller runs alone: give it every thread the arms get
        print(f"labeller: training {want['steps']} steps on U = train - R with {threads} thread(s) into {d}",
              flush=True)
        try:
            metrics, seconds = train(labeller_overrides(args, want), d, threads)
        except RuntimeError as e:
            sys.exit(f"bench_agora_controls.py: the labeller's run failed; a rerun starts it again\n{e}")
        marker.write_text(json.dumps({"settings": want, "finished": True, "seconds": round(seconds, 1)}, indent=1))
        print(f"labeller: dev accuracy {accuracy(metrics):.4f} ({seconds:.0f} s)", flush=True)
    else:
        print(f"labeller: finished run with these settings in {d}, reused", flush=True)
    if not [r for r in read_rows(args.out) if r.get("arm") == "labeller" and r.get("settings") == want]:
        metrics = json.loads((d / "metrics.json").read_text())
        seconds = json.loads(marker.read_text()).get("seconds")
        append_row(args.out, {"arm": "labeller", "seed": None, "dev_accuracy": accuracy(metrics),
                              "dev": metrics["dev"], "steps": metrics["steps"], "train_rows": metrics["train_rows"],
                              "seconds": seconds, "dir": _shown(d), "settings": want}, lock)


def run_arm(job: tuple[int, str], args, want: dict, lock: threading.Lock) -> dict:
    seed, arm = job
    workdir = Path(tempfile.mkdtemp(prefix=f"agc-{arm}-s{seed}-", dir=args.workdir))
    metrics, seconds = train(arm_overrides(arm, seed, args), workdir, args.threads)
    row = {"arm": arm, "seed": seed, "dev_accuracy": accuracy(metrics), "dev": metrics["dev"],
           "steps": metrics["steps"], "train_rows": metrics["train_rows"], "seconds": round(seconds, 1),
           "dev_split": metrics.get("dev_split", "dev")}     # "tune" with data.tune_split: not the official dev
    if metrics.get("distill"):
        row["teacher_dev_accuracy"] = metrics["distill"]["teacher_dev_accuracy"]
    rounds = workdir / "agora" / "rounds.jsonl"
    if rounds.exists():
        keep = ("round", "step", "agora_dev_score", "mistakes", "source", "sources", "generated", "kept", "labeller_acc",
                "train_rows")
        row["rounds"] = [{k: r.get(k) for k in keep} | {k: v for k, v in r.items() if k.startswith("label_")}
                         for r in map(json.loads, rounds.read_text().splitlines())]
    row["settings"] = want
    append_row(args.out, row, lock)
    shutil.rmtree(workdir, ignore_errors=True)    # the labeller is the only run kept
    return row


def run_all(args) -> None:
    n_train = train_rows(args)
    if args.reserve + 1 > n_train:
        die(f"--reserve {args.reserve} leaves no rows of the {n_train}-row SST-2 train split to the labeller.")
    lab = labeller_settings(args, n_train)
    want = arm_settings(args, lab)
    lock = threading.Lock()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = read_rows(args.out)
    done = {(r["arm"], r["seed"]) for r in rows if r.get("settings") == want}
    todo = [(s, a) for s in args.seeds for a in args.arms if (a, s) not in done]       # seed by seed
    if not todo and any(r.get("arm") == "labeller" and r.get("settings") == lab for r in rows):
        # every run is on record: a rerun must not train the labeller again (~20-30 min) to do nothing
        print(f"{len(done)} arm runs already in {args.out}; 0 to run", flush=True)
        return
    ensure_labeller(args, lab, lock)
    print(f"{len(done)} arm runs already in {args.out}; {len(todo)} to run, {args.jobs} at a time with "
          f"{args.threads} thread(s) each", flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    failed = 0
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_arm, j, args, want, lock): j for j in todo}
        for n, fut in enumerate(cf.as_completed(futures), 1):
            seed, arm = futures[fut]
            try:
                row = fut.result()
            except RuntimeError as e:
                failed += 1
                print(f"[{n}/{len(todo)}] FAILED {arm} seed {seed}\n{e}", flush=True)
                continue
            print(f"[{n}/{len(todo)}] {arm} seed {seed}: dev accuracy {row['dev_accuracy']:.4f}, "
                  f"{row['train_rows']} train rows at the end ({row['seconds']:.0f} s)", flush=True)
    if failed:
        sys.exit(f"bench_agora_controls.py: {failed} job(s) failed (above); a rerun retries only those")


# ---- the report ------------------------------------------------------------------------------------------
def summarise(rows: list[dict], labeller_acc: float | None) -> dict:
    """Means, CIs, the gate, A2 − the best control and the verdict, from the arm rows (one per arm and seed)."""
    from bortlab.stats import bootstrap_mean_ci, paired_difference_ci

    by = {a: {r["seed"]: r["dev_accuracy"] for r in rows if r["arm"] == a} for a in ARMS}
    out = {"arms": {a: (bootstrap_mean_ci(list(v.values())), len(v)) for a, v in by.items() if v}}
    seeds = sorted(set.intersection(*(set(v) for v in by.values())))    # seeds with every arm: pairs
    out["seeds"] = seeds
    if not seeds:
        return out
    means = {a: sum(by[a][s] for s in seeds) / len(seeds) for a in ARMS}
    best = max(CONTROLS, key=lambda a: means[a])
    out["means"], out["best_control"] = means, best

    def diff(a, b):
        return paired_difference_ci([by[a][s] for s in seeds], [by[b][s] for s in seeds])

    out["a2_minus_best"] = diff("A2", best)
    out["pairs"] = {f"{a} - {b}": diff(a, b) for a, b in (("A2", "A1"), ("A2", "A3"), ("A2", "A4"),
                                                          ("A3", "A1"), ("A4", "A2"), ("A1", "A0"))}
    out["gate"] = None if labeller_acc is None else labeller_acc >= means["A1"] + 0.05
    m, lo, hi = out["a2_minus_best"]
    verdicts = []
    if out["gate"] is False:
        verdicts.append(f"void: the labeller ({labeller_acc:.4f}) is not 5 points above A1 ({means['A1']:.4f})")
    if m >= 0.01 and lo > 0:
        verdicts.append(f"Agora works: A2 - {best} = {100 * m:+.2f} points, CI excludes 0")
    else:
        verdicts.append(f"Agora does not beat the best control ({best}) by >= 1 point with a CI excluding 0")
    a2a3, a3a1 = out["pairs"]["A2 - A3"], out["pairs"]["A3 - A1"]
    if a2a3[1] <= 0 <= a2a3[2] and a3a1[1] > 0:
        verdicts.append("A2 ~ A3 > A1: the gain is labelled data, not the targeting of mistakes")
    if means["A4"] >= means["A2"]:
        verdicts.append("A4 >= A2: plain distillation subsumes Agora")
    out["verdict"] = verdicts
    return out


def report(args) -> None:
    from bortlab.stats import format_ci

    rows = read_rows(args.out)
    n_train = train_rows(args)
    lab = labeller_settings(args, n_train)
    want = arm_settings(args, lab)
    arms = {(r["arm"], r["seed"]): r for r in rows if r.get("settings") == want and r.get("arm") in ARMS}
    labs = [r for r in rows if r.get("arm") == "labeller" and r.get("settings") == lab]
    if not arms:
        die(f"{args.out} has no arm rows made with these settings; run the bench first (the same command without "
            "--report), or give --report the settings flags the runs had.")
    arm_rows = [arms[k] for k in sorted(arms, key=lambda k: (k[1], ARMS.index(k[0])))]
    labeller_acc = labs[-1]["dev_accuracy"] if labs else None
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.csv.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "seed", "dev_accuracy"])
        if labeller_acc is not None:
            w.writerow(["labeller", "", f"{labeller_acc:.6f}"])
        for r in arm_rows:
            w.writerow([r["arm"], r["seed"], f"{r['dev_accuracy']:.6f}"])
    os.replace(tmp, args.csv)

    s = summarise(arm_rows, labeller_acc)
    splits = sorted({r.get("dev_split", "dev") for r in arm_rows})
    scored = "official dev" if splits == ["dev"] else "tune split (data.tune_split, not the official dev)"
    print(f"SST-2, |R| = {args.reserve}, |S| = {args.subset}, |H| = {args.holdout}, {args.steps} steps; {scored} "
          "accuracy in points, mean [95% bootstrap CI over seeds]")
    print("| arm | seeds | dev accuracy |\n|---|---|---|")
    if labeller_acc is not None:
        print(f"| labeller | - | {100 * labeller_acc:.2f} |")
    for a, (ci, n) in s["arms"].items():
        print(f"| {a} | {n} | {format_ci(*ci, scale=100)} |")
    if not s["seeds"]:
        print("no seed has all five arms yet: no paired comparison")
    else:
        print(f"paired over seeds {s['seeds']} (the seeds with every arm)")
        gate = {None: "unknown (no labeller row)", True: "passed", False: "VOID"}[s["gate"]]
        print(f"gate: labeller {'n/a' if labeller_acc is None else f'{100 * labeller_acc:.2f}'} >= A1 "
              f"{100 * s['means']['A1']:.2f} + 5 points: {gate}")
        print(f"A2 - best control ({s['best_control']}): {format_ci(*s['a2_minus_best'], scale=100)} points")
        for name, ci in s["pairs"].items():
            print(f"  {name}: {format_ci(*ci, scale=100)}")
        print("verdict: " + "; ".join(s["verdict"]))
    for line in agora_dev_lines(arm_rows):
        print(line)
    png = plot_arms(arm_rows, s, labeller_acc, args.csv.with_suffix(".png"), scored)
    print(f"wrote {args.csv} and {png}")


ARM_NAMES = {"A0": "A0 S only", "A1": "A1 S ∪ H gold", "A2": "A2 Agora", "A3": "A3 random aug.", "A4": "A4 distillation"}


def plot_arms(rows: list[dict], s: dict, labeller_acc, path: Path, scored: str) -> Path:
    """Every seed's score per arm (lines join a seed's arms: the comparisons are paired), each arm's mean with
    its bootstrap 95% CI, and the labeller's score."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from bortlab.files import write_atomic

    fig, ax = plt.subplots(figsize=(7, 4))
    arms = [a for a in ARMS if a in s["arms"]]
    for seed in sorted({r["seed"] for r in rows}):
        pts = [(arms.index(r["arm"]), 100 * r["dev_accuracy"]) for r in rows if r["seed"] == seed and r["arm"] in arms]
        ax.plot(*zip(*sorted(pts)), "-o", color="0.75", lw=0.7, ms=3, zorder=1)
    for x, a in enumerate(arms):
        (mean, lo, hi), _ = s["arms"][a]
        ax.errorbar(x, 100 * mean, yerr=[[100 * (mean - lo)], [100 * (hi - mean)]], fmt="s", color="tab:red",
                    ms=7, capsize=5, zorder=2)
    if labeller_acc is not None:
        ax.axhline(100 * labeller_acc, ls="--", color="tab:blue", lw=1)
        ax.text(-0.3, 100 * labeller_acc, f"labeller ({100 * labeller_acc:.1f})", va="bottom", ha="left",
                color="tab:blue", fontsize=8)
    ax.set_xticks(range(len(arms)), [ARM_NAMES[a] for a in arms], fontsize=8)
    ax.set_ylabel(f"accuracy, {scored} (points)")
    ax.set_title("SST-2, 500 labelled rows: every seed (grey), mean and 95% CI (red)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_atomic(path, buf.getvalue())


def agora_dev_lines(rows: list[dict]) -> list[str]:
    """Agora's own dev score (H) at each round against the reported score, mean over seeds, for A2 and A3:
    H is what Agora feeds from, so its score rises with the points made near it; the Θ loop ranks on it."""
    out = []
    for arm in ("A2", "A3"):
        mine = [r for r in rows if r["arm"] == arm and r.get("rounds")]
        if not mine:
            continue
        n = min(len(r["rounds"]) for r in mine)
        h = [sum(r["rounds"][i]["agora_dev_score"] for r in mine) / len(mine) for i in range(n)]
        steps = [mine[0]["rounds"][i]["step"] for i in range(n)]
        dev = sum(r["dev_accuracy"] for r in mine) / len(mine)
        out.append(f"{arm}: Agora-dev (H) accuracy at the rounds (steps {steps}): "
                   f"{', '.join(f'{100 * x:.1f}' for x in h)}; reported accuracy at the end {100 * dev:.1f} "
                   f"(mean of {len(mine)} seeds)")
    return out


# ---- command line ----------------------------------------------------------------------------------------
def check(args) -> None:
    """Bad input: one paragraph, exit 2 (before any training)."""
    if not (Path(args.data) / "glue" / "SST-2" / "train.tsv").exists():
        die(f"no SST-2 under --data {args.data} (expected glue/SST-2/train.tsv there); pass the directory with the "
            "GLUE copies (e.g. ../shared/data) or set BORTLAB_DATA.")
    for name in ("jobs", "threads", "steps", "batch", "k", "points_per_round", "subset", "holdout", "reserve"):
        if getattr(args, name) < 1:
            die(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        die(f"--seeds must be distinct whole numbers >= 0, got {args.seeds}.")
    if args.subset % 2 or args.holdout % 2:
        die(f"--subset {args.subset} and --holdout {args.holdout} must be even: S and H are balanced over SST-2's "
            "two classes.")
    steps = round_steps(args)
    if not args.round_at or not all(0 < f < 1 for f in args.round_at) or steps != sorted(set(steps)) or steps[0] < 1:
        die(f"--round-at {args.round_at} must be increasing fractions in (0, 1) that give distinct steps >= 1 of "
            f"--steps {args.steps} (they give {steps}).")
    pool = len(args.round_at) * args.points_per_round
    need = args.subset + max(args.holdout, pool)
    if need > args.reserve:
        die(f"--reserve {args.reserve} is too small: S ({args.subset}) plus H ({args.holdout}) or the "
            f"distillation pool ({pool} = rounds x points per round) must come from it ({need} rows).")
    if args.lr <= 0:
        die(f"--lr must be positive, got {args.lr}.")
    if args.labeller_steps is not None and args.labeller_steps < 1:
        die(f"--labeller-steps must be >= 1 (or left out: one epoch of U), got {args.labeller_steps}.")
    bad = [e for e in args.extra if "=" not in e]
    if bad:
        die(f"extra arguments after -- must be Hydra overrides key=value for the student arms, got {bad}.")


def parse_args(argv=None):
    """The bench's settings (also what bench_agora_theta.py builds its A2 jobs from); bad input exits 2."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("BORTLAB_DATA") or str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "agora_controls.jsonl")
    p.add_argument("--csv", type=Path, default=None,
                   help="--report writes the table here (default docs/figures/agora_controls.csv; agora_tune.csv "
                        "when the runs score a tune split)")
    p.add_argument("--labeller-dir", type=Path, default=REPO / "outputs" / "agora_labeller",
                   help="the labeller's run dir (kept; reused when finished with the same settings)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--jobs", type=int, default=2, help="arm runs at a time (each gets --threads threads)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bortlab-bench-agora-controls")
    p.add_argument("--reserve", type=int, default=20000, help="|R|: SST-2 train rows held back from the labeller")
    p.add_argument("--reserve-seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=500, help="|S|, balanced, per seed")
    p.add_argument("--holdout", type=int, default=500, help="|H|, balanced, per seed (Agora's dev)")
    p.add_argument("--steps", type=int, default=600, help="every arm's step budget (about 1.5 min of one free core)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="the student's lr (every arm)")
    p.add_argument("--round-at", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                   help="Agora rounds after these fractions of --steps")
    p.add_argument("--points-per-round", type=int, default=500)
    p.add_argument("--k", type=int, default=8, help="perturbations per source row")
    p.add_argument("--student", default=STUDENT, help="the student's Hydra overrides (arch, init)")
    p.add_argument("--labeller-args", default=LABELLER, help="the labeller's Hydra overrides (arch, optim)")
    p.add_argument("--labeller-steps", type=int, default=None, help="default: one epoch of U, ceil(|U| / batch)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS,
                   help="arms to run (tuning: --arms A2 with -- data.tune_split=500 data.tune_skip=500 <variant>)")
    p.add_argument("--report", action="store_true", help="write --csv and print the CIs and the verdict from --out")
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.extra = extra
    if args.csv is None:        # tuning runs never overwrite the official-dev table
        tuning = any(e.startswith("data.tune_split=") and e.split("=", 1)[1] not in ("null", "None") for e in extra)
        args.csv = REPO / "docs" / "figures" / ("agora_tune.csv" if tuning else "agora_controls.csv")
    args.data = str(Path(args.data).resolve())
    args.labeller_dir = args.labeller_dir.absolute()
    check(args)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    report(args) if args.report else run_all(args)


if __name__ == "__main__":
    main()
