"""This CPU's matmul rate in fp32, bf16 and int8 at the shapes bort_paper and BERT-large run.

    python bench/bench_roofline.py --threads 2

The ceiling any encoder path can reach here: a forward pass is mostly these matmuls (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import time

import torch

# (k, n) of the Linears: bort_paper (H 768, I 1024: QKV, attention out, FFN in, FFN out) and BERT-large's FFN
SHAPES = ((768, 2304), (768, 1024), (1024, 768), (1024, 4096), (4096, 1024))


def rate(m: int, k: int, n: int, dtype: torch.dtype, reps: int) -> float:
    """GFLOP/s of an (m, k) @ (k, n) product, after 5 warm-up calls."""
    if dtype == torch.int8:
        a, b = torch.randint(-128, 127, (m, k), dtype=dtype), torch.randint(-128, 127, (k, n), dtype=dtype)
        mm = torch._int_mm
    else:
        a, b, mm = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype), torch.mm
    for _ in range(5):
        mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        mm(a, b)
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; G(FL)OP/s of (m, k) @ (k, n)")
    print("| m | k | n | fp32 | bf16 | int8 (_int_mm) | bf16 / fp32 |\n|---|---|---|---|---|---|---|")
    for m in (128, 1024):
        for k, n in SHAPES:
            r = {d: rate(m, k, n, d, args.reps) for d in (torch.float32, torch.bfloat16, torch.int8)}
            print(f"| {m} | {k} | {n} | {r[torch.float32]:.0f} | {r[torch.bfloat16]:.0f} | {r[torch.int8]:.0f} | "
                  f"{r[torch.bfloat16] / r[torch.float32]:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
