"""Inference precisions of a bortlab model: fp32, bf16, int8.

- `bf16`: every weight cast to bfloat16; on CPUs with AVX512-BF16/AMX the matmuls run at several times the
  fp32 rate, and hidden states stay within cosine 0.9998 of fp32 on real text (tests/test_precision.py).
- `int8`: the Transformer layers' four Linears (QKV, attention output, FFN input and output) in int8 (`bortlab.models.int8`:
  7-bit weights per output channel, 8-bit activations per token computed on the fly, on oneDNN's integer
  kernels, which are fast on any x86 CPU, with or without VNNI). Per-token scales keep it faithful (cosine
  >= 0.99 on real text), where the per-tensor scales of `torch.ao.quantization.quantize_dynamic` (deprecated,
  like the quantized dtypes it builds on) drift far from fp32 on BERT's few outlier channels (Bondarenko et
  al., 2021). The LayerNorm outputs feeding QKV and the FFN carry such channels: each call's 4 largest go
  around the integer kernel in fp32 (`INT8_RECIPE`; on SST-2 text the weakest token's cosine goes from 0.986
  to 0.996). The FFN's output projection is int8 too, with its 8 input columns of largest weights kept in fp32
  around the kernel: without them its few outlier weight columns set every output channel's scale (min token
  cosine 0.986 on SST-2 train text, 0.991 with them; docs/benchmarks.md, "The FFN output in int8").
  Embeddings, LayerNorms, attention, the pooler and the head stay fp32, except on a CPU with
  native bf16 (AVX512-BF16/AMX), where all of these run in bf16 (the int8 kernels' scales and bias stay fp32):
  on a 2-core AVX512-BF16 EPYC that made int8 1.10-1.26x faster (`bench_encoder.py --precisions
  int8,int8-fp32`), at min token cosine 0.9962 (RTE) / 0.9954 (SST-2) to fp32 on all their dev text, against
  0.9955 / 0.9956 with the rest in fp32 (`bench_fidelity.py`).
  Where PyTorch has no oneDNN int8 kernels (non-x86 builds) torchao's int8 dynamic quantization (same scales,
  8-bit weights, no outlier columns) is used instead; it is fast only with VNNI.

Both keep bortlab's unpadding: only the Linears' weights change.

bf16 is fast only where the hardware computes in it (`native_bf16`): on a CPU without AVX512-BF16 or AMX
(e.g. AMD Zen 2/3, most Intel before Cooper Lake) every bf16 matmul is emulated, and bf16 inference and
bf16-mixed training are *slower* than fp32 (5-8x and 18x on an AVX2 EPYC, docs/benchmarks.md).
int8 on oneDNN's kernels needs no special instructions (on AVX2 it is faster than fp32); only the torchao
fallback needs VNNI (`native_int8`): it was 13-21x slower than fp32 on that CPU.
`trainer.precision=auto` (`bortlab.training.training_precision`) picks bf16-mixed only where it is native.
"""
from __future__ import annotations

import functools
import logging

import torch

from bortlab.config import SetupError
from bortlab.models.cpu import cpu_flags

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
# int8: the Linears quantized -> activation outlier columns per call kept in fp32, or (activation outlier columns,
# fixed weight outlier columns) (int8.py's docstring has the measurements); the attention output's input has no
# outliers worth the ops; the FFN output's large weight columns would set its channels' scales
INT8_RECIPE = {"qkv": 4, "attn_out": 0, "ffn_in": 4, "ffn_out": (0, 8)}


def check_precision(precision: str, key: str = "precision") -> str:
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise SetupError(f"{key}={precision!r} is not one of {', '.join(PRECISIONS)}: fp32 (as trained), bf16 "
                         "(fast on CPUs with AVX512-BF16/AMX, faithful), int8 (per-token, 4x smaller layers, fast on x86).")
    return p


@functools.lru_cache(maxsize=None)
def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` computes bf16 matmuls in hardware: CUDA with bf16 support, or a CPU with AVX512-BF16 or
    AMX (what oneDNN's bf16 kernels need; without them PyTorch converts and computes in fp32, slower than fp32)."""
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(f) for f in probes):
        return any(f() for f in probes)
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=None)
def native_int8() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8), which torchao's
    int8 matmuls need to be fast; without them they are far slower than fp32."""
    probe = getattr(torch.cpu, "_is_avx512_vnni_supported", None)
    return bool((callable(probe) and probe()) or cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_name() -> str:
    """This CPU's widest vector unit and its low-precision support, for messages and benchmark records."""
    return (f"{torch.backends.cpu.get_cpu_capability()}, {'native' if native_bf16() else 'no native'} bf16, "
            f"{'with' if native_int8() else 'no'} VNNI")


# measured on a 2-core AVX2 EPYC without either (docs/benchmarks.md, "CPUs without native bf16 or int8")
_SLOW = {"bf16": ("native_bf16", "AVX512-BF16 or AMX", "bf16-mixed training of MiniLM 18x slower than fp32, "
                  "bf16 inference 5-8x slower"),
         "int8": ("native_int8", "AVX512-VNNI, AVX-VNNI or AMX", "torchao int8, which bortlab uses where PyTorch has no oneDNN int8 kernels, 13-21x slower than fp32")}
_warned: set[str] = set()


def warn_if_emulated(kind: str, what: str) -> None:
    """Say once per process that `what` asks for `kind` (bf16 | int8) on a CPU that lacks the instructions."""
    probe, needs, measured = _SLOW[kind]
    if what in _warned or globals()[probe]():      # looked up by name: tests stand in for the CPU
        return
    _warned.add(what)
    log.warning("%s on a CPU without %s (%s): %s has no fast kernels here and runs slower than fp32 (measured on an AVX2 "
                "EPYC: %s). The numbers are as faithful as anywhere, only slow; for speed on this CPU use fp32 "
                "(precision=fp32; for training trainer.precision=32-true, or trainer.precision=auto to choose by "
                "hardware).", what, needs, cpu_name(), kind, measured)


def _torchao():
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as e:
        raise SetupError(f"precision=int8 needs torchao ({e}): pip install 'bortlab[int8]'.") from e
    return quantize_, Int8DynamicActivationInt8WeightConfig


def _int8_rest_in_bf16(model: torch.nn.Module | None = None) -> bool:
    """int8 runs its non-int8 parts in bf16 on a CPU with native bf16 (and in fp32 elsewhere, where bf16 is slow)."""
    on_cpu = model is None or all(t.device.type == "cpu" for t in model.parameters())
    return on_cpu and native_bf16()


def _torchao_names() -> list[str]:
    """The recipe's Linears that torchao's fallback quantizes: those without fixed weight outlier columns (it has no
    such columns, and without them the FFN output projection drifts: min token cosine 0.986 on SST-2 train text)."""
    from bortlab.models.int8 import outlier_counts

    return [n for n, k in INT8_RECIPE.items() if not outlier_counts(k)[1]]


def int8_recipe() -> str:
    """What `precision=int8` does on this PyTorch build, for benchmark records: results of one recipe are not
    results of the other."""
    from bortlab.models import int8, int8_fused

    quantized = "+".join(INT8_RECIPE)
    if int8.available():
        counts = {n: int8.outlier_counts(k) for n, k in INT8_RECIPE.items()}
        side = ", ".join(f"{n} {a}" for n, (a, _) in counts.items() if a)
        fixed = ", ".join(f"{n} {w}" for n, (_, w) in counts.items() if w)
        side += f"; fp32 weight outlier columns: {fixed}" if fixed else ""
        rest = "bf16" if _int8_rest_in_bf16() else "fp32"
        # the same numbers either way, not the same speed: a benchmark row of one is not a row of the other
        around = ("fused C++, output projections with their residual add and LayerNorm" if int8_fused.kernels()
                  is not None else "eager")
        return (f"oneDNN w7/channel a8/token on {quantized}, fp32 activation outlier columns: {side}; the rest {rest}; "
                f"quantization {around}")
    return f"torchao w8/channel a8/token on {'+'.join(_torchao_names())}"


def apply_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Put `model` (an Encoder, or anything holding one) into `precision` for inference, in place; returns it
    in eval mode. Callers cast outputs with `.float()` where they need fp32 numbers."""
    precision = check_precision(precision)
    model.eval()
    if precision == "bf16":
        if all(t.device.type == "cpu" for t in model.parameters()):
            warn_if_emulated("bf16", "precision=bf16")
        model.to(torch.bfloat16)
    elif precision == "int8":
        from bortlab.models import int8

        if int8.available():
            int8.quantize_linears(model, INT8_RECIPE)
            # the rest (embeddings, attention, LayerNorms, pooler, head) in bf16 where the CPU computes in it
            return int8.cast_the_rest(model, torch.bfloat16) if _int8_rest_in_bf16(model) else model
        warn_if_emulated("int8", "precision=int8")
        quantize_, config = _torchao()
        # the Transformer layers only: that is where the FLOPs are, and where per-token scales are faithful
        quantize_(model, config(), filter_fn=lambda m, name: isinstance(m, torch.nn.Linear)
                  and int8.in_layers(name) and name.rsplit(".", 1)[-1] in _torchao_names())
    return model
