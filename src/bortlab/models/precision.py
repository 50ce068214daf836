"""Inference precisions of a bortlab model: fp32, bf16, int8.

- `bf16`: every weight cast to bfloat16; on CPUs with AVX512-BF16/AMX the matmuls run at several times the
  fp32 rate, and hidden states stay within cosine 0.9998 of fp32 on real text (tests/test_precision.py).
- `int8`: the Transformer layers' QKV, attention-output and FFN-input Linears quantized with torchao (int8
  weights per output channel, int8 activations per token, computed on the fly). torchao is PyTorch's
  maintained quantization library; `torch.ao.quantization.quantize_dynamic` is deprecated and quantizes
  activations per tensor, which on real BERT activations (a few outlier channels) drifts far from fp32.
  Per-token scales keep it faithful (cosine >= 0.99). The FFN's output projection stays fp32: its input (after
  GELU) carries the outliers that dominate BERT's quantization error (Bondarenko et al., 2021); measured on
  400 train rows of MiniLM fine-tuned on RTE/MRPC/SST-2, keeping it cuts the mean |logit change| by 25-30%.
  Embeddings, LayerNorms, the pooler and the head stay fp32 too. It shrinks the quantized weights 4x; whether
  it is faster than bf16 depends on the CPU (docs/benchmarks.md has this machine's figures).

Both keep bortlab's unpadding: only the Linears' weights change.
"""
from __future__ import annotations

import torch

from bortlab.config import SetupError

PRECISIONS = ("fp32", "bf16", "int8")
INT8_KEEP = ("ffn_out",)   # Linears left in fp32 by int8: the FFN output projection (outlier inputs)


def check_precision(precision: str, key: str = "precision") -> str:
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise SetupError(f"{key}={precision!r} is not one of {', '.join(PRECISIONS)}: fp32 (as trained), bf16 "
                         "(fast on CPUs with AVX512-BF16/AMX, faithful), int8 (torchao, 4x smaller layers).")
    return p


def _torchao():
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as e:
        raise SetupError(f"precision=int8 needs torchao ({e}): pip install 'bortlab[int8]'.") from e
    return quantize_, Int8DynamicActivationInt8WeightConfig


def apply_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Put `model` (an Encoder, or anything holding one) into `precision` for inference, in place; returns it
    in eval mode. Callers cast outputs with `.float()` where they need fp32 numbers."""
    precision = check_precision(precision)
    model.eval()
    if precision == "bf16":
        model.to(torch.bfloat16)
    elif precision == "int8":
        quantize_, config = _torchao()
        # the Transformer layers only: that is where the FLOPs are, and where per-token scales are faithful
        quantize_(model, config(), filter_fn=lambda m, name: isinstance(m, torch.nn.Linear)
                  and (name.startswith("layers.") or ".layers." in name) and name.rsplit(".", 1)[-1] not in INT8_KEEP)
    return model
