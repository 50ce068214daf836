"""Each inference path's dev score beside its speed, on fine-tuned runs and their real dev sets.

    python bench/bench_precision.py RUN_DIR [RUN_DIR ...] --threads 2 --out bench/results/precision.jsonl

Paths, all with the run's own weights: bortlab fp32 / bf16 / int8 (`bortlab.models.int8`: 7-bit per-channel
weights, 8-bit per-token activations on oneDNN's kernels, activation outlier columns in fp32); transformers on the exported
classifier (`python -m bortlab.export`) in fp32, in bf16, with torchao int8 on its encoder layers but the FFN
output (bortlab's int8 where PyTorch has no oneDNN kernels, applied to transformers) and with
`torch.ao.quantization.quantize_dynamic` int8 (per-tensor activations: the fastest transformers CPU path,
deprecated); ONNX Runtime on the exported `model.onnx` in fp32 and dynamically quantized to int8 by
`onnxruntime.quantization.quantize_dynamic` (int8 weights per output channel, uint8 activations per tensor). Every path sees the
same batches: the dev split in the datamodule's length-grouped batches of 8, each padded to its longest
row. Paths are interleaved batch by batch in a random order (seeded) per batch; the median over repeats of the whole dev pass is
reported with the speed-up over transformers fp32. Dev scores come from the first pass, through the task's
official metrics, with the number of dev rows whose predicted class differs from bortlab fp32's. One JSON
line per run is appended to --out; runs already there (with these paths, int8 recipe and row layout) are skipped.

On a CPU without AVX512-BF16/AMX (or without VNNI) the bf16 (or torchao int8) paths are emulated, 5-20x slower
than fp32, and are left out: a row records the paths it measured, and only a row with the same paths and the
same int8 recipe counts as done.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bortlab.models import bf16_cpu
from bortlab.models.precision import cpu_name, int8_recipe, native_bf16, native_int8

PATHS = ("bortlab fp32", "bortlab bf16", "bortlab int8", "HF fp32", "HF bf16", "HF int8 torchao",
         "HF int8 dynamic", "ONNX Runtime fp32", "ONNX Runtime int8")


def fast_paths() -> tuple[str, ...]:
    """PATHS less those this CPU only emulates (bf16 without AVX512-BF16/AMX, torchao int8 without VNNI)."""
    slow = set() if native_bf16() else {"bortlab bf16", "HF bf16"}
    slow |= set() if native_int8() else {"HF int8 torchao"}
    return tuple(p for p in PATHS if p not in slow)


ROW = 2      # rows before 2 lack the prediction agreement: a rerun measures them again


def same_settings(row: dict) -> bool:
    """Whether a stored row was measured with the paths this CPU runs, this int8 recipe and this row layout."""
    return (tuple(row["paths"]) == fast_paths() and row.get("int8_recipe") == int8_recipe()
            and row.get("kernels", "attention and LayerNorm: PyTorch's") == bf16_cpu.describe() and row.get("row") == ROW)


def ort_int8(onnx_path: Path) -> Path:
    """The exported graph with its MatMul weights in int8 (per output channel), activations quantized per
    tensor at run time: ONNX Runtime's dynamic quantization, its documented path for Transformers on CPU."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = onnx_path.with_name("model.int8.onnx")
    quantize_dynamic(onnx_path, out, weight_type=QuantType.QInt8, per_channel=True)
    return out


def paths_for(run, export_dir: Path) -> dict:
    """name -> callable(batch) -> float logits."""
    import onnxruntime as ort
    from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

    from bortlab.models.precision import apply_precision

    def bortlab(model):
        return lambda b: model(b["input_ids"], attention_mask=b["attention_mask"],
                               token_type_ids=b.get("token_type_ids")).float()

    cls = AutoModelForMultipleChoice if run.task.kind == "multiple_choice" else AutoModelForSequenceClassification
    hf = cls.from_pretrained(export_dir).eval()
    hf_int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(hf), {torch.nn.Linear}, dtype=torch.qint8)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_encoder import faithful_hf     # one definition of transformers' faithful fast paths
    names = ["input_ids", "attention_mask", "token_type_ids"]

    def transformers(model):
        return lambda b: model(**{k: b[k] for k in names if k in b}).logits.float()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    # ORT's pool spins after each run by default: the next path measured would share the CPUs with it
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {p: ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
                for p, f in (("fp32", export_dir / "model.onnx"), ("int8", ort_int8(export_dir / "model.onnx")))}
    feeds = [i.name for i in sessions["fp32"].get_inputs()]

    def onnx(session):
        return lambda b: torch.from_numpy(session.run(None, {k: b[k].numpy() for k in feeds})[0])
    make = {      # built only for the paths measured here
        "bortlab fp32": lambda: bortlab(run.model),
        "bortlab bf16": lambda: bortlab(apply_precision(copy.deepcopy(run.model), "bf16")),
        "bortlab int8": lambda: bortlab(apply_precision(copy.deepcopy(run.model), "int8")),
        "HF fp32": lambda: transformers(hf),
        "HF bf16": lambda: transformers(faithful_hf(hf, "bf16")),
        "HF int8 torchao": lambda: transformers(faithful_hf(hf, "int8")),
        "HF int8 dynamic": lambda: transformers(hf_int8),
        "ONNX Runtime fp32": lambda: onnx(sessions["fp32"]),
        "ONNX Runtime int8": lambda: onnx(sessions["int8"]),
    }
    assert tuple(make) == PATHS
    return {n: make[n]() for n in fast_paths()}


def bench_run(run_dir: str, data_root: str, repeats: int) -> dict:
    from bortlab.data.datamodule import TaskDataModule
    from bortlab.data.scoring import score
    from bortlab.export import export_run
    from bortlab.finetune.checkpoint import load_finetuned

    run = load_finetuned(run_dir)
    dm = TaskDataModule(run.task, run.tokenizer, root=data_root, max_length=run.max_length, eval_batch_size=8,
                        use_token_types=run.model.encoder.arch.uses_token_types,
                        passage_fit=run.cfg.data.get("passage_fit", "cut"))
    split = dm.dev_splits[0]
    batches = list(dm.eval_loader(split))
    with tempfile.TemporaryDirectory() as tmp:
        paths = paths_for(run, export_run(run_dir, Path(tmp) / "export", onnx=True))
        names = list(paths)
        logits = {n: [] for n in names}
        seconds = {n: [] for n in names}
        rng = random.Random(0)
        with torch.inference_mode():
            for r in range(repeats + 1):              # pass 0 warms up and collects the logits
                total = dict.fromkeys(names, 0.0)
                for b in batches:
                    # a fresh order per batch: no path always follows the same other path (whose thread pool or
                    # cache state would then always tax it)
                    for n in rng.sample(names, len(names)):
                        t0 = time.perf_counter()
                        out = paths[n](b)
                        total[n] += time.perf_counter() - t0
                        if r == 0:
                            logits[n].append(out)
                if r:
                    for n in names:
                        seconds[n].append(total[n])
    index = torch.cat([b["index"] for b in batches])
    order = index.argsort()
    rows = [dm.rows[split][i] for i in index[order].tolist()]
    result = {"run": str(run_dir), "task": run.task.name, "arch": list(run.model.encoder.arch.tuple),
              "rows": len(rows), "batches": len(batches), "paths": {}}
    base = torch.cat(logits["bortlab fp32"])
    for n in names:
        out = torch.cat(logits[n])
        scores = score(run.task, out[order], rows)
        result["paths"][n] = {"dev": scores, "seconds": statistics.median(seconds[n])}
        if out.shape[-1] > 1:         # a class (or choice) per row; a regression has no prediction to flip
            result["paths"][n]["differ"] = int((out.argmax(-1) != base.argmax(-1)).sum())
    return result


def table(results: list[dict]) -> str:
    lines = ["| task | path | dev | Δ vs bortlab fp32 (points) | predictions unlike bortlab fp32's | dev pass (s) | "
             "speed-up over HF fp32 |", "|" + "---|" * 7]
    for res in results:
        base = res["paths"]["bortlab fp32"]["dev"]
        hf = res["paths"]["HF fp32"]["seconds"]
        for n, p in res["paths"].items():
            metric = next(iter(p["dev"]))
            delta = 100 * (p["dev"][metric] - base[metric])
            differ = f"{p['differ']} of {res['rows']}" if "differ" in p else "-"
            lines.append(f"| {res['task']} ({res['rows']} rows) | {n} | {metric} {p['dev'][metric]:.4f} | "
                         f"{delta:+.1f} | {differ} | {p['seconds']:.2f} | {hf / p['seconds']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="fine-tuning run directories")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=os.environ.get("BORTLAB_DATA") or "../shared/data")
    ap.add_argument("--out", type=Path, default=Path("bench/results/precision.jsonl"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as tlog

    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    print(f"python bench/bench_precision.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"torch {torch.__version__}, {args.threads} threads; CPU: {cpu_name()}; int8: {int8_recipe()}; "
          f"{bf16_cpu.describe()}")
    left_out = [p for p in PATHS if p not in fast_paths()]
    if left_out:
        print(f"left out on this CPU (emulated, 5-20x slower than fp32): {', '.join(left_out)}")
    for run_dir in args.runs:
        if any(same_settings(d) and d["run"] == str(run_dir) for d in done):
            continue                            # only a row with these paths and int8 recipe is done
        res = bench_run(run_dir, args.data, args.repeats)
        res["load_after"] = os.getloadavg()[0]
        res["int8_recipe"] = int8_recipe()
        res["kernels"] = bf16_cpu.describe()
        res["cpu"] = cpu_name()
        res["row"] = ROW
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:          # one line per finished run: a rerun skips it
            f.write(json.dumps(res) + "\n")
        done.append(res)
        print(f"{run_dir}: done", flush=True)
    latest = {d["run"]: d for d in done if same_settings(d)}        # the last row per run, in the order asked
    print(table([latest[str(r)] for r in args.runs if str(r) in latest]))
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
