"""Issue 19: Agora's Θ loop (`hydra/sweeper=agora`) against plain enumeration of the same Θ at about the same
number of training jobs, in the scarce-data setting of bench_agora_controls.py (its arm A2, one data draw).

    python bench/bench_agora_theta.py -- agora.soft_labels=true            # both methods; resumable
    python bench/bench_agora_theta.py --report -- agora.soft_labels=true   # docs/figures/agora_theta.csv, table

The protocol, fixed before any result:
- Θ = optim.lr ∈ --theta-lr (5e-5, 1e-4, 2e-4, 4e-4) × agora.k ∈ --theta-k (4, 8): 8 sets. Everything else is arm A2 of
  bench_agora_controls.py for data seed --seed (S, H and the labeller as there; the settings after `--` go to
  that bench's parser, so `-- agora.soft_labels=true` is its final protocol).
- Θ loop: `train.py -m hydra/sweeper=agora` with keep = 0.5: rounds of 8, 4, 2 and 1 jobs (15), each round's
  jobs trained on the pool of points from the best jobs of the rounds before; its answer is the job with the
  best Agora-dev score (accuracy on H) over all rounds.
- Enumeration: every θ as an ordinary Agora run (rounds inside the run, no pool), with each training seed of
  --enum-seeds (0, 1): 16 jobs, one more than the loop. Its answer is the same rule: the job with the best
  Agora-dev score.
- Both answers are scored on the official dev split, which no decision reads; every job's official dev score
  is in the table for context (the best of them is an oracle neither method can see).
One data draw and one run of each method: this compares two procedures once, it is not a CI over seeds.

Rows go to --out, one per finished job, keyed by the settings; a rerun skips finished jobs (the Θ loop's sweep
resumes job by job in its own sweep dir under --dir).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import itertools
import json
import math
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from bortlab.errors import die

REPO = Path(__file__).resolve().parents[1]
AXES = ("optim.lr", "agora.k")


def controls():
    """bench_agora_controls.py as a module: the A2 arm's overrides and settings come from there, not a copy."""
    spec = importlib.util.spec_from_file_location("bench_agora_controls", REPO / "bench" / "bench_agora_controls.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def thetas(args) -> list[list[str]]:
    return [[f"optim.lr={lr}", f"agora.k={k}"] for lr, k in itertools.product(args.lr, args.k)]


def fixed_overrides(ctl, cargs, rank_on: str = "agora_dev") -> list[str]:
    """Arm A2's overrides for the data seed, without the keys Θ sets; with rank_on=run, every job scores D (a
    balanced |H| rows of R after H, which Agora never reads) instead of the official dev."""
    out = [o for o in ctl.arm_overrides("A2", cargs.seeds[0], cargs) if o.split("=", 1)[0] not in AXES]
    return out + (tune_split(cargs.holdout) if rank_on == "run" else [])


def tune_split(holdout: int) -> list[str]:
    return [f"data.tune_split={holdout}", f"data.tune_skip={holdout}"]


def official(overrides: list[str]) -> list[str]:
    """A job's overrides without the tune split: the same run, scored on the official dev."""
    return [o for o in overrides if not o.startswith(("data.tune_split=", "data.tune_skip="))]


def with_seed(overrides: list[str], seed: int) -> list[str]:
    """The training seed (init, batch order, Agora's sampling) changed; S and H (data.train_subset_seed) kept."""
    return [f"seed={seed}" if o.startswith("seed=") else o for o in overrides]


def settings(args, ctl, cargs) -> dict:
    want = ctl.arm_settings(cargs, ctl.labeller_settings(cargs, ctl.train_rows(cargs)))
    out = {"controls": want, "data_seed": args.seed, "lr": args.lr, "k": args.k, "enum_seeds": args.enum_seeds,
           "keep": 0.5}
    return out if args.rank_on == "agora_dev" else {**out, "rank_on": args.rank_on}


def read_rows(path: Path, want: dict) -> list[dict]:
    from bortlab.agora.rows import read_jsonl

    return [r for r in (read_jsonl(path) if path.exists() else []) if r.get("settings") == want]


def shown(path: str) -> str:
    """A path as a committed result row records it: relative to the checkout when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


# ---- the two methods ---------------------------------------------------------------------------------------
def run_theta_loop(args, fixed, want, lock) -> None:
    from bortlab.files import append_jsonl
    from bortlab.pipeline.jobs import last_words, thread_env

    if any(r["method"] == "theta_loop" for r in read_rows(args.out, want)):
        print("Θ loop: finished with these settings, reused", flush=True)
        return
    sweep = args.dir / ("theta_loop" if args.rank_on == "agora_dev" else f"theta_loop_{args.rank_on}")
    sweep.mkdir(parents=True, exist_ok=True)
    axes = [f"optim.lr={','.join(args.lr)}", f"agora.k={','.join(args.k)}"]
    cmd = [sys.executable, str(REPO / "train.py"), "-m", "hydra/sweeper=agora", "hydra.sweeper.keep=0.5",
           f"hydra.sweeper.rank_on={args.rank_on}", f"hydra.sweep.dir={sweep}", *fixed, *axes]
    print(f"Θ loop: {len(thetas(args))} sets in {sweep} (log: {sweep / 'theta_loop.log'})", flush=True)
    with open(sweep / "theta_loop.log", "a") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=thread_env(args.threads), stdout=log, stderr=subprocess.STDOUT)
    result = sweep / "agora_theta.yaml"
    if proc.returncode != 0 or not result.exists():
        text = (sweep / "theta_loop.log").read_text(errors="replace")
        raise RuntimeError(f"the Θ loop failed (exit {proc.returncode}); a rerun resumes it: {last_words(text, 4)}")
    import yaml

    res = yaml.safe_load(result.read_text())
    with lock:
        for rnd in res["rounds"]:
            for job in rnd["ranking"]:
                d = Path(job["dir"])
                summary = json.loads((d / "agora" / "summary.json").read_text())
                append_jsonl(args.out, {"method": "theta_loop", "theta": job["theta"], "round": job["round"],
                                        "seed": args.seed, "agora_dev_score": summary["agora_dev_score"],
                                        "rank_score": job["score"], "dev_accuracy": job["reported"],
                                        "overrides": yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()),
                                        "dir": shown(job["dir"]), "settings": want})
    print(f"Θ loop: done, best {res['best']['theta']} (rank score {res['best']['score']:.4f})", flush=True)


def run_enumeration(args, fixed, want, lock) -> None:
    from bortlab.files import append_jsonl
    from bortlab.pipeline.jobs import run_train

    done = {(tuple(r["theta"]), r["seed"]) for r in read_rows(args.out, want) if r["method"] == "enumeration"}
    todo = [(t, s) for s in args.enum_seeds for t in thetas(args) if (tuple(t), s) not in done]
    print(f"enumeration: {len(done)} jobs on record, {len(todo)} to run", flush=True)
    for n, (theta, seed) in enumerate(todo, 1):
        workdir = args.dir / "enumeration" / ("-".join(o.split("=")[1] for o in theta) + f"-s{seed}")
        shutil.rmtree(workdir, ignore_errors=True)      # a run interrupted before its row was written
        overrides = [*with_seed(fixed, seed), *theta]
        metrics, seconds = run_train(overrides, workdir, args.threads)
        summary = json.loads((workdir / "agora" / "summary.json").read_text())
        score = metrics["dev"]["val/accuracy"]
        on_official = metrics.get("dev_split", "dev") == "dev"
        row = {"method": "enumeration", "theta": theta, "round": None, "seed": seed,
               "agora_dev_score": summary["agora_dev_score"],
               "rank_score": summary["agora_dev_score"] if args.rank_on == "agora_dev" else score,
               "dev_accuracy": score if on_official else None, "overrides": overrides,
               "seconds": round(seconds, 1), "settings": want}
        with lock:
            append_jsonl(args.out, row)
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"enumeration [{n}/{len(todo)}] {theta} seed {seed}: Agora-dev {row['agora_dev_score']:.4f}, "
              f"rank score {row['rank_score']:.4f} ({seconds:.0f} s)", flush=True)


def score_picks(args, want, lock) -> None:
    """rank_on=run: each method's pick, trained again without the tune split, scored once on the official dev."""
    from bortlab.files import append_jsonl
    from bortlab.pipeline.jobs import run_train

    rows = read_rows(args.out, want)
    for m in METHODS:
        if any(r["method"] == m and r.get("final") for r in rows):
            continue
        p = pick([r for r in rows if r["method"] == m and not r.get("final")])
        workdir = args.dir / "final" / m
        shutil.rmtree(workdir, ignore_errors=True)
        metrics, seconds = run_train(official(p["overrides"]), workdir, args.threads)
        with lock:
            append_jsonl(args.out, {"method": m, "final": True, "theta": p["theta"], "round": p["round"],
                                    "seed": p["seed"], "dev_accuracy": metrics["dev"]["val/accuracy"],
                                    "seconds": round(seconds, 1), "settings": want})
        print(f"{m}: its pick {p['theta']} scored once on the official dev: {metrics['dev']['val/accuracy']:.4f}",
              flush=True)


def finished(args, want) -> bool:
    """Every job of these settings is on record: the Θ loop, the enumeration, and (--rank-on run) both picks."""
    rows = read_rows(args.out, want)
    methods = {r["method"] for r in rows if not r.get("final")}
    enumerated = {(tuple(r["theta"]), r["seed"]) for r in rows if r["method"] == "enumeration"}
    finals = {r["method"] for r in rows if r.get("final")}
    return (set(METHODS) <= methods and all((tuple(t), s) in enumerated for s in args.enum_seeds for t in thetas(args))
            and (args.rank_on == "agora_dev" or set(METHODS) <= finals))


def run_all(args, ctl, cargs) -> None:
    if finished(args, settings(args, ctl, cargs)):     # a rerun with nothing left needs no labeller on this disk
        print(f"every job with these settings is on record in {args.out}; nothing to run", flush=True)
        return
    marker = cargs.labeller_dir / ctl.MARKER
    if not (marker.exists() and json.loads(marker.read_text()).get("finished")):
        die(f"no finished labeller in {cargs.labeller_dir}: run bench/bench_agora_controls.py first (it trains "
            "the labeller both benches read), with the same settings.")
    fixed, want, lock = fixed_overrides(ctl, cargs, args.rank_on), settings(args, ctl, cargs), threading.Lock()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    methods = [run_theta_loop, run_enumeration]
    with cf.ThreadPoolExecutor(args.jobs) as pool:      # --jobs 2: the two methods side by side
        futures = [pool.submit(m, args, fixed, want, lock) for m in methods]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        sys.exit("bench_agora_theta.py: " + "; ".join(map(str, errors)))
    if args.rank_on == "run":
        score_picks(args, want, lock)


# ---- the report --------------------------------------------------------------------------------------------
METHODS = ("theta_loop", "enumeration")


def pick(rows: list[dict]) -> dict:
    """The rule both methods use: the job with the best rank score (Agora-dev, or D with --rank-on run; rows
    written before --rank-on existed rank on Agora-dev), the first on a tie."""
    return max(rows, key=lambda r: r.get("rank_score", r["agora_dev_score"]))


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def report(args, ctl, cargs) -> None:
    from bortlab.files import write_atomic

    want = settings(args, ctl, cargs)
    rows = read_rows(args.out, want)
    by = {m: [r for r in rows if r["method"] == m and not r.get("final")] for m in METHODS}
    final = {r["method"]: r["dev_accuracy"] for r in rows if r.get("final")}
    if not all(by.values()):
        die(f"{args.out} lacks {' and '.join(m for m, v in by.items() if not v)} rows made with these settings; run "
            "the bench first (the same command without --report).")
    picks = {m: pick(v) for m, v in by.items()}
    scored = {m: final.get(m, picks[m]["dev_accuracy"]) for m in METHODS}   # the pick's official dev score
    if any(v is None for v in scored.values()):
        die("the picks have no official dev score yet (--rank-on run scores them once at the end): run the bench "
            "first (the same command without --report).")
    lines = ["method,theta,round,seed,agora_dev_score,rank_score,dev_accuracy,picked"]
    for m, v in by.items():
        for r in v:
            dev = f"{r['dev_accuracy']:.6f}" if r["dev_accuracy"] is not None else ""
            lines.append(f"{m},{' '.join(r['theta'])},{r['round'] if r['round'] is not None else ''},{r['seed']},"
                         f"{r['agora_dev_score']:.6f},{r.get('rank_score', r['agora_dev_score']):.6f},{dev},"
                         f"{int(r is picks[m])}")
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.csv, "\n".join(lines) + "\n")
    n_dev = 872                                   # SST-2's official dev split
    print(f"SST-2, data seed {args.seed}, Θ = lr {args.lr} x k {args.k}; official dev accuracy in points "
          f"(binomial SE at 0.8: {100 * math.sqrt(0.8 * 0.2 / n_dev):.1f})")
    ranked = "Agora-dev" if args.rank_on == "agora_dev" else "D (tune split)"
    print(f"| method | jobs | pick (θ) | its {ranked} | its official dev | best official dev of its jobs |")
    print("|---|---|---|---|---|---|")
    for m, v in by.items():
        p = picks[m]
        where = f"round {p['round']}" if p["round"] is not None else f"seed {p['seed']}"
        devs = [r["dev_accuracy"] for r in v if r["dev_accuracy"] is not None]
        print(f"| {m} | {len(v)} | {' '.join(p['theta'])} ({where}) | "
              f"{_pct(p.get('rank_score', p['agora_dev_score']))} | {_pct(scored[m])} | "
              f"{_pct(max(devs)) if devs else 'not scored (tune split)'} |")
    d = scored["theta_loop"] - scored["enumeration"]
    print(f"Θ loop − enumeration, official dev of the picks: {100 * d:+.2f} points (one run each)")
    print(f"wrote {args.csv}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="the data draw (S and H) of bench_agora_controls.py")
    p.add_argument("--theta-lr", dest="lr", nargs="+", default=["5e-5", "1e-4", "2e-4", "4e-4"])
    p.add_argument("--theta-k", dest="k", nargs="+", default=["4", "8"])
    p.add_argument("--enum-seeds", type=int, nargs="+", default=[0, 1], help="training seeds per θ (enumeration)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "agora_theta.jsonl")
    p.add_argument("--csv", type=Path, default=None,
                   help="default docs/figures/agora_theta.csv (agora_theta_run.csv with --rank-on run)")
    p.add_argument("--dir", type=Path, default=REPO / "outputs" / "agora_theta", help="the jobs' run dirs")
    p.add_argument("--jobs", type=int, default=2, help="1: the methods one after the other; 2: side by side")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rank-on", choices=("agora_dev", "run"), default="agora_dev",
                   help="what picks a job: Agora's own dev set H (the paper's reading), or run: D, a tune split of "
                        "|H| rows after H that Agora never reads; each pick is then scored once on the official dev")
    p.add_argument("--report", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--"):]) if "--" in argv else (argv, [])
    args, controls_flags = p.parse_known_args(ours)    # unknown flags: bench_agora_controls.py's settings
    if args.jobs not in (1, 2) or args.threads < 1:
        die(f"--jobs must be 1 or 2 (the two methods) and --threads >= 1, got {args.jobs} and {args.threads}.")
    for name, values in (("lr", args.lr), ("k", args.k)):
        try:
            ok = all(float(v) > 0 for v in values) and len(set(values)) == len(values)
        except ValueError:
            ok = False
        if not ok:
            die(f"--theta-{name} must be distinct positive numbers, got {values}.")
    if len(set(args.enum_seeds)) != len(args.enum_seeds):
        die(f"--enum-seeds must be distinct, got {args.enum_seeds}.")
    ctl = controls()
    cargs = ctl.parse_args([*controls_flags, "--seeds", str(args.seed), *rest])
    args.dir = args.dir.absolute()
    if args.csv is None:
        suffix = "" if args.rank_on == "agora_dev" else f"_{args.rank_on}"
        args.csv = REPO / "docs" / "figures" / f"agora_theta{suffix}.csv"
    report(args, ctl, cargs) if args.report else run_all(args, ctl, cargs)


if __name__ == "__main__":
    main()
