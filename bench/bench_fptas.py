"""FPTAS benchmark: evaluations and W ratio against exhaustive search, and the hypervolume of the (p, i, e)
front against random search and Optuna's NSGA-II at equal evaluation budgets.

    python bench/bench_fptas.py synthetic            # synthetic ABnC instances (seconds to minutes)
    python bench/bench_fptas.py real-train           # train the small real instance exhaustively (SST-2, 48 models; resumable)
    python bench/bench_fptas.py real                 # compare the methods on that table
    python bench/bench_fptas.py all                  # synthetic + real; figures -> docs/figures/fptas_*.png

Every method reads errors from the same table (synthetic: a formula; real: one measured error per
architecture, trained once), so the comparison is at equal budgets and free of training noise across methods.
A method's budget is the number of distinct architectures it evaluates; the FPTAS's budget at each ε sets
the others'. Needs `pip install -e .[bench]` (optuna).
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import time
from pathlib import Path

from bortlab.errors import die
from bortlab.models.arch import PRESETS, Arch
from bortlab.search import SearchSpace, hypervolume, search
from bortlab.search.synthetic import ABnCInstance

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
EPSILONS = [0.05, 0.1, 0.2, 0.5]
SPACES = {
    # the paper's space, on Bort's vocabulary
    "paper": dict(base=PRESETS["bort_paper"], depth=[2, 4, 6, 8, 10, 12], heads=[4, 8, 12, 16], hidden=[512, 768, 1024],
                  intermediate=[256, 512, 768, 1024, 3072]),
    # a fine-grained space: where the O(ε⁻²) cell bound, independent of |Ξ|, pays off
    "fine": dict(base=PRESETS["bort_paper"], depth=list(range(1, 13)), heads=[4, 8, 12, 16],
                 hidden=list(range(256, 1025, 128)), intermediate=list(range(256, 4097, 256))),
    # the small real instance (trained exhaustively by `real-train`)
    # (vocab_size: the MiniLM word pieces that occur in SST-2, set from the data by `real-train`)
    "real": dict(base=Arch(1, 2, 64, 128, max_positions=64), depth=[1, 2, 3], heads=[2, 4], hidden=[64, 128],
                 intermediate=[128, 256]),
}
REAL_TABLE = FIGURES / "fptas_real_sst2.csv"


def space(name: str, **base) -> list[Arch]:
    spec = dict(SPACES[name])
    return SearchSpace.from_config(spec, base=spec.pop("base").replace(**base)).candidates()


class Instance:
    """Errors for every candidate of a space, costs, the exhaustive optimum and the true front."""

    def __init__(self, cands: list[Arch], error):
        self.cands, self.error = cands, dict(zip(cands, map(error, cands)))
        self.p = {a: a.num_params() for a in cands}
        self.i = {a: a.num_ops(128) for a in cands}
        self.pT, self.iT = max(self.p.values()), max(self.i.values())
        self.e_ref = max(self.error.values())
        self.W = {a: (self.pT - self.p[a]) * (self.iT - self.i[a]) / (self.pT * self.iT * self.error[a]) for a in cands}
        self.w_star = max(self.W.values())
        self.hv_star = self.hv(cands)

    def hv(self, evaluated) -> float:
        """Hypervolume of the non-dominated (p/p_T, i/i_T, e/e_max) points of `evaluated`, reference 1.1³."""
        pts = [(self.p[a] / self.pT, self.i[a] / self.iT, self.error[a] / self.e_ref) for a in set(evaluated)]
        return hypervolume(pts, (1.1, 1.1, 1.1))  # dominated points add nothing

    def best_w(self, evaluated) -> float:
        return max(self.W[a] for a in evaluated)


# ---- the methods, each returning the architectures it evaluated ------------------------------------
def run_fptas(inst: Instance, eps: float, rule: str = "abnc", refine: float = 0.0) -> list[Arch]:
    seen = []

    def evaluate(pairs):
        seen.extend(a for a, _ in pairs)
        return [inst.error[a] for a, _ in pairs]

    search(inst.cands, evaluate, eps, representative=rule, refine=refine)
    return seen


def run_random(inst: Instance, budget: int, seed: int) -> list[Arch]:
    return random.Random(seed).sample(inst.cands, budget)


def run_nsga2(inst: Instance, budget: int, seed: int) -> list[Arch]:
    """Optuna's NSGA-II over the grid dimensions, minimising (p, i, e). An invalid tuple (H % A != 0) is a
    failed trial and a repeated architecture is answered from a cache: neither costs budget."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dims = {f: sorted({getattr(a, f) for a in inst.cands}) for f in ("depth", "heads", "hidden", "intermediate")}
    by_tuple = {a.tuple: a for a in inst.cands}
    sampler = optuna.samplers.NSGAIISampler(population_size=max(8, budget // 6), seed=seed)
    study = optuna.create_study(directions=["minimize"] * 3, sampler=sampler)
    seen: dict[Arch, None] = {}
    for _ in range(50 * budget):
        if len(seen) >= budget:
            break
        trial = study.ask()
        arch = by_tuple.get(tuple(trial.suggest_categorical(f, dims[f]) for f in dims))
        if arch is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        seen.setdefault(arch, None)
        study.tell(trial, [inst.p[arch], inst.i[arch], inst.error[arch]])
    return list(seen)


# ---- experiments ------------------------------------------------------------------------------------
def ratio_table(space_name: str, kind: str, seeds: int) -> list[dict]:
    cands = space(space_name)
    rows = []
    insts = [Instance(cands, ABnCInstance.sample(s, cands, kind=kind).error) for s in range(seeds)]
    for eps in EPSILONS:
        for rule in ("abnc", "cheapest"):
            ratios, evals = [], []
            for inst in insts:
                seen = run_fptas(inst, eps, rule)
                ratios.append(inst.best_w(seen) / inst.w_star)
                evals.append(len(seen))
            rows.append(dict(space=space_name, n=len(cands), kind=kind, eps=eps, rule=rule, evals=statistics.mean(evals),
                             ratio_min=min(ratios), ratio_mean=statistics.mean(ratios),
                             below=sum(r < 1 - eps for r in ratios), seeds=seeds))
    return rows


def budget_table(insts: list[Instance], label: str, seeds_per_instance: int = 1) -> list[dict]:
    rows = []
    for eps in EPSILONS:
        acc = {m: {"hv": [], "w": []} for m in ("fptas", "random", "nsga2")}
        budgets = []
        for k, inst in enumerate(insts):
            fptas = run_fptas(inst, eps)
            budget = len(set(fptas))
            budgets.append(budget)
            runs = {"fptas": [fptas]}
            runs["random"] = [run_random(inst, budget, 1000 * k + s) for s in range(seeds_per_instance)]
            runs["nsga2"] = [run_nsga2(inst, budget, 1000 * k + s) for s in range(seeds_per_instance)]
            for m, evaluated in runs.items():
                acc[m]["hv"] += [inst.hv(e) / inst.hv_star for e in evaluated]
                acc[m]["w"] += [inst.best_w(e) / inst.w_star for e in evaluated]
        rows.append(dict(instance=label, eps=eps, budget=statistics.mean(budgets),
                         **{f"{m}_hv": statistics.mean(v["hv"]) for m, v in acc.items()},
                         **{f"{m}_w": statistics.mean(v["w"]) for m, v in acc.items()}))
    return rows


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n### {title}\n")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    sys.stdout.flush()


def plot_synthetic(ratio_rows: list[dict], budget_rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for (sp, kind), marker in zip(sorted({(r["space"], r["kind"]) for r in ratio_rows}), "osd^"):
        rows = [r for r in ratio_rows if (r["space"], r["kind"], r["rule"]) == (sp, kind, "abnc")]
        n = rows[0]["n"]
        axes[0].plot([r["eps"] for r in rows], [r["evals"] / n for r in rows], marker=marker, label=f"{sp} (|Ξ|={n}), {kind}")
        axes[1].plot([r["eps"] for r in rows], [r["ratio_min"] for r in rows], marker=marker, label=f"{sp}, {kind}")
    axes[1].plot(EPSILONS, [1 - e for e in EPSILONS], "k--", label="1 − ε")
    axes[0].set(xscale="log", xlabel="ε", ylabel="evaluations / |Ξ|", title="FPTAS evaluations")
    axes[1].set(xscale="log", xlabel="ε", ylabel="min W(FPTAS) / W*", title="worst approximation ratio over seeds")
    for ax in axes[:2]:
        ax.set_xticks(EPSILONS, [str(e) for e in EPSILONS])
        ax.minorticks_off()
    for label, line in zip(sorted({r["instance"] for r in budget_rows}), ("-", "--", ":")):
        rows = [r for r in budget_rows if r["instance"] == label]
        for m, color, marker in (("fptas", "tab:red", "o"), ("random", "tab:gray", "s"), ("nsga2", "tab:blue", "d")):
            axes[2].plot([r["budget"] for r in rows], [r[f"{m}_hv"] for r in rows], line, color=color, marker=marker,
                         label=f"{m}, {label}")
    axes[2].set(xscale="log", xlabel="evaluations (budget)", ylabel="HV / HV(exhaustive)", title="front hypervolume at equal budget")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "fptas_synthetic.png", dpi=110)
    print(f"\nwrote {FIGURES / 'fptas_synthetic.png'}")


def synthetic(seeds: int) -> None:
    ratio_rows = []
    for sp, n_seeds in (("paper", seeds), ("fine", max(5, seeds // 5))):
        for kind in ("capacity", "shape"):
            t = time.time()
            ratio_rows += ratio_table(sp, kind, n_seeds)
            print(f"[{sp}/{kind}: {time.time() - t:.0f}s]", file=sys.stderr)
    print_table(ratio_rows, "W ratio and evaluations vs ε (synthetic ABnC instances, one θ)")
    budget_rows = []
    for sp, n in (("paper", 10), ("fine", 3)):
        cands = space(sp)
        insts = [Instance(cands, ABnCInstance.sample(s, cands).error) for s in range(n)]
        budget_rows += budget_table(insts, f"{sp}/capacity")
    print_table(budget_rows, "Equal budgets: hypervolume and best W relative to exhaustive (means over instances)")
    plot_synthetic(ratio_rows, budget_rows)


# ---- equal evaluations: FPTAS (ε pass, and ε pass + refinement) vs random search vs NSGA-II ----------
COMPARE_EPS = [0.1, 0.2, 0.5]
FAMILIES = ["capacity", "shape", "noisy", "threshold"]
RESULTS = ROOT / "bench" / "results" / "fptas_compare.jsonl"


def compare(spaces: list[str], families: list[str], seeds: int, refines: list[float], out: Path) -> list[dict]:
    """One line per (space, family, ε, instance seed, refine, method) in `out` (jsonl, resumable: lines
    already there are not recomputed). Each method gets the distinct architectures the FPTAS evaluated."""
    import json

    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done[(r["space"], r["family"], r["eps"], r["seed"], r["refine"], r["method"])] = r
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        for sp in spaces:
            real_errors = _real_errors() if sp == "real" else _validation_errors() if sp == "validation" else None
            cands = space(sp) if real_errors is None else real_errors[0]
            for kind in (families if real_errors is None else ["sst2" if sp == "real" else "kd-proxy"]):
                for seed in range(seeds):
                    inst = None if real_errors is None else real_errors[1]  # one real instance; seeds: the baselines'
                    for eps in COMPARE_EPS:
                        for refine in refines:
                            keys = [(sp, kind, eps, seed, refine, m) for m in ("fptas", "random", "nsga2")]
                            if all(k in done for k in keys):
                                continue
                            t = time.time()
                            inst = inst or Instance(cands, ABnCInstance.sample(seed, cands, kind=kind).error)
                            fptas = run_fptas(inst, eps, refine=refine)
                            budget = len(set(fptas))
                            runs = {"fptas": fptas, "random": run_random(inst, budget, seed),
                                    "nsga2": run_nsga2(inst, budget, seed)}
                            for key, evaluated in zip(keys, runs.values()):
                                row = dict(zip(("space", "family", "eps", "seed", "refine", "method"), key), n=len(cands),
                                           budget=budget, w=inst.best_w(evaluated) / inst.w_star,
                                           hv=inst.hv(evaluated) / inst.hv_star)
                                done[key] = row
                                f.write(json.dumps(row) + "\n")
                            f.flush()
                            print(f"[{sp}/{kind} seed {seed} eps {eps} refine {refine}: budget {budget}, "
                                  f"{time.time() - t:.1f}s]", file=sys.stderr)
    return list(done.values())


def compare_table(rows: list[dict]) -> list[dict]:
    """Per (space, family, ε, refine) over instance seeds: W ratio mean and worst, HV ratio mean, each as
    FPTAS / random / NSGA-II (bold: the FPTAS at least as good as both), and the FPTAS's count below 1 − ε."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        g = groups.setdefault((r["space"], r["family"], r["eps"], r["refine"]), {})
        g.setdefault(r["method"], []).append(r)
    order = {k: j for j, k in enumerate(FAMILIES)}
    out = []
    for (sp, kind, eps, refine), g in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][2], kv[0][3])):
        row = {"space": f"{sp} ({g['fptas'][0]['n']})", "family": kind, "ε": eps, "refine": refine,
               "evaluations": round(statistics.mean(r["budget"] for r in g["fptas"]))}
        for label, key, agg in (("W mean", "w", statistics.mean), ("W worst", "w", min), ("HV mean", "hv", statistics.mean)):
            f, r_, n = (agg([r[key] for r in g[m]]) for m in ("fptas", "random", "nsga2"))
            mark = "**" if f >= max(r_, n) - 5e-4 else ""
            row[f"{label} FPTAS / random / NSGA-II"] = f"{mark}{f:.3f}{mark} / {r_:.3f} / {n:.3f}"
        row["FPTAS < 1 − ε"] = f"{sum(r['w'] < 1 - eps for r in g['fptas'])}/{len(g['fptas'])}"
        out.append(row)
    return out


# ---- the small real instance -------------------------------------------------------------------------
REAL = dict(task="SST-2", steps=120, batch=32, max_len=48, lr=1e-3, seed=0)


def _sst2(data_root: Path, tokenizer):
    """SST-2 train and dev as token-id lists, re-indexed onto the word pieces that occur in them (a compact
    vocabulary: the same model, without 20k embedding rows that would never be used)."""
    splits = []
    for split in ("train", "dev"):
        with open(data_root / "SST-2" / f"{split}.tsv", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        ids = tokenizer([r[0] for r in rows], truncation=True, max_length=REAL["max_len"])["input_ids"]
        splits.append((ids, [int(r[1]) for r in rows]))
    vocab = {tokenizer.pad_token_id: 0}
    for ids, _ in splits:
        for seq in ids:
            for t in seq:
                vocab.setdefault(t, len(vocab))
    return [([[vocab[t] for t in seq] for seq in ids], labels) for ids, labels in splits], len(vocab)


def _batch(seqs):
    import torch

    width = max(map(len, seqs))
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    for k, seq in enumerate(seqs):
        ids[k, :len(seq)] = torch.tensor(seq)
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def train_one(arch: Arch, data) -> float:
    """1 − SST-2 dev accuracy after REAL['steps'] steps from scratch of a BERT of shape `arch`."""
    import torch
    from transformers import BertForSequenceClassification

    from bortlab.search.cost import bert_config

    torch.manual_seed(REAL["seed"])
    cfg = bert_config(arch)
    cfg.num_labels = 2
    model = BertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=REAL["lr"], weight_decay=0.01)
    steps, warm = REAL["steps"], REAL["steps"] // 10
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, (steps - s) / (steps - warm)))
    (train_x, train_y), (dev_x, dev_y) = data
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(REAL["seed"])).tolist()
    model.train()
    for step in range(steps):
        idx = order[step * REAL["batch"]:(step + 1) * REAL["batch"]]
        loss = model(**_batch([train_x[k] for k in idx]), labels=torch.tensor([train_y[k] for k in idx])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad()
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(dev_y), 128):
            pred = model(**_batch(dev_x[s:s + 128])).logits.argmax(-1)
            correct += (pred == torch.tensor(dev_y[s:s + 128])).sum().item()
    return 1.0 - correct / len(dev_y)


def real_train(data_root: Path) -> None:
    """Train every architecture of the real space once; rows are appended, so an interrupted run resumes."""
    from transformers import AutoTokenizer

    from bortlab.config import minilm_path

    data, vocab_size = _sst2(data_root, AutoTokenizer.from_pretrained(minilm_path()))
    done = {tuple(int(r[k]) for k in ("depth", "heads", "hidden", "intermediate")) for r in _read_real()}
    FIGURES.mkdir(parents=True, exist_ok=True)
    new = not REAL_TABLE.exists()
    with open(REAL_TABLE, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["depth", "heads", "hidden", "intermediate", "vocab_size", "error", "seconds", *REAL])
        for arch in space("real", vocab_size=vocab_size):
            if arch.tuple in done:
                continue
            t = time.time()
            err = train_one(arch, data)
            w.writerow([*arch.tuple, vocab_size, f"{err:.6f}", f"{time.time() - t:.1f}", *REAL.values()])
            f.flush()
            print(f"{arch}: error {err:.4f} ({time.time() - t:.0f}s)", file=sys.stderr)


def _real_errors() -> tuple[list[Arch], Instance]:
    """The small real instance (`real-train`'s table) as candidates and an Instance."""
    rows = _read_real()
    if not rows:
        die("No real table: run `python bench/bench_fptas.py real-train` first.")
    table = {tuple(int(r[k]) for k in ("depth", "heads", "hidden", "intermediate")): float(r["error"]) for r in rows}
    cands = space("real", vocab_size=int(rows[0]["vocab_size"]))
    return cands, Instance(cands, lambda a: table[a.tuple])


VALIDATION_TABLE = FIGURES / "fptas_proxy_validation.csv"


def _validation_errors() -> tuple[list[Arch], Instance]:
    """The proxy validation table (bench/bench_proxy.py --report): its MiniLM sub-architectures, each with the
    KD proxy's mean over seeds as its error (what a sweep on experiment=proxy_kd sees)."""
    if not VALIDATION_TABLE.exists():
        die(f"No {VALIDATION_TABLE}: run `python bench/bench_proxy.py --corpus corpus.txt --report` first.")
    rows = list(csv.DictReader(open(VALIDATION_TABLE)))
    base = PRESETS["minilm"]
    table = {base.replace(**dict(zip(("depth", "heads", "hidden", "intermediate"), map(int, r["arch"].split("-")))),
                          head_dim=32): float(r["proxy_mean"]) for r in rows}
    cands = list(table)
    return cands, Instance(cands, table.__getitem__)


def _read_real() -> list[dict]:
    return list(csv.DictReader(open(REAL_TABLE))) if REAL_TABLE.exists() else []


def real(seeds: int) -> None:
    from bortlab.search.report import plot_pareto

    rows = _read_real()
    table = {tuple(int(r[k]) for k in ("depth", "heads", "hidden", "intermediate")): float(r["error"]) for r in rows}
    cands = space("real", vocab_size=int(rows[0]["vocab_size"])) if rows else space("real")
    missing = [a for a in cands if a.tuple not in table]
    if missing:
        die(f"{len(missing)} of {len(cands)} architectures are not trained yet: run `python bench/bench_fptas.py real-train` first.")
    inst = Instance(cands, lambda a: table[a.tuple])
    rows = []
    for eps in EPSILONS + [1e-9]:
        seen = run_fptas(inst, eps)
        rows.append(dict(eps=eps, evals=len(seen), n=len(cands), ratio=inst.best_w(seen) / inst.w_star))
    print_table(rows, f"Real instance (SST-2, {REAL['steps']} steps from scratch, |Ξ|={len(cands)}): FPTAS vs exhaustive")
    print_table(budget_table([inst], "real/sst2", seeds_per_instance=seeds),
                f"Real instance, equal budgets (random and NSGA-II: means over {seeds} seeds)")
    result = search(cands, lambda pairs: [table[a.tuple] for a, _ in pairs], 0.2)
    plot_pareto(FIGURES / "fptas_real_sst2.png", result, title=f"FPTAS ε=0.2 on the real SST-2 instance "
                f"({len(cands)} candidates, {result.n_evaluations} evaluations; best {result.best})")
    print(f"\nwrote {FIGURES / 'fptas_real_sst2.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["synthetic", "compare", "real-train", "real", "all"])
    ap.add_argument("--spaces", default="paper,fine",
                    help="compare: comma-separated spaces (paper, fine, real, validation: the proxy validation table)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="compare: comma-separated synthetic families")
    ap.add_argument("--refine", default="0,1", help="compare: refinement budgets (multiples of the epsilon pass)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="compare: jsonl of per-instance results (resumable)")
    ap.add_argument("--seeds", type=int, default=50, help="synthetic instances per space (real: seeds of the baselines)")
    # BORTLAB_DATA is the root holding glue/ and superglue/, as everywhere else in bortlab
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("BORTLAB_DATA", ROOT.parent / "shared" / "data")) / "glue",
                    help="the GLUE directory holding SST-2/ (default $BORTLAB_DATA/glue or ../shared/data/glue)")
    args = ap.parse_args()
    if args.what in ("compare", "real", "all"):
        try:
            import optuna  # noqa: F401  (NSGA-II, one of the baselines)
        except ImportError:
            die(f"`{args.what}` runs Optuna's NSGA-II as a baseline, and optuna is not installed: "
                "`pip install -e '.[bench]'` (or `pip install optuna`), then run the same command again.")
    if args.what == "real-train" and not (args.data / "SST-2" / "train.tsv").exists():
        die(f"no SST-2 train split under {args.data}: pass --data DIR (the GLUE directory holding SST-2/) or set "
            "BORTLAB_DATA to the directory holding glue/.")
    if args.what in ("synthetic", "all"):
        synthetic(args.seeds)
    if args.what == "compare":
        rows = compare(args.spaces.split(","), args.families.split(","), args.seeds,
                       [float(r) for r in args.refine.split(",")], args.out)
        print_table(compare_table(rows), "Equal evaluations: W ratio to the exhaustive optimum and hypervolume ratio")
    if args.what == "real-train":
        real_train(args.data)
    if args.what in ("real", "all"):
        real(min(args.seeds, 20))


if __name__ == "__main__":
    main()
