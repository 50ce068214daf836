"""bortlab's int8 Linear against integer arithmetic done here in int64: the quantization recipe (7-bit weights per
channel, 8-bit activations per token, activation and weight outlier columns in fp32) and oneDNN's kernel, including
inputs that would overflow AVX2's int16 pair sums with 8-bit weights."""
from __future__ import annotations

import copy
import os
import pickle

import pytest
import torch
from torch import nn

int8 = pytest.importorskip("bortlab.models.int8")
pytestmark = pytest.mark.skipif(not int8.available(), reason="this PyTorch build has no oneDNN int8 kernels")


def reference(linear: nn.Linear, x: torch.Tensor, act_outliers: int = 0, weight_outliers: int = 0) -> torch.Tensor:
    """The recipe in exact integer arithmetic: symmetric per-channel weights in [-63, 63], symmetric per-row
    activations in [-127, 127], int64 dot products, then both scales and the bias in float64. The
    `weight_outliers` input columns of largest |w| are left out of the weights and added in float64 with their
    exact weights; of the other columns, this batch's `act_outliers` of largest |x| are left out of the
    activations and added in float64, times their 7-bit weights."""
    w, x = linear.weight.detach().double(), x.double()
    wc = w.abs().amax(0).topk(weight_outliers).indices
    w_in = w.index_fill(1, wc, 0.0)
    w_scale = w_in.abs().amax(1) / 63
    qw = torch.round(w_in / w_scale[:, None]).long()
    ac = x.abs().amax(0).index_fill(0, wc, -1.0).topk(act_outliers).indices
    x_in = x.index_fill(1, torch.cat([wc, ac]), 0.0)
    x_scale = x_in.abs().amax(1, keepdim=True) / 127
    qx = torch.round(x_in / x_scale).long()
    y = (qx @ qw.t()).double() * x_scale * w_scale + linear.bias.detach().double()
    return y + x[:, ac] @ (qw[:, ac].double() * w_scale[:, None]).t() + x[:, wc] @ w[:, wc].t()


def test_matches_exact_integer_arithmetic():
    torch.manual_seed(0)
    lin = nn.Linear(384, 200)
    x = torch.randn(37, 384)
    x[:, 7] *= 40                                   # an outlier channel, as BERT's LayerNorm outputs have
    got = int8.Int8Linear(lin)(x).double()
    ref = reference(lin, x)
    # rounding at exact .5 steps may differ by one level on a few entries; nothing more
    assert (got - ref).abs().max() < 1e-3 * ref.abs().max()
    assert torch.nn.functional.cosine_similarity(got, lin(x).double().detach(), dim=1).min() > 0.995


def test_outlier_columns_match_exact_arithmetic_and_help():
    torch.manual_seed(2)
    lin = nn.Linear(96, 40)
    x = torch.randn(23, 96)
    x[:, [7, 50]] *= 40                                 # outlier channels, as BERT's LayerNorm outputs have
    q = int8.Int8Linear(lin, act_outliers=3)
    got, ref = q(x).double(), reference(lin, x, 3)
    assert (got - ref).abs().max() < 1e-3 * ref.abs().max()
    exact = lin(x).double().detach()
    plain = (int8.Int8Linear(lin)(x).double() - exact).norm()
    assert (got - exact).norm() < 0.5 * plain           # around the kernel, the outliers no longer set the scales


@pytest.mark.parametrize("fused_ops", [True, False])
def test_weight_outlier_columns_match_exact_arithmetic_and_help(fused_ops):
    torch.manual_seed(4)
    lin = nn.Linear(96, 40)
    with torch.no_grad():
        lin.weight[:, [5, 61, 62]] *= 30                 # a few input columns with large weights, as BERT's FFN output has
    x = torch.randn(23, 96)
    x[:, 7] *= 40                                       # and an activation outlier
    q = int8.Int8Linear(lin, act_outliers=2, weight_outliers=3)
    q.fused = fused_ops
    assert sorted(q.w_cols.tolist()) == [5, 61, 62]
    got, ref = q(x).double(), reference(lin, x, 2, 3)
    assert (got - ref).abs().max() < 1e-3 * ref.abs().max()
    exact = lin(x).double().detach()
    without = (int8.Int8Linear(lin, act_outliers=2)(x).double() - exact).norm()
    assert (got - exact).norm() < 0.5 * without         # the large columns no longer set every channel's scale
    only_fixed = int8.Int8Linear(lin, weight_outliers=3)  # no activation outliers: the fixed columns alone
    only_fixed.fused = fused_ops
    assert (only_fixed(x).double() - reference(lin, x, 0, 3)).abs().max() < 1e-3 * ref.abs().max()


def test_outlier_columns_on_empty_and_narrow_inputs():
    lin = nn.Linear(6, 4)
    q = int8.Int8Linear(lin, act_outliers=10)           # at most half the columns
    assert q.act_outliers == 3
    assert q(torch.zeros(0, 6)).shape == (0, 4)
    x = torch.randn(5, 6)
    assert torch.allclose(q(x), lin(x).detach(), atol=2e-2)


def test_extreme_inputs_do_not_saturate():
    # every product at its largest magnitude and the same sign: 255 * 127 pairs overflow int16 on AVX2's
    # vpmaddubsw; the 7-bit weights keep 2 * 255 * 63 below 32767
    lin = nn.Linear(64, 8)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    x = torch.ones(3, 64)
    x[1] *= -1
    x[2, ::2] = -1
    got = int8.Int8Linear(lin)(x)
    assert torch.allclose(got, lin(x).detach(), rtol=1e-5, atol=1e-5)       # 64, -64 and 0 exactly


def test_shapes_copies_and_state_dict():
    torch.manual_seed(1)
    lin = nn.Linear(16, 24)
    q = int8.Int8Linear(lin)
    x = torch.randn(2, 5, 16)
    y = q(x)
    assert y.shape == (2, 5, 24)
    assert torch.equal(copy.deepcopy(q)(x), y) and torch.equal(pickle.loads(pickle.dumps(q))(x), y)
    assert set(q.state_dict()) == {"qweight", "w_scale", "bias", "w_cols", "w_outliers"} and q.qweight.dtype == torch.int8
    q2 = int8.Int8Linear(lin, act_outliers=2, weight_outliers=1)
    q2(x)                                               # packed weights and the transposed copy made: not pickled
    assert torch.equal(copy.deepcopy(q2)(x), q2(x)) and torch.equal(pickle.loads(pickle.dumps(q2))(x), q2(x))
    assert int(q.qweight.abs().max()) == 63
    assert q(torch.zeros(4, 16)).allclose(lin.bias.detach().expand(4, 24))   # an all-zero row: no 0 / 0


def test_only_the_transformer_layers_are_quantized():
    from bortlab.models.arch import Arch
    from bortlab.models.encoder import Encoder
    from bortlab.models.heads import SequenceClassifier

    enc = Encoder(Arch(depth=2, heads=2, hidden=32, intermediate=64, vocab_size=100, max_positions=64, pooler=True))
    recipe = {"qkv": 2, "attn_out": 0, "ffn_out": (1, 3)}      # (activation, weight) outlier columns
    model = int8.quantize_linears(SequenceClassifier(enc, 3).eval(), recipe)
    kinds = {name: type(m).__name__ for name, m in model.named_modules() if isinstance(m, (nn.Linear, int8.Int8Linear))}
    assert {n for n, k in kinds.items() if k == "Int8Linear"} == {
        f"encoder.layers.{i}.{p}" for i in range(2) for p in ("qkv", "attn_out", "ffn_out")}
    assert kinds["encoder.pooler"] == kinds["classifier"] == kinds["encoder.layers.0.ffn_in"] == "Linear"
    layer = model.encoder.layers[1]
    assert (layer.qkv.act_outliers, layer.attn_out.act_outliers, layer.ffn_out.act_outliers) == (2, 0, 1)
    assert (len(layer.qkv.w_cols), len(layer.ffn_out.w_cols)) == (0, 3)
    ids = torch.randint(0, 100, (2, 9))
    assert model(ids, attention_mask=torch.ones_like(ids)).shape == (2, 3)


def test_bf16_inputs_give_the_fp32_result_in_bf16():
    torch.manual_seed(2)
    q = int8.Int8Linear(nn.Linear(64, 48), act_outliers=2)
    x = torch.randn(9, 64).bfloat16()
    y = q(x)
    assert y.dtype == torch.bfloat16 and torch.equal(y, q(x.float()).bfloat16())


@pytest.mark.parametrize("native", [True, False])
def test_int8_runs_the_rest_in_bf16_only_where_the_cpu_computes_in_it(monkeypatch, native):
    import bortlab.models.precision as prec
    from bortlab.models.arch import Arch
    from bortlab.models.encoder import Encoder
    from bortlab.models.heads import SequenceClassifier

    monkeypatch.setattr(prec, "native_bf16", lambda device="cpu": native)
    torch.manual_seed(3)
    fp32 = SequenceClassifier(Encoder(Arch(depth=2, heads=2, hidden=32, intermediate=64, vocab_size=100,
                                           max_positions=64, pooler=True)), 3).eval()
    model = prec.apply_precision(copy.deepcopy(fp32), "int8")
    rest = torch.bfloat16 if native else torch.float32
    assert ("the rest bf16" if native else "the rest fp32") in prec.int8_recipe()
    layer = model.encoder.layers[0]
    assert model.encoder.pooler.weight.dtype == model.encoder.word_embeddings.weight.dtype == model.classifier.weight.dtype == rest
    assert layer.ln1.weight.dtype == rest
    # the int8 layers keep their scales and bias in fp32 whatever the rest is
    assert layer.qkv.w_scale.dtype == layer.qkv.bias.dtype == torch.float32 and layer.qkv.qweight.dtype == torch.int8
    assert layer.ffn_out.w_outliers.dtype == torch.float32 and len(layer.ffn_out.w_cols) == prec.INT8_RECIPE["ffn_out"][1]
    ids = torch.randint(0, 100, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.inference_mode():
        got, ref = model(ids, attention_mask=mask), fp32(ids, attention_mask=mask)
    assert got.dtype == rest
    assert torch.allclose(got.float(), ref, atol=0.05), (got, ref)


# ---- the fused C++ passes (int8_fused) against the eager PyTorch path ----------------------------------------

@pytest.fixture(scope="module")
def fused():
    from bortlab.models import int8_fused

    k = int8_fused.kernels()
    if k is None:
        # under CI the build must work: a skip here would leave the path users run untested
        assert not os.environ.get("CI"), "the fused int8 kernels did not build under CI (see the warning above)"
        pytest.skip("the fused int8 kernels could not be built here (no C++ compiler or ninja)")
    return k


def eager_quantize(x: torch.Tensor, cols: torch.Tensor):
    """The activation quantization in plain torch ops, as the eager path does it."""
    x = x.float()
    s = x.abs().index_fill(1, cols, 0.0).amax(1, keepdim=True).clamp(min=1e-12) / int8.A_MAX
    t = (x * s.reciprocal()).index_fill(1, cols, 0.0) + (int8.ZERO + 0.5)
    return t.to(torch.int16).to(torch.uint8), s


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,k", [(1, 0), (37, 4), (300, 3), (64, 8)])
def test_fused_quantization_is_bit_identical_to_eager(fused, dtype, n, k):
    torch.manual_seed(n)
    x = torch.randn(n, 200)
    x[:, [3, 90]] *= 50                                       # outlier channels
    x = x.to(dtype)
    cols = x.float().abs().amax(0).topk(k).indices
    assert torch.equal(fused.col_absmax(x), x.float().abs().amax(0))
    q, s, xo = fused.quantize(x, cols)
    q_ref, s_ref = eager_quantize(x, cols)
    assert torch.equal(s, s_ref) and torch.equal(q, q_ref)
    assert torch.equal(xo, x.float()[:, cols])                # the outlier columns, as they go to the epilogue


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k,kw", [(0, 0), (3, 0), (4, 0), (0, 8), (4, 8)])   # 3 and 12: the generic outlier loop
def test_fused_linear_equals_the_eager_path(fused, k, kw, threads):
    torch.manual_seed(k)
    q = int8.Int8Linear(nn.Linear(256, 300), act_outliers=k, weight_outliers=kw)
    x = torch.randn(2, 61, 256)
    x[..., 11] *= 40
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = q(x)                                            # the fused path: built, fp32 input
        ref = q._eager(x.reshape(-1, 256)).view(2, 61, 300)
        got_bf16 = q(x.bfloat16())
    finally:
        torch.set_num_threads(before)
    # the same recipe; only the order of the outlier columns' fp32 additions differs
    assert torch.allclose(got, ref, rtol=1e-6, atol=1e-6)
    ref_bf16 = q._eager(x.bfloat16().reshape(-1, 256)).view(2, 61, 300).bfloat16()
    assert got_bf16.dtype == torch.bfloat16
    # bf16 rounding of nearly equal fp32 values: at most one bf16 step apart
    assert ((got_bf16.float() - ref_bf16.float()).abs() <= ref_bf16.float().abs() * 2 ** -7 + 1e-6).all()
    assert q(torch.zeros(0, 256)).shape == (0, 300)
    q.fused = False                                           # the per-module switch: eager ops, the same numbers
    assert torch.equal(q(x), ref) and "fused=False" in repr(q)


def test_without_the_fused_kernels_int8_runs_eager_and_says_why(monkeypatch, caplog):
    from torch.utils import cpp_extension

    from bortlab.models import int8_fused

    torch.manual_seed(5)
    lin = nn.Linear(96, 40)
    x = torch.randn(23, 96)
    x[:, 7] *= 40
    try:
        monkeypatch.setenv("BORTLAB_FUSED_INT8", "0")
        int8_fused.kernels.cache_clear()
        assert int8_fused.kernels() is None
        got = int8.Int8Linear(lin, act_outliers=2)(x).double()
        assert (got - reference(lin, x, 2)).abs().max() < 1e-3 * got.abs().max()

        monkeypatch.setenv("BORTLAB_FUSED_INT8", "1")
        int8_fused.kernels.cache_clear()

        def no_compiler(*a, **kw):
            raise RuntimeError("Error building extension: g++: not found")
        monkeypatch.setattr(cpp_extension, "load", no_compiler)
        with caplog.at_level("WARNING", logger="bortlab.models.int8_fused"):
            assert int8_fused.kernels() is None
        assert "could not be built" in caplog.text and "g++: not found" in caplog.text and "BORTLAB_FUSED_INT8=0" in caplog.text
    finally:
        int8_fused.kernels.cache_clear()


@pytest.mark.parametrize("k,kw", [(0, 0), (4, 0), (0, 8), (3, 0)])
def test_fused_add_norm_equals_linear_then_add_then_layer_norm(fused, k, kw):
    torch.manual_seed(10 + k)
    q = int8.Int8Linear(nn.Linear(192, 160), act_outliers=k, weight_outliers=kw)
    ln = nn.LayerNorm(160, eps=1e-5)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    ln = ln.bfloat16()
    x, r = torch.randn(45, 192).bfloat16(), (torch.randn(45, 160) * 4).bfloat16()
    with torch.inference_mode():
        got = q.add_norm(x, r, ln)
        ref = ln(r + q(x))                                   # the unfused steps, in ATen's bf16 ops
    # the same roundings; the LayerNorm's fp32 sums in another order move a few outputs by one bf16 step
    assert ((got.float() - ref.float()).abs() <= ref.float().abs() * 2 ** -7 + 1e-6).all()
    assert (got == ref).float().mean() > 0.99
    with torch.enable_grad():                                # outside inference: the unfused steps exactly
        assert torch.equal(q.add_norm(x, r, ln), ln(r + q(x)))


def test_outlier_columns_are_the_largest_columns_with_their_weights(fused):
    torch.manual_seed(3)
    x = torch.randn(50, 64)
    x[:, [5, 40, 9]] *= torch.tensor([30.0, 20.0, 10.0])
    rows, w_scale = torch.randint(-63, 64, (64, 24), dtype=torch.int8), torch.rand(24)
    cols, w = fused.outlier_columns(x, 2, torch.tensor([40]), rows, w_scale)      # 40 is already around the kernel
    assert cols.tolist() == [5, 9]                                                # largest first, as topk
    assert torch.equal(w, rows[cols].float() * w_scale)
    tied = torch.zeros(3, 8)
    tied[:, [2, 6]] = 1.0
    assert fused.outlier_columns(tied, 1, torch.zeros(0, dtype=torch.long), rows[:8], w_scale)[0].tolist() == [2]
    with pytest.raises(RuntimeError, match="out of range"):
        fused.outlier_columns(x, 2, torch.tensor([64]), rows, w_scale)
