"""bf16 inference kernels for CPUs with AVX512-BF16 (`bf16_cpu.cpp`), built on first use: self-attention on
packed rows, and residual add + LayerNorm. Each function here falls back to PyTorch where its kernel does not apply.

bortlab's bf16 and int8 paths hand attention bf16 Q, K and V. PyTorch's CPU flash kernel ran at about a third of
this CPU's bf16 dot-product rate at Bort's shape (8 heads x 128 x 96), and on unpadded batches bortlab called it once
per sequence. The kernel here does the same arithmetic (fp32 scores and softmax, bf16 probabilities times V with
fp32 sums; tests/test_bf16_cpu.py checks it against fp32 attention beside the flash kernel) in one call per
layer: 2.3-2.7x faster per call at 1-8 x 128 (docs/benchmarks.md).

It is used only where it applies: inference (no gradient through it), bf16 rows on the CPU, head size a multiple
of 16, a CPU with AVX512-BF16, and sequences given as packed blocks (bortlab's unpadded layout, or a batch
without padding).
Elsewhere bortlab calls `scaled_dot_product_attention`.

`add_layer_norm` is ATen's arithmetic for a bf16 residual add then LayerNorm, in one call: 1.8-2x faster here.
`BORTLAB_BF16_KERNELS=0` turns both off.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch import nn

from bortlab.models import extensions
from bortlab.models.cpu import cpu_flags

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("bf16_cpu.cpp")


@functools.lru_cache(maxsize=None)
def kernel():
    """The compiled module, or None: turned off, no AVX512-BF16 here, or it could not be built."""
    if not extensions.switched_on("BORTLAB_BF16_KERNELS") or "avx512_bf16" not in cpu_flags():
        return None
    try:
        module = extensions.load(SOURCE, "bortlab's bf16 kernels")
    except Exception as e:          # no compiler, no ninja: SDPA computes the same
        log.warning("bortlab's bf16 kernels could not be built (%s), so bf16 and int8 inference use PyTorch's "
                    "attention and LayerNorm: the same numbers, slower. Fix: install a C++ compiler "
                    "(g++) and ninja (pip install ninja); or set BORTLAB_BF16_KERNELS=0 to silence this.",
                    extensions.reason(e))
        return None
    return module if module.available() else None


def describe() -> str:
    """Which attention and LayerNorm bf16 and int8 inference run here, for benchmark records."""
    return ("attention and add+LayerNorm: bortlab's AVX512-BF16 kernels" if kernel() is not None
            else "attention and LayerNorm: PyTorch's")


def packed_attention(qkv: torch.Tensor, lengths: list[int], heads: int) -> torch.Tensor | None:
    """softmax(q k^T / sqrt(d)) v for each sequence's block of rows in `qkv` (N, 3W) -> (N, W), or None where the
    kernel does not apply (the caller then runs SDPA)."""
    width = qkv.shape[-1] // 3
    d = width // heads
    if qkv.dtype is not torch.bfloat16 or qkv.device.type != "cpu" or d % 16 or d > 256 or qkv.requires_grad:
        return None
    k = kernel()
    if k is None:
        return None
    return k.attention(qkv.contiguous(), lengths, heads, d ** -0.5)


_NONE = torch.empty(0, dtype=torch.bfloat16)


def affine_fp32(ln: nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """ln's weight and bias in fp32, converted once per version of the weights (this runs twice a layer)."""
    w, b = ln.weight, ln.bias
    key = (w._version, w.data_ptr(), b._version, b.data_ptr())
    cached = ln.__dict__.get("_bortlab_fp32")
    if cached is None or cached[0] != key:
        cached = ln.__dict__["_bortlab_fp32"] = (key, w.detach().float().contiguous(), b.detach().float().contiguous())
    return cached[1], cached[2]


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor | None, ln: nn.LayerNorm) -> torch.Tensor:
    """ln(residual + x) (ln(x) when `residual` is None); one kernel call in bf16 inference."""
    k = kernel() if x.dtype is torch.bfloat16 and x.device.type == "cpu" else None
    H = x.shape[-1]
    w, b = ln.weight, ln.bias
    if (k is None or w is None or b is None or w.shape[0] != H or x.dim() != 2
            or (residual is not None and (residual.dtype is not torch.bfloat16 or residual.shape != x.shape))
            or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad
                                             or (residual is not None and residual.requires_grad)))):
        return ln(x if residual is None else residual + x)
    return k.add_layer_norm(x.contiguous(), _NONE if residual is None else residual.contiguous(), *affine_fp32(ln),
                            ln.eps)
