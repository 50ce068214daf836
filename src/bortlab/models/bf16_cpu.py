"""bf16 inference kernels for CPUs with AVX512-BF16 (`bf16_cpu.cpp`), built on first use: self-attention on
packed rows, and residual add + LayerNorm. Each function here falls back to PyTorch where its kernel does not apply.

bortlab's bf16 and int8 paths hand attention bf16 Q, K and V. PyTorch's CPU flash kernel ran at about a third of
this CPU's bf16 dot-product rate at Bort's shape (8 heads x 128 x 96), and on unpadded batches bortlab called it once
per sequence. The kernel here does the same arithmetic (fp32 scores and softmax, bf16 probabilities times V with
fp32 sums; tests/test_bf16_cpu.py checks it against fp32 attention beside the flash kernel) in one call per
layer: 2.0-2.3x faster per call at 1-8 x 128 (docs/benchmarks.md).

It is used only where it applies: inference (no gradient through it), bf16 rows on the CPU, head size a multiple of 16, a CPU
with AVX512-BF16, and sequences given as packed blocks (bortlab's unpadded layout, or a batch without padding).
Elsewhere bortlab calls `scaled_dot_product_attention`.

`add_layer_norm` is ATen's arithmetic for a bf16 residual add then LayerNorm, in one call: 1.8-2x faster here.
`BORTLAB_BF16_KERNELS=0` turns both off.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
from torch import nn

from bortlab.models import extensions
from bortlab.models.cpu import cpu_flags

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("bf16_cpu.cpp")


def enabled() -> bool:
    return os.environ.get("BORTLAB_BF16_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=None)
def kernel():
    """The compiled module, or None: turned off, no AVX512-BF16 here, or it could not be built."""
    if not enabled() or "avx512_bf16" not in cpu_flags():
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


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor | None, ln: nn.LayerNorm) -> torch.Tensor:
    """ln(residual + x) (ln(x) when `residual` is None); one kernel call in bf16 inference."""
    H = x.shape[-1]
    if (x.dtype is not torch.bfloat16 or x.device.type != "cpu" or ln.weight is None or ln.weight.shape != (H,)
            or (residual is not None and (residual.dtype is not torch.bfloat16 or residual.shape != x.shape))
            or (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, residual, ln.weight)))):
        k = None
    else:
        k = kernel()
    if k is None:
        return ln(x if residual is None else residual + x)
    r = _NONE if residual is None else residual.reshape(-1, H).contiguous()
    return k.add_layer_norm(x.reshape(-1, H).contiguous(), r, ln.weight, ln.bias, ln.eps).view(x.shape)
