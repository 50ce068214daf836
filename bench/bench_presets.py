"""Bort's claim on this CPU: every preset's speed-up over BERT-large (transformers fp32) beside its op-count ratio.

    python bench/bench_presets.py --threads 2 --repeats 5

Each preset is bortlab's Encoder (random weights: speed does not depend on their values) in fp32 and the
`--precisions` given (default bf16; int8 = `bortlab.models.int8`, fast without VNNI too);
the baseline is transformers' BertModel with BERT-large's shape in fp32 (sdpa). Workloads: 1 x 128 and
8 x 128 random ids, no padding. Every call of every model is interleaved in a seeded random order; the table
shows the median ms per call and the speed-up = BERT-large HF fp32 time / this time. The op ratio is
`Arch.num_ops(128)` of BERT-large over the preset's: what the speed-up would be if time followed FLOPs.
`--compile` adds each preset in bf16 through `torch.compile` (inductor, weights frozen and prepacked for
oneDNN), one graph per shape: an exploration of what compilation buys, not a bortlab inference path yet.
"""
from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import time

import torch

from bortlab.models.arch import PRESETS, Arch
from bortlab.models.encoder import Encoder
from bortlab.models.precision import apply_precision


def models(names: list[str], precisions: list[str], compiled: bool = False) -> dict:
    from transformers import BertModel

    from bortlab.models.hf import hf_config_from_arch

    torch.manual_seed(0)
    out = {"BERT-large HF fp32": BertModel(hf_config_from_arch(Arch.preset("bert_large"))).eval()}
    for n in names:
        enc = Encoder(Arch.preset(n)).eval()
        out[f"{n} fp32"] = enc
        for p in precisions:
            out[f"{n} {p}"] = apply_precision(copy.deepcopy(enc), p)
        if compiled:
            import torch._inductor.config as inductor

            inductor.freezing = True          # weights become constants: oneDNN prepacks them once
            out[f"{n} bf16 compiled"] = torch.compile(apply_precision(copy.deepcopy(enc), "bf16"), dynamic=False)
    return out


def call(model, ids):
    with torch.inference_mode():
        return model(ids, attention_mask=torch.ones_like(ids))


def time_all(ms: dict, batch: int, length: int, repeats: int) -> dict[str, float]:
    ids = torch.randint(1000, 30000, (batch, length), generator=torch.Generator().manual_seed(0))
    names, rng = list(ms), random.Random(0)
    for n in names:                                   # warm-up: allocations, oneDNN kernels chosen
        call(ms[n], ids)
    samples = {n: [] for n in names}
    for _ in range(repeats):
        for n in rng.sample(names, len(names)):
            t0 = time.perf_counter()
            call(ms[n], ids)
            samples[n].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(v) for n, v in samples.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--presets", default="bert_large,bert_base,bort,bort_paper,minilm")
    ap.add_argument("--precisions", default="bf16", help="bortlab precisions besides fp32: bf16, int8 (comma-separated)")
    ap.add_argument("--compile", action="store_true", help="also time bf16 through torch.compile (inductor)")
    args = ap.parse_args(argv)
    extra = [p for p in args.precisions.split(",") if p and p != "fp32"]
    bad = [p for p in extra if p not in ("bf16", "int8")]
    if bad:
        ap.error(f"--precisions {','.join(bad)}: the precisions are bf16 and int8 (fp32 is always timed)")
    torch.set_num_threads(args.threads)
    names = [n for n in args.presets.split(",") if n in PRESETS]
    print(f"python bench/bench_presets.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"torch {torch.__version__}, {args.threads} threads\n")
    ms = models(names, extra, args.compile)
    precisions = ("fp32", *extra, *(("bf16 compiled",) if args.compile else ()))
    large_ops = Arch.preset("bert_large").num_ops(128)
    results = {w: time_all(ms, b, 128, args.repeats) for w, b in (("1x128", 1), ("8x128", 8))}
    print("| preset | ⟨D, A, H, I⟩ | op ratio | " + " | ".join(f"{w} {p} ms (speed-up)" for w in results
                                                           for p in precisions) + " |")
    print("|" + "---|" * (3 + len(precisions) * len(results)))
    base = {w: r["BERT-large HF fp32"] for w, r in results.items()}
    print("| BERT-large, transformers | 24, 16, 1024, 4096 | 1.0 | " +
          " | ".join(f"{base[w]:.1f} (1.00x)" + " | -" * (len(precisions) - 1) for w in results) + " |")
    for n in names:
        arch = Arch.preset(n)
        cells = [f"{results[w][f'{n} {p}']:.1f} ({base[w] / results[w][f'{n} {p}']:.2f}x)"
                 for w in results for p in precisions]
        print(f"| {n} | {', '.join(map(str, arch.tuple))} | {large_ops / arch.num_ops(128):.1f} | " +
              " | ".join(cells) + " |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
