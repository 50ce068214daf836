"""int8 Linears on oneDNN's integer kernels: per-channel weights, per-token activations, fast on any x86 CPU.

    y = s_x[i] * (sum_k (q_x[i,k] - 128) * q_w[j,k]) * s_w[j] + b[j]

- Weights: symmetric per output channel, **7 bits** (|q_w| <= 63). On CPUs without VNNI (AVX2) the int8 kernels
  multiply with `vpmaddubsw`, which adds two u8 x s8 products into an int16 and saturates: 2 * 255 * 127 overflows,
  2 * 255 * 63 = 32130 does not. fbgemm avoids it by dropping an activation bit (`reduce_range`); dropping a weight
  bit instead is more faithful on BERT (measured on the real MiniLM and RTE: min cosine 0.993 vs 0.985), because
  per-token activations carry the outliers. One recipe on every CPU keeps the numbers the same everywhere.
- Activations: symmetric per token (row), 8 bits, computed on the fly, stored as uint8 around zero point 128.
  oneDNN takes one activation scale per call, so the kernel runs with scale 1 and the row scales are applied to
  its fp32 output, fused with the bias (`addcmul`). Per-token scales keep rows without outliers exact where a
  per-tensor scale (transformers' `quantize_dynamic`) spends the 8 bits on a few outlier channels.
- Activation outlier columns go around the integer kernel, in fp32 (`y += x[:, c] @ W[:, c]^T`): each call's
  `act_outliers` input columns of largest |x| are left out of the per-token scales. BERT's LayerNorm outputs
  have a few channels tens of times larger than the rest (the same ones in nearly every batch); with them
  inside, every token's other channels lose bits. Their weights come from the int8 copy. Measured on the real
  MiniLM (all RTE and SST-2 dev text, min token cosine to fp32): without them, the QKV projection alone costs
  0.991 on SST-2; with 4 on the QKV and FFN-input projections, the int8 model keeps 0.997 / 0.996.
  The columns are chosen per call, so a row's output depends a little on the rows batched with it (as with
  any dynamic quantization whose scales span rows); on BERT the same channels win in nearly every batch.
- Weight outlier columns go around it too, fixed when the layer is quantized: the `weight_outliers` input columns
  with the largest |w| keep their fp32 weights and leave the int8 weights' per-channel scales. BERT's FFN output
  projection has a few such columns; with them inside, every output channel loses bits (real MiniLM, train text:
  min token cosine 0.986 -> 0.991 on SST-2, 0.987 -> 0.994 on RTE with 8 of them).

The kernels are ATen's `onednn::qlinear_prepack` / `onednn::qlinear_pointwise` on plain uint8/int8 tensors: the
ones PyTorch's x86 int8 compilation lowers to, not the deprecated quantized dtypes (`torch.quantize_per_*`).
The elementwise work around them (the scales, the uint8 cast, then the row scales, bias, outlier columns and the
cast back) runs in two fused C++ passes (`int8_fused`, built for this CPU on first use) instead of about fifteen
eager ops, which on short sequences cost as much as the matmul; where they cannot be built, in eager PyTorch.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from bortlab.models import bf16_cpu, int8_fused

W_MAX = 63          # 7-bit weights: no int16 saturation in AVX2's u8 x s8 pair sums (see above)
A_MAX = 127         # 8-bit activations, symmetric: uint8 = round(x / s) + ZERO
ZERO = 128
_ONE, _ZERO = torch.ones(()), torch.full((), ZERO, dtype=torch.int32)   # the kernel's activation scale and zero point
_NO_COLS = torch.zeros(0, dtype=torch.long)


def in_layers(name: str) -> bool:
    """Whether a module name lies inside the Transformer layers (`layers.N.*`, or `encoder.layers.N.*` in a head)."""
    return name.startswith("layers.") or ".layers." in name


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether this PyTorch build has oneDNN's int8 Linear kernels that work here (x86 builds do)."""
    try:
        packed = torch.ops.onednn.qlinear_prepack(torch.ones(2, 4, dtype=torch.int8), None)
        y = _matmul(torch.full((1, 4), ZERO + 1, dtype=torch.uint8), packed, torch.ones(2), torch.zeros(2, dtype=torch.long))
        return bool(torch.equal(y, torch.full((1, 2), 4.0)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _matmul(qx: torch.Tensor, packed: torch.Tensor, w_scale: torch.Tensor, w_zero: torch.Tensor) -> torch.Tensor:
    """(N, K) uint8 activations (zero point ZERO, scale 1) times packed int8 weights -> (N, out) fp32, scaled per
    output channel by `w_scale` only (`w_zero`: the weights' zero points, all 0)."""
    return _qlinear()(qx, _ONE, _ZERO, packed, w_scale, w_zero, None, 1.0, 0, torch.float32, "none", [], "")


@functools.lru_cache(maxsize=None)
def _qlinear():
    return torch.ops.onednn.qlinear_pointwise.tensor            # looked up once: the namespace walk costs µs a call


class Int8Linear(nn.Module):
    """An `nn.Linear` for inference in int8 (the module docstring's recipe). Holds the int8 weight as a buffer
    (so state_dict, copy and pickle work) and oneDNN's packed copy of it, made on first use."""

    def __init__(self, linear: nn.Linear, act_outliers: int = 0, weight_outliers: int = 0):
        super().__init__()
        w = linear.weight.detach().float().clone()
        # weight outlier columns: the input columns with the largest weights stay fp32, around the integer kernel,
        # so that they do not set every output channel's scale (BERT's FFN output projection has a few)
        k_w = max(0, min(weight_outliers, w.shape[1] // 2))
        w_cols = w.abs().amax(0).topk(k_w).indices.sort().values if k_w else torch.zeros(0, dtype=torch.long)
        self.register_buffer("w_cols", w_cols)                                     # (k_w,)
        self.register_buffer("w_outliers", w.index_select(1, w_cols).t().contiguous())   # (k_w, out) fp32
        w.index_fill_(1, w_cols, 0.0)
        scale = w.abs().amax(1).clamp(min=1e-12) / W_MAX                          # (out,)
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp_(-W_MAX, W_MAX).to(torch.int8))
        self.register_buffer("w_scale", scale)
        self.register_buffer("bias", linear.bias.detach().float().clone() if linear.bias is not None
                             else torch.zeros(w.shape[0]))
        self.register_buffer("w_zero", torch.zeros(w.shape[0], dtype=torch.long), persistent=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # at most half the input columns go around the integer kernel: it is meant for a few outliers
        self.act_outliers = max(0, min(act_outliers, self.in_features // 2))
        self.fused = True     # the elementwise work in int8_fused's C++ passes where they build; False: eager ops
        self._packed = self._rows = None

    def __getstate__(self):
        state = super().__getstate__().copy()
        # derived copies, remade on first use: oneDNN's opaque packed tensor has no storage to copy
        state["_packed"] = state["_rows"] = None
        return state

    def _prepare(self) -> None:
        """Derived state, made on first use: oneDNN's packed weight, the transposed int8 weight for the outlier
        columns, and what Int8Linears pickled before a feature existed lack (the switch, the weight columns)."""
        self._packed = torch.ops.onednn.qlinear_prepack(self.qweight, None)
        if self.act_outliers:                                    # the int8 weight transposed: columns become rows
            self._rows = self.qweight.t().contiguous()                               # (K, out)
        if "fused" not in self.__dict__:
            self.fused = True
        if "w_cols" not in self._buffers:
            self.register_buffer("w_cols", _NO_COLS.clone())
            self.register_buffer("w_outliers", torch.zeros(0, self.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) fp32 or bf16 -> (..., out) in x's dtype; scales, bias and outlier columns in fp32."""
        if torch.is_grad_enabled():                       # inference only: the integer kernel has no backward
            with torch.no_grad():
                return self.forward(x)
        if self._packed is None:
            self._prepare()
        # this runs 16+ times per forward on token rows that take ~0.2 ms each: Python kept to the minimum
        shape, dtype = x.shape, x.dtype
        x2 = x.reshape(-1, shape[-1]).contiguous()                                   # (N, K)
        fused = int8_fused.kernels() if self.fused and dtype in (torch.float32, torch.bfloat16) else None
        y = self._fused(x2, fused) if fused is not None else self._eager(x2)
        if x.dim() != 2:
            y = y.view(*shape[:-1], self.out_features)
        return y if y.dtype == dtype else y.to(dtype)

    def add_norm(self, x: torch.Tensor, residual: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
        """ln(residual + self(x)): an output projection with the residual add and LayerNorm after it. In bf16 with
        the fused kernels, the LayerNorm runs on the epilogue's rows while they are in cache (one pass fewer)."""
        k = int8_fused.kernels() if self.fused and x.dtype is torch.bfloat16 and x.dim() == 2 else None
        if (k is None or torch.is_grad_enabled() or residual.dtype is not torch.bfloat16 or ln.weight is None
                or ln.bias is None or residual.shape != (x.shape[0], self.out_features)):
            return bf16_cpu.add_layer_norm(self(x), residual, ln)
        if self._packed is None:
            self._prepare()
        return self._fused(x.contiguous(), k, (residual.contiguous(), ln))

    def _outlier_weights(self, cols: torch.Tensor) -> torch.Tensor:
        """(k, out) fp32: the outlier columns' weights from the int8 copy (the activations are what needs fp32)."""
        return self._rows.index_select(0, cols).float().mul_(self.w_scale)

    def _side_columns(self, rows: int, col_max) -> tuple[torch.Tensor, torch.Tensor]:
        """This call's input columns that go around the integer kernel, and their (k, out) fp32 weights: the fixed
        weight outlier columns (true fp32 weights), then, when there are `rows`, the `act_outliers` columns of
        largest |x| among the rest (weights from the int8 copy). `col_max()` gives the (K,) column maxima of |x|."""
        w_cols, w_fixed = self.w_cols, self.w_outliers
        if not self.act_outliers or not rows:
            return w_cols, w_fixed
        m = col_max()
        if w_cols.numel():
            m.index_fill_(0, w_cols, -1.0)                                           # already around the kernel
        cols = m.topk(self.act_outliers).indices                                     # (k,) this call's outliers
        w = self._outlier_weights(cols)
        return (torch.cat([w_cols, cols]), torch.cat([w_fixed, w])) if w_cols.numel() else (cols, w)

    def _fused(self, x: torch.Tensor, k, norm: tuple[torch.Tensor, nn.LayerNorm] | None = None) -> torch.Tensor:
        """The recipe with its elementwise work in two fused passes (`int8_fused`); the eager path's numbers.
        `norm` = (residual, ln): the second pass also adds the residual and applies ln (bf16 input only)."""
        cols, w = self.w_cols, self.w_outliers
        if self.act_outliers and x.shape[0]:                      # _side_columns' choice, in one C++ call
            c, wc = k.outlier_columns(x, self.act_outliers, cols, self._rows, self.w_scale)
            cols, w = (torch.cat([cols, c]), torch.cat([w, wc])) if cols.numel() else (c, wc)
        qx, s, xo = k.quantize(x, cols)                           # (N, K) uint8, (N, 1), (N, k) outlier columns
        y = _matmul(qx, self._packed, self.w_scale, self.w_zero)                     # (N, out) fp32
        if norm is None:
            return k.epilogue(y, s, self.bias, xo, w, x.dtype == torch.bfloat16)
        residual, ln = norm
        return k.epilogue_add_norm(y, s, self.bias, xo, w, residual, *bf16_cpu.affine_fp32(ln), ln.eps)

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        """The recipe in plain PyTorch ops (where the fused kernels cannot be built)."""
        x = x.float()
        a = x.abs()
        cols, w = self._side_columns(x.shape[0], lambda: a.amax(0))
        if cols.numel():
            a.index_fill_(1, cols, 0.0)                                              # outside the scales
        s = a.amax(1, keepdim=True).clamp_(min=1e-12).div_(A_MAX)                   # (N, 1) per-token scale
        t = x * s.reciprocal()                                       # (N, K), |t| <= 127 outside the outliers
        if cols.numel():
            t.index_fill_(1, cols, 0.0)                                              # -> the zero point
        # round(t) + ZERO, as t + ZERO + 0.5 truncated by the cast (every value is >= 1.5 there); through int16,
        # because ATen's float -> uint8 cast is not vectorized: 4x slower than float -> int16 -> uint8 (measured)
        qx = t.add_(ZERO + 0.5).to(torch.int16).to(torch.uint8)                      # (N, K)
        y = _matmul(qx, self._packed, self.w_scale, self.w_zero)
        y = torch.addcmul(self.bias, y, s, out=y)                                    # (N, out), in place
        if cols.numel():
            y.addmm_(x.index_select(1, cols), w)
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 (oneDNN, w7 a8 per token), "
                f"act_outliers={self.act_outliers}, weight_outliers={len(getattr(self, 'w_cols', ()))}, "
                f"fused={self.__dict__.get('fused', True)}")


def outlier_counts(entry: int | tuple[int, int]) -> tuple[int, int]:
    """A recipe entry as (activation outlier columns per call, fixed weight outlier columns)."""
    return (entry, 0) if isinstance(entry, int) else tuple(entry)


def quantize_linears(model: nn.Module, recipe: dict[str, int | tuple[int, int]]) -> nn.Module:
    """Replace, in place, every `nn.Linear` inside the Transformer layers (`layers.N.*`) whose own name is in
    `recipe` by an `Int8Linear`; the recipe gives its activation outlier columns per call, or a pair (activation
    outlier columns, fixed weight outlier columns). The other Linears, embeddings, LayerNorms, the pooler and
    heads stay fp32."""
    for name, module in list(model.named_modules()):
        if not in_layers(name):
            continue
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear and child_name in recipe:
                setattr(module, child_name, Int8Linear(child, *outlier_counts(recipe[child_name])))
    return model


def cast_the_rest(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast, in place, every floating-point parameter and buffer of `model` to `dtype` except the Int8Linears'
    (their weight scales and bias stay fp32: a bf16 scale would move a whole output channel by up to 0.4%)."""
    cast = lambda t: t.to(dtype) if t.is_floating_point() else t      # noqa: E731
    for m in model.modules():
        if not isinstance(m, Int8Linear):
            m._apply(cast, recurse=False)
    return model
