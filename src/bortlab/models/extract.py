"""Sub-architecture extraction: a smaller ⟨D, A, H, I⟩ that inherits its weights from a trained source model.

The target is built at its own shape and filled with sliced copies of the source's tensors (never a masked
full-size model). What is kept:

* **layers** - `uniform` (default): D_t layers evenly spaced over the source's D_s, both ends included
  (layer round(i·(D_s−1)/(D_t−1)); D_t = 1 keeps layer 0); `first` / `last`: the bottom / top D_t; or an
  explicit list of source layer indices.
* **heads** (per layer), **FFN neurons** (per layer), **hidden dimensions** (one set for the whole residual
  stream: embeddings, every layer, pooler, MLM head) and, when the target's head size is smaller, **head
  dimensions**. With `importance="magnitude"` (default) each is ranked by a data-free weight score:
    - head h: ‖W_O[:, h] · W_V[h]‖_F, the norm of the head's value→output map (how much it can write);
    - FFN neuron j: ‖W_in[j, :]‖ · ‖W_out[:, j]‖ (its input sensitivity times its output reach);
    - hidden dimension k: Σ |γ_k| over the embedding LayerNorm and both LayerNorms of every kept layer (the
      scale each LayerNorm gives that coordinate of the residual stream);
    - head dimension i: ‖W_Q[i]‖·‖W_K[i]‖ for the query/key dimensions, ‖W_V[i]‖·‖W_O[:, i]‖ for value/output
      ones (the two sets are chosen separately; queries and keys must share theirs).
  `importance="first"` keeps the first n of each instead (a naive prefix slice, as a baseline).
  Kept units stay in source order, so extracting the source's own shape is the identity, bit for bit.
* When the head size shrinks from d_s to d_t, the query rows are scaled by sqrt(d_t/d_s): the target's
  attention divides scores by sqrt(d_t), the source's by sqrt(d_s), and the kept dimensions should see the
  source's softmax temperature.

Everything the tuple does not describe (vocabulary, positions, token types, LayerNorm eps, activation, pad id,
pooler) is inherited from the source; the target's dropout rates are used.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from typing import Sequence

import torch

from bortlab.models.arch import Arch, ArchError
from bortlab.models.encoder import Encoder
from bortlab.models.mlm import MaskedLM, MLMHead, resolve_checkpoint

log = logging.getLogger(__name__)
IMPORTANCE = ("magnitude", "first")
LAYER_CHOICES = ("uniform", "first", "last")


# ---- which units to keep ---------------------------------------------------------------------------
def choose_layers(source_depth: int, depth: int, how: str | Sequence[int] = "uniform") -> list[int]:
    if not isinstance(how, str):
        layers = [int(i) for i in how]
        if len(layers) != depth or len(set(layers)) != depth or not all(0 <= i < source_depth for i in layers):
            raise ArchError(f"layers={list(how)} must be {depth} distinct source layer indices in [0, {source_depth}).")
        return layers
    if how == "first":
        return list(range(depth))
    if how == "last":
        return list(range(source_depth - depth, source_depth))
    if how != "uniform":
        raise ArchError(f"layers={how!r}: choose one of {LAYER_CHOICES} or give a list of source layer indices.")
    if depth == 1:
        return [0]
    return [int(i * (source_depth - 1) / (depth - 1) + 0.5) for i in range(depth)]


def _top(scores: torch.Tensor, k: int, importance: str) -> torch.Tensor:
    """Indices of the k best units, in increasing (source) order."""
    if importance == "first" or k == scores.numel():
        return torch.arange(k, device=scores.device)
    return scores.topk(k).indices.sort().values


def _head_scores(layer, A: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(head scores (A,), query/key dim scores (A, d), value/output dim scores (A, d))."""
    H = layer.attn_out.out_features
    q, k, v = layer.qkv.weight.detach().float().view(3, A, d, H).unbind(0)          # (A, d, H) each
    o = layer.attn_out.weight.detach().float().view(H, A, d).permute(1, 2, 0)       # (A, d, H): W_O[:, h] as rows
    head = torch.stack([torch.linalg.matrix_norm(o[h].T @ v[h]) for h in range(A)])  # ‖W_O,h W_V,h‖_F
    qk = q.norm(dim=-1) * k.norm(dim=-1)
    vo = v.norm(dim=-1) * o.norm(dim=-1)
    return head, qk, vo


# ---- extraction ----------------------------------------------------------------------------------------
def target_arch(source: Arch, target: Arch | Sequence[int]) -> Arch:
    """The source's Arch with the target's ⟨D, A, H, I⟩ (and head_dim, dropout); ArchError when larger."""
    if not isinstance(target, Arch):
        D, A, H, I = target
        target = Arch(D, A, H, I)
    arch = source.replace(depth=target.depth, heads=target.heads, hidden=target.hidden,
                          intermediate=target.intermediate, head_dim=target.head_dim,
                          dropout=target.dropout, attention_dropout=target.attention_dropout)
    too_big = [f"{name} {t} > {s}" for name, t, s in (
        ("depth", arch.depth, source.depth), ("heads", arch.heads, source.heads),
        ("hidden", arch.hidden, source.hidden), ("intermediate", arch.intermediate, source.intermediate),
        ("head size (hidden/heads or head_dim)", arch.dim_head, source.dim_head)) if t > s]
    if too_big:
        raise ArchError(
            f"Cannot extract {arch} from the source {source}: the target is larger in {', '.join(too_big)}. "
            "Extraction only removes layers, heads, hidden dimensions and FFN neurons; pick a target no larger "
            "than the source in every dimension (e.g. arch.depth, arch.heads, arch.hidden, arch.intermediate "
            "overrides), or train the larger shape with model.init=scratch.")
    return arch


@torch.no_grad()
def extract(model: Encoder | MaskedLM, target: Arch | Sequence[int], *, layers: str | Sequence[int] = "uniform",
            importance: str = "magnitude") -> Encoder | MaskedLM:
    """A new model of shape `target` holding sliced copies of `model`'s weights (see the module docstring).

    Returns the same kind as given: an `Encoder`, or a `MaskedLM` whose head is extracted too."""
    if importance not in IMPORTANCE:
        raise ArchError(f"importance={importance!r}: choose one of {IMPORTANCE}.")
    mlm = model if isinstance(model, MaskedLM) else None
    src = mlm.encoder if mlm is not None else model
    s, t = src.arch, target_arch(src.arch, target)
    keep_layers = choose_layers(s.depth, t.depth, layers)
    kept = [src.layers[i] for i in keep_layers]

    gamma = src.emb_ln.weight.abs() + sum(ln.weight.abs() for lay in kept for ln in (lay.ln1, lay.ln2))
    hid = _top(gamma.detach().float(), t.hidden, importance)
    device = src.word_embeddings.weight.device
    out = Encoder(t, unpad=src.unpad).to(device)
    sd = {}
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        if getattr(src, name) is not None:
            sd[f"{name}.weight"] = getattr(src, name).weight[:, hid]
    sd["emb_ln.weight"], sd["emb_ln.bias"] = src.emb_ln.weight[hid], src.emb_ln.bias[hid]
    if src.pooler is not None:
        sd["pooler.weight"], sd["pooler.bias"] = src.pooler.weight[hid][:, hid], src.pooler.bias[hid]

    A_s, d_s, A_t, d_t = s.heads, s.dim_head, t.heads, t.dim_head
    for j, lay in enumerate(kept):
        head_score, qk_score, vo_score = _head_scores(lay, A_s, d_s)
        heads = _top(head_score, A_t, importance)
        # rows of the fused qkv for the kept (head, dim) pairs: part * W_s + head * d_s + dim
        qk_rows = torch.cat([h * d_s + _top(qk_score[h], d_t, importance) for h in heads])
        vo_rows = torch.cat([h * d_s + _top(vo_score[h], d_t, importance) for h in heads])
        rows = torch.cat([qk_rows, A_s * d_s + qk_rows, 2 * A_s * d_s + vo_rows])
        scale = torch.ones(rows.numel(), device=rows.device)
        scale[: qk_rows.numel()] = math.sqrt(d_t / d_s)      # keep the source's softmax temperature
        w_in, w_out = lay.ffn_in.weight.detach().float(), lay.ffn_out.weight.detach().float()
        neurons = _top(w_in.norm(dim=1) * w_out.norm(dim=0), t.intermediate, importance)
        p = f"layers.{j}."
        sd[p + "qkv.weight"] = lay.qkv.weight[rows][:, hid] * scale[:, None].to(lay.qkv.weight)
        sd[p + "qkv.bias"] = lay.qkv.bias[rows] * scale.to(lay.qkv.bias)
        sd[p + "attn_out.weight"] = lay.attn_out.weight[hid][:, vo_rows]
        sd[p + "attn_out.bias"] = lay.attn_out.bias[hid]
        sd[p + "ffn_in.weight"], sd[p + "ffn_in.bias"] = lay.ffn_in.weight[neurons][:, hid], lay.ffn_in.bias[neurons]
        sd[p + "ffn_out.weight"], sd[p + "ffn_out.bias"] = lay.ffn_out.weight[hid][:, neurons], lay.ffn_out.bias[hid]
        for ln in ("ln1", "ln2"):
            sd[p + ln + ".weight"], sd[p + ln + ".bias"] = getattr(lay, ln).weight[hid], getattr(lay, ln).bias[hid]
    out.load_state_dict(sd, strict=True)    # copies: the result shares no storage with the source
    log.info("extracted %s from %s: layers %s, importance %s", t, s, keep_layers, importance)
    if mlm is None:
        return out
    head = None
    if mlm.head is not None:
        head = MLMHead(t).to(device)
        h = mlm.head
        head.load_state_dict({"dense.weight": h.dense.weight[hid][:, hid], "dense.bias": h.dense.bias[hid],
                              "ln.weight": h.ln.weight[hid], "ln.bias": h.ln.bias[hid], "bias": h.bias})
    return MaskedLM(out, head)


# ---- from a checkpoint (model.init=extract) -----------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _load_source(name: str, stamp: float | None, with_head: bool):
    """The last source loaded stays in memory: the FPTAS's candidate jobs extract many shapes from one source."""
    if with_head:
        from bortlab.models.mlm import load_mlm
        return load_mlm(name)
    from bortlab.models.hf import load_pretrained
    return load_pretrained(name)


def load_source(source: str, with_head: bool):
    """The checkpoint extraction reads (a hub id, an HF dir or a pre-training run dir), cached."""
    name = resolve_checkpoint(source)
    cfg_file = os.path.join(name, "config.json")
    stamp = os.path.getmtime(cfg_file) if os.path.exists(cfg_file) else None   # a rewritten dir is reloaded
    try:
        return _load_source(name, stamp, with_head)
    except OSError as e:   # not found locally nor on the hub: the loader's message lists the options
        from bortlab.config import SetupError
        raise SetupError(f"model.init=extract: the source {source!r} could not be loaded. {e}") from e


def _options(cfg) -> dict:
    cfg = cfg or {}
    layers = cfg.get("layers") or "uniform"
    return {"layers": layers if isinstance(layers, str) else list(layers),
            "importance": cfg.get("importance") or "magnitude"}


def _with_dropout(arch: Arch, cfg) -> Arch:
    dropout = (cfg or {}).get("dropout")
    return arch if dropout is None else arch.replace(dropout=float(dropout), attention_dropout=float(dropout))


def extract_from_checkpoint(source: str, arch: Arch, cfg=None) -> Encoder:
    """Load `source` (hub id, HF directory, or a pre-training run directory holding `export/`) and extract
    `arch` from it. `cfg` (the `model` config node) may set `layers`, `importance` and `dropout`."""
    return extract(load_source(source, with_head=False), _with_dropout(arch, cfg), **_options(cfg))


def extract_mlm_from_checkpoint(source: str, arch: Arch, cfg=None) -> MaskedLM:
    """As `extract_from_checkpoint`, keeping (and extracting) the source's MLM head when it has one."""
    return extract(load_source(source, with_head=True), _with_dropout(arch, cfg), **_options(cfg))
