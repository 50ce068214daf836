"""bortlab's bf16 CPU kernels (bortlab/models/bf16_cpu.cpp) against PyTorch: attention against fp32 attention,
beside PyTorch's own bf16 flash kernel on the same inputs; add + LayerNorm against ATen's bf16 ops; the encoder
with and without them."""
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bortlab.models import bf16_cpu
from bortlab.models.arch import Arch
from bortlab.models.cpu import cpu_flags
from bortlab.models.encoder import Encoder


@pytest.fixture(scope="module")
def kernels():
    k = bf16_cpu.kernel()
    if k is None:
        # under CI on an AVX512-BF16 machine the build must work: a skip would leave the path users run untested
        assert not (os.environ.get("CI") and "avx512_bf16" in cpu_flags()), "bf16_cpu did not build under CI"
        pytest.skip("no AVX512-BF16 here, or the kernels could not be built (no C++ compiler or ninja)")
    return k


def sdpa_per_sequence(qkv: torch.Tensor, lengths: list[int], heads: int) -> torch.Tensor:
    """PyTorch's attention on each sequence's block of rows: (N, 3W) -> (N, W) in qkv's dtype."""
    W = qkv.shape[1] // 3
    d = W // heads
    out = []
    for blk in qkv.split(lengths):
        n = blk.shape[0]
        q, k, v = blk.view(1, n, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        out.append(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, W))
    return torch.cat(out)


@pytest.mark.parametrize("heads,d,lengths,spread", [
    (8, 96, [128], 1.0),                    # Bort's shape, one sequence
    (12, 32, [5, 17, 0, 64, 33], 1.0),      # MiniLM's head size; an empty sequence; odd lengths (key pairs)
    (4, 64, [1, 2, 31, 32, 33, 70], 1.0),   # lengths around the 32-key score blocks and 4-row query blocks
    (8, 96, [128, 40], 8.0),                # peaked softmax: large scores, where bf16 scores go wrong
])
def test_packed_attention_is_as_close_to_fp32_as_the_flash_kernel(kernels, heads, d, lengths, spread):
    torch.manual_seed(len(lengths))
    qkv = (torch.randn(sum(lengths), 3 * heads * d) * spread).bfloat16()
    got = bf16_cpu.packed_attention(qkv, lengths, heads).float()
    exact = sdpa_per_sequence(qkv.float(), lengths, heads)            # the same bf16 inputs, fp32 arithmetic
    flash = sdpa_per_sequence(qkv, lengths, heads).float()           # PyTorch's bf16 path
    err, err_flash = (got - exact).abs(), (flash - exact).abs()
    assert err.mean() <= 1.1 * err_flash.mean() + 1e-6 and err.max() <= 1.1 * err_flash.max() + 1e-6


def test_packed_attention_applies_only_where_it_computes_the_same(kernels):
    qkv = torch.randn(10, 3 * 4 * 32).bfloat16()
    assert bf16_cpu.packed_attention(qkv.float(), [10], 4) is None                   # fp32: SDPA
    assert bf16_cpu.packed_attention(torch.randn(10, 3 * 4 * 24).bfloat16(), [10], 4) is None   # d = 24
    assert bf16_cpu.packed_attention(qkv.clone().requires_grad_(), [10], 4) is None  # needs a backward
    with pytest.raises(RuntimeError, match="must sum"):
        kernels.attention(qkv, [4, 5], 4, 0.1)


@pytest.mark.parametrize("H,rows,residual", [(768, 37, True), (100, 5, True), (1024, 64, False)])
def test_add_layer_norm_is_atens_bf16_arithmetic(kernels, H, rows, residual):
    torch.manual_seed(H)
    ln = nn.LayerNorm(H, eps=1e-5)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    ln = ln.bfloat16()
    x = (torch.randn(rows, H) * 3 + 1).bfloat16()
    r = torch.randn(rows, H).bfloat16() if residual else None
    with torch.no_grad():
        got = bf16_cpu.add_layer_norm(x, r, ln)
        ref = ln(x if r is None else r + x)
    # the same roundings; fp32 sums in another order move at most a few outputs by one bf16 step
    step = ref.float().abs() * 2 ** -7 + 1e-6
    assert ((got.float() - ref.float()).abs() <= step).all()
    assert (got == ref).float().mean() > 0.999


def test_add_layer_norm_falls_back_where_it_does_not_apply():
    ln = nn.LayerNorm(16)
    x, r = torch.randn(3, 16), torch.randn(3, 16)
    assert torch.equal(bf16_cpu.add_layer_norm(x, r, ln), ln(r + x))                 # fp32; and with a gradient
    assert bf16_cpu.add_layer_norm(x, r, ln).requires_grad


def test_the_bf16_encoder_is_the_same_with_and_without_the_kernels(kernels, monkeypatch):
    arch = Arch(2, 4, 128, 256, vocab_size=500, max_positions=64)
    torch.manual_seed(0)
    model = Encoder(arch).eval().bfloat16()
    ids = torch.randint(5, 500, (3, 40))
    mask = torch.ones(3, 40, dtype=torch.long)
    mask[1, 25:] = 0
    mask[2, 7:] = 0
    with torch.inference_mode():
        fast = [model(ids, mask).float(), model(ids).float()]                         # unpadded; dense
        monkeypatch.setenv("BORTLAB_BF16_KERNELS", "0")
        bf16_cpu.kernel.cache_clear()
        try:
            slow = [model(ids, mask).float(), model(ids).float()]
        finally:
            bf16_cpu.kernel.cache_clear()
    real = mask.bool()
    for f, s, m in zip(fast, slow, [real, torch.ones_like(real)]):
        cos = F.cosine_similarity(f[m], s[m], dim=-1)
        assert cos.min() > 0.999, cos.min()


def test_without_a_compiler_bf16_runs_pytorch_and_says_why(monkeypatch, caplog):
    from torch.utils import cpp_extension

    monkeypatch.setattr(bf16_cpu, "cpu_flags", lambda: {"avx512_bf16"})
    monkeypatch.setattr(cpp_extension, "load", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("g++: not found")))
    bf16_cpu.kernel.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="bortlab.models.bf16_cpu"):
            assert bf16_cpu.kernel() is None
        assert "could not be built" in caplog.text and "g++: not found" in caplog.text
        qkv = torch.randn(6, 3 * 2 * 16).bfloat16()
        assert bf16_cpu.packed_attention(qkv, [6], 2) is None
    finally:
        bf16_cpu.kernel.cache_clear()
