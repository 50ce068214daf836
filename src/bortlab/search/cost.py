"""The cost model of the FPTAS: p(ξ) = trainable parameters, i(ξ) = inference cost.

Both are analytic by default (the paper's choice: machine independent, O(1) per architecture, no training):
p is `Arch.num_params` (net, or *effective* = without embeddings) and i is `Arch.num_ops` at a reference
sequence length. `latency=True` replaces i by the measured forward time on a device; that costs a model
build per architecture and is noisy, so it is cached and off by default.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from bortlab.models.arch import Arch
from bortlab.search.space import SearchError


@dataclass(frozen=True)
class CostModel:
    seq_len: int = 128          # reference length for the op count (and the latency batch)
    effective: bool = False     # True: p without the embedding tables (the paper's "effective" size)
    latency: bool = False       # True: i = median forward latency in seconds instead of the op count
    device: str = "cpu"
    batch: int = 1
    repeats: int = 5
    _latencies: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch < 1 or self.repeats < 1:
            raise SearchError(f"CostModel needs seq_len, batch and repeats >= 1, got {self.seq_len}, {self.batch}, {self.repeats}.")

    def params(self, arch: Arch) -> float:
        return float(arch.num_params(non_embedding=self.effective))

    def ops(self, arch: Arch) -> float:
        if not self.latency:
            return float(arch.num_ops(self.seq_len))
        if arch not in self._latencies:
            self._latencies[arch] = measure_latency(arch, self.seq_len, self.batch, self.device, self.repeats)
        return self._latencies[arch]

    def describe(self) -> str:
        p = "effective parameters" if self.effective else "parameters"
        i = f"forward latency (s, {self.device}, batch {self.batch})" if self.latency else "forward FLOPs"
        return f"p = {p}, i = {i} at sequence length {self.seq_len}"


def build_model(arch: Arch):
    """A torch module with `arch`'s shape: bortlab's Encoder when available, else a transformers BertModel
    (identical layer structure; cannot express an explicit head_dim != hidden / heads)."""
    try:
        from bortlab.models.encoder import Encoder  # written in parallel; fall back until it exists
        return Encoder(arch)
    except ImportError:
        pass
    if arch.head_dim is not None and arch.head_dim * arch.heads != arch.hidden:
        raise SearchError(f"Measuring latency of {arch} needs bortlab.models.encoder.Encoder (head_dim != hidden/heads).")
    from transformers import BertModel

    return BertModel(bert_config(arch), add_pooling_layer=arch.pooler)


def bert_config(arch: Arch):
    """The transformers BertConfig with the same shape as `arch` (used for latency and by the tests)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=arch.vocab_size, hidden_size=arch.hidden, num_hidden_layers=arch.depth,
        num_attention_heads=arch.heads, intermediate_size=arch.intermediate, hidden_act=arch.hidden_act,
        max_position_embeddings=arch.max_positions, type_vocab_size=max(arch.type_vocab_size, 1),
        layer_norm_eps=arch.layer_norm_eps, pad_token_id=arch.pad_token_id,
    )


def measure_latency(arch: Arch, seq_len: int = 128, batch: int = 1, device: str = "cpu", repeats: int = 5) -> float:
    """Median wall time (s) of one forward pass of an untrained model of shape `arch` on `device`."""
    import torch

    model = build_model(arch).to(device).eval()
    ids = torch.randint(0, arch.vocab_size, (batch, seq_len), device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        model(ids)  # warm-up: allocator, kernels, lazy init
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(ids)
            sync()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
