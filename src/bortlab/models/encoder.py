"""A post-LayerNorm BERT encoder built from an `Arch` tuple ⟨D, A, H, I⟩.

The maths is BERT's (and so RoBERTa's and Bort's): embeddings -> LayerNorm -> D x [self-attention ->
add & LayerNorm -> FFN -> add & LayerNorm] -> optional tanh pooler on the first token. Three things make
it faster than a module-per-op port:

* the Q, K and V projections are one Linear of width 3W (one matmul instead of three);
* the two output projections accumulate straight into residual + bias (`addmm_`), one memory pass fewer;
* **unpadding**: when the attention mask has padding, every position-wise op (embedding LayerNorm, all
  Linears, the FFN, the LayerNorms, the residuals) runs on the N real tokens only, as an (N, H) matrix.
  On real task data (batches padded to their longest sequence) 30-50% of the tokens are padding, so this
  saves that share of nearly all the FLOPs. Attention then runs either on a zero-padded (B, L, .) grid
  that real rows are scattered into just around one masked SDPA call, or per sequence on its own packed
  rows (no mask, no scatter, sum(n_i^2) scores instead of B*L^2). Per sequence does less arithmetic but
  issues B kernels per layer instead of one; each multi-threaded kernel ends in a barrier, and on a busy
  2-core machine a barrier can cost a scheduler time slice. So the default is per sequence on CPU for a
  single-threaded run, and for inference (no grad) on at most 2 threads, where it measured 2-41% faster on
  real RTE/SST-2 batches (docs/benchmarks.md); the grid otherwise (`per_sequence_attention` overrides it).
  In bf16 and int8 inference on a CPU with AVX512-BF16, attention is one kernel call over all the packed
  sequences (`bf16_cpu`) whichever of the two is chosen: no per-sequence calls, no grid.

Hidden states at padding positions are not meaningful: the unpadded path returns zeros there, the dense
path (``unpad=False``) returns whatever BERT computes. Only real positions are ever compared or used.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bortlab.models.arch import Arch
from bortlab.models.bf16_cpu import add_layer_norm, packed_attention


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")                         # GPT-2's tanh approximation


def _activation(name: str):
    # module-level functions, not lambdas: a model must stay picklable (ddp_spawn, torch.save(model))
    if name == "gelu":
        return F.gelu                                            # exact erf form, as BERT
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return _gelu_tanh
    if name == "relu":
        return F.relu
    raise ValueError(f"unsupported hidden_act {name!r}")         # Arch validates earlier; defensive only


class _Batch:
    """Per-forward layout shared by all layers, computed once: shape, which rows are real, and the mask."""
    __slots__ = ("B", "L", "index", "mask", "lengths", "grid")

    def __init__(self, B: int, L: int, index: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                 lengths: list[int] | None = None):
        self.B, self.L = B, L
        self.index = index      # (N,) flat positions of real tokens in B*L, or None when rows are already B*L
        self.mask = mask        # (B, 1, 1, L) bool key mask for SDPA on the padded grid; None: none padded, or per seq.
        self.lengths = lengths  # real tokens per sequence (unpadded rows), or None: rows are B*L or padded
        self.grid = None        # (B*L, 3W) zeroed scatter target, reused by every layer when no graph is recorded

    def scatter(self, rows: torch.Tensor) -> torch.Tensor:
        """(N, C) real rows -> (B*L, C) padded grid whose padding rows are zero."""
        if torch.is_grad_enabled():          # autograd saves each layer's grid for SDPA's backward: fresh one
            return rows.new_zeros(self.B * self.L, rows.shape[-1]).index_copy_(0, self.index, rows)
        if self.grid is None:                # inference: zero once; layers only ever overwrite the real rows
            self.grid = rows.new_zeros(self.B * self.L, rows.shape[-1])
        return self.grid.index_copy_(0, self.index, rows)


class Layer(nn.Module):
    """One post-LN Transformer layer acting on a (N, H) matrix of token rows."""

    def __init__(self, arch: Arch):
        super().__init__()
        H, W, I = arch.hidden, arch.attn_width, arch.intermediate
        self.heads, self.dim_head = arch.heads, arch.dim_head
        self.qkv = nn.Linear(H, 3 * W)            # rows [q; k; v], each head-major (A, d)
        self.attn_out = nn.Linear(W, H)
        self.ln1 = nn.LayerNorm(H, eps=arch.layer_norm_eps)
        self.ffn_in = nn.Linear(H, I)
        self.ffn_out = nn.Linear(I, H)
        self.ln2 = nn.LayerNorm(H, eps=arch.layer_norm_eps)
        self.act = _activation(arch.hidden_act)
        self.p_drop, self.p_attn = arch.dropout, arch.attention_dropout

    def attention(self, x: torch.Tensor, b: _Batch) -> torch.Tensor:
        """(N, H) -> (N, W) mixed values, before the output projection."""
        A, d, p = self.heads, self.dim_head, self.p_attn if self.training else 0.0
        qkv = self.qkv(x)                                                  # (N, 3W)
        if p == 0 and (b.lengths is not None or b.mask is None):          # rows are packed sequence blocks
            y = packed_attention(qkv, b.lengths or [b.L] * b.B, A)         # (N, W), or None: SDPA below
            if y is not None:
                return y
        if b.lengths is not None and b.mask is None:
            # packed rows are ordered by sequence, so each sequence is one contiguous block of rows
            ys = []
            for blk in qkv.split(b.lengths):                               # (n, 3W) views
                n = blk.shape[0]
                if n == 0:                                                 # an all-padding row: nothing to mix
                    continue
                q, k, v = blk.view(1, n, 3, A, d).permute(2, 0, 3, 1, 4).unbind(0)   # 3 x (1, A, n, d)
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)            # (1, A, n, d)
                ys.append(y.transpose(1, 2).reshape(n, A * d))             # (n, W), a view
            return torch.cat(ys) if ys else qkv.new_zeros(0, A * d)        # (N, W)
        B, L = b.B, b.L
        if b.index is not None:
            # padding rows are zero: finite keys/values that the mask hides, queries whose output is dropped
            qkv = b.scatter(qkv)                                           # (B*L, 3W)
        q, k, v = qkv.view(B, L, 3, A, d).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, A, L, d), strided views
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=b.mask, dropout_p=p)   # (B, A, L, d)
        y = y.transpose(1, 2).reshape(B * L, A * d)                        # (B*L, W); a view for SDPA's layout
        return y if b.index is None else y.index_select(0, b.index)        # (N, W): real rows only

    def _add_norm(self, residual: torch.Tensor, inp: torch.Tensor, lin: nn.Linear, ln: nn.LayerNorm) -> torch.Tensor:
        """ln(residual + dropout(lin(inp))). Without dropout the matmul accumulates straight into residual + bias
        (addmm_ with beta=1): one pass over (N, H) fewer than linear-then-add, in training too. In bf16 inference
        the add and the LayerNorm are one kernel (`bf16_cpu.add_layer_norm`) where the matmul cannot take the add."""
        if self.training and self.p_drop > 0:
            return ln(residual + F.dropout(lin(inp), self.p_drop, True))
        # an int8 layer (another module, or a Linear whose weight is a torchao tensor) is only understood by
        # itself; under autocast (bf16-mixed training) the in-place addmm_ is not cast: all go through lin
        if hasattr(lin, "add_norm"):                              # bortlab's int8 Linear: its own fused path
            return lin.add_norm(inp, residual, ln)
        if (not isinstance(lin, nn.Linear) or type(lin.weight.data) is not torch.Tensor
                or torch.is_autocast_enabled(inp.device.type)):
            return add_layer_norm(lin(inp), residual, ln)
        return add_layer_norm(torch.add(residual, lin.bias).addmm_(inp, lin.weight.t()), None, ln)

    def forward(self, x: torch.Tensor, b: _Batch) -> torch.Tensor:
        x = self._add_norm(x, self.attention(x, b), self.attn_out, self.ln1)
        return self._add_norm(x, self.act(self.ffn_in(x)), self.ffn_out, self.ln2)


class Encoder(nn.Module):
    """BERT-family encoder of shape `arch`; `forward` returns the last hidden states (B, L, H).

    `unpad=True` (default) runs on real tokens only when the mask has padding; `unpad=False` keeps the
    classic padded layout (same numbers at real positions; kept for testing and comparison).
    `per_sequence_attention` picks how unpadded rows meet in attention (see the module docstring):
    None = per sequence on CPU when single-threaded, or in inference on at most 2 threads; else on the padded
    grid. Both are plain attributes, settable later.
    """

    def __init__(self, arch: Arch, unpad: bool = True, per_sequence_attention: bool | None = None):
        super().__init__()
        self.arch, self.unpad, self.per_sequence_attention = arch, unpad, per_sequence_attention
        H = arch.hidden
        # padding_idx only stops gradient into the pad row, as HF's BERT does; it does not change outputs
        pad = arch.pad_token_id if 0 <= arch.pad_token_id < arch.vocab_size else None
        self.word_embeddings = nn.Embedding(arch.vocab_size, H, padding_idx=pad)
        self.position_embeddings = nn.Embedding(arch.max_positions, H)
        self.token_type_embeddings = nn.Embedding(arch.type_vocab_size, H) if arch.type_vocab_size > 0 else None
        self.emb_ln = nn.LayerNorm(H, eps=arch.layer_norm_eps)
        self.layers = nn.ModuleList(Layer(arch) for _ in range(arch.depth))
        self.pooler = nn.Linear(H, H) if arch.pooler else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            emb = [self.word_embeddings, self.position_embeddings, self.token_type_embeddings, self.emb_ln]
            n -= sum(p.numel() for m in emb if m is not None for p in m.parameters())
        return n

    # ---- forward -------------------------------------------------------------------------------
    def _position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        B, L = input_ids.shape
        off = self.arch.position_offset
        if L + off > self.arch.max_positions:
            raise ValueError(f"sequence length {L} (+ position offset {off}) exceeds max_positions="
                             f"{self.arch.max_positions}; truncate inputs to {self.arch.max_positions - off} tokens")
        if off > 0:
            # RoBERTa: real tokens are numbered off, off+1, ... skipping pad ids; pads get off-1 (= pad id)
            real = input_ids.ne(self.arch.pad_token_id).int()
            return (torch.cumsum(real, dim=1) * real).long() + (off - 1)      # (B, L)
        return torch.arange(L, device=input_ids.device).expand(B, L)          # (B, L)

    def _embed(self, ids, pos, types) -> torch.Tensor:
        x = self.word_embeddings(ids) + self.position_embeddings(pos)
        if self.token_type_embeddings is not None:
            # no token types given = all type 0, added as one broadcast row instead of a look-up
            x = x + (self.token_type_embeddings.weight[0] if types is None else self.token_type_embeddings(types))
        x = add_layer_norm(x.view(-1, x.shape[-1]), None, self.emb_ln).view(x.shape)
        return F.dropout(x, self.arch.dropout, True) if self.training and self.arch.dropout > 0 else x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, L = input_ids.shape
        pos = self._position_ids(input_ids)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None                                              # nothing padded: dense, maskless
        if attention_mask is not None and self.unpad:
            index = attention_mask.reshape(-1).nonzero().squeeze(1)            # (N,) real tokens in B*L
            per_seq = self.per_sequence_attention
            if per_seq is None:
                threads = torch.get_num_threads()
                per_seq = input_ids.device.type == "cpu" and (
                    threads == 1 or (threads <= 2 and not torch.is_grad_enabled()))
            # the lengths on the host: free on CPU; on a GPU, a sync that only per-sequence attention needs
            lengths = attention_mask.ne(0).sum(1).tolist() if per_seq or input_ids.device.type == "cpu" else None
            b = _Batch(B, L, index, None if per_seq else attention_mask.bool().view(B, 1, 1, L), lengths)
            sel = lambda t: None if t is None else t.reshape(-1).index_select(0, index)  # noqa: E731
            x = self._embed(sel(input_ids), sel(pos), sel(token_type_ids))     # (N, H)
        else:
            mask = None if attention_mask is None else attention_mask.bool().view(B, 1, 1, L)
            b = _Batch(B, L, mask=mask)
            x = self._embed(input_ids, pos, token_type_ids).view(B * L, -1)    # (B*L, H)
        for layer in self.layers:
            x = layer(x, b)
        if b.index is not None:
            # back to the padded grid; pads are zeros (autograd flows through index_copy into real rows)
            x = x.new_zeros(B * L, x.shape[-1]).index_copy(0, b.index, x)
        return x.view(B, L, -1)                                                # (B, L, H)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, H): BERT's tanh(dense(h[:, 0])) when the arch has a pooler, else h[:, 0]."""
        first = hidden[:, 0]
        return torch.tanh(self.pooler(first)) if self.pooler is not None else first

    def extra_repr(self) -> str:
        return (f"arch={self.arch}, unpad={self.unpad}, per_sequence_attention={self.per_sequence_attention}, "
                f"params={self.num_params():,}")

