"""Sub-architecture extraction: the source's own shape is the identity; removing units that contribute
nothing (zeroed by hand) leaves the outputs unchanged; shapes, counts and errors."""
import pytest
import torch
import transformers

from bortlab.models import extract
from bortlab.models.arch import Arch, ArchError
from bortlab.models.encoder import Encoder
from bortlab.models.extract import choose_layers, extract_from_checkpoint, extract_mlm_from_checkpoint
from bortlab.models.mlm import MaskedLM, export_mlm

SRC = Arch(4, 4, 64, 128, vocab_size=200, max_positions=32)


def _source(arch=SRC, seed=0):
    torch.manual_seed(seed)
    enc = Encoder(arch)
    with torch.no_grad():   # non-trivial LayerNorms and biases, as in a trained model
        for p in enc.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return enc.eval()


def _batch(vocab=200):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_own_shape_reproduces_the_source_exactly():
    src = _source()
    mlm = MaskedLM(src)
    with torch.no_grad():
        mlm.head.ln.weight.add_(torch.randn(64) * 0.1)
    same = extract(mlm, SRC).eval()
    ids, mask = _batch()
    with torch.no_grad():
        h, h2 = src(ids, mask), same(ids, mask)
        assert torch.equal(h, h2) and torch.equal(src.pool(h), same.encoder.pool(h2))
        assert torch.equal(mlm.logits(h), same.logits(h2))
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(src.parameters(), same.encoder.parameters()))


def test_minilm_own_shape_computes_what_transformers_computes(minilm_dir):
    """The real MiniLM extracted at its own shape, against transformers' BertModel on the same weights (the
    reference used to be bortlab's own cached loader, which would share any loading bug)."""
    own = extract_from_checkpoint(minilm_dir, Arch.preset("minilm")).eval()
    hf = transformers.BertModel.from_pretrained(minilm_dir).eval()
    ids, mask = _batch(30522)
    real = mask.bool()
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask)
        h = own(ids, mask)
        torch.testing.assert_close(h[real], ref.last_hidden_state[real], atol=1e-5, rtol=0)
        torch.testing.assert_close(own.pool(h), ref.pooler_output, atol=1e-5, rtol=0)


def test_units_that_contribute_nothing_are_the_ones_removed():
    """Zero the output of heads 1 and 3, of FFN neurons 100..127, the query/key dims 12..15 and value dims
    0..3 of every head: the magnitude scores are then 0 there, extraction drops exactly those, and the
    smaller model computes the same function. The head-dim case also checks the query rescaling."""
    src = _source()
    with torch.no_grad():
        for lay in src.layers:
            qkv = lay.qkv.weight.view(3, 4, 16, 64)
            qkv[:2, :, 12:] = 0
            lay.qkv.bias.view(3, 4, 16)[:2, :, 12:] = 0
            lay.attn_out.weight.view(64, 4, 16)[:, :, :4] = 0      # value dims 0..3 write nothing
            lay.attn_out.weight.view(64, 4, 16)[:, [1, 3]] = 0     # heads 1 and 3 write nothing
            lay.ffn_out.weight[:, 100:] = 0
    small = extract(src, Arch(4, 2, 64, 100, head_dim=12))
    assert small.arch.dim_head == 12 and small.layers[0].qkv.weight.shape == (3 * 24, 64)
    ids, mask = _batch()
    real = mask.bool()
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(ids, mask)[real], src(ids, mask)[real], atol=1e-5, rtol=1e-5)
        # the same cut without rescaling the queries changes the attention temperature, hence the outputs
        small.layers[0].qkv.weight[:24] *= (16 / 12) ** 0.5
        assert not torch.allclose(small(ids, mask)[real], src(ids, mask)[real], atol=1e-3)


def test_smaller_shape_is_built_directly_with_the_right_counts():
    src = _source()
    small = extract(src, (2, 2, 32, 48))
    assert small.arch.tuple == (2, 2, 32, 48) and small.arch.vocab_size == 200 and small.arch.max_positions == 32
    # the count of transformers' BertModel of that shape (the same vocabulary, positions, token types, pooler)
    hf = transformers.BertModel(transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2,
                                                        num_attention_heads=2, intermediate_size=48,
                                                        max_position_embeddings=32))
    assert sum(p.numel() for p in small.parameters()) == hf.num_parameters() == 23616
    assert small.word_embeddings.weight.shape == (200, 32) and small.layers[1].ffn_in.weight.shape == (48, 32)
    # the kept hidden coordinates are those with the largest LayerNorm scales (the documented score)
    gamma = src.emb_ln.weight.abs() + sum(l.ln1.weight.abs() + l.ln2.weight.abs() for l in (src.layers[0], src.layers[3]))
    kept = gamma.topk(32).indices.sort().values
    assert torch.equal(small.emb_ln.weight, src.emb_ln.weight[kept])
    assert torch.equal(small.layers[1].ln2.bias, src.layers[3].ln2.bias[kept])
    first = extract(src, (2, 2, 32, 48), importance="first", layers="first")
    assert torch.equal(first.emb_ln.weight, src.emb_ln.weight[:32])
    assert torch.equal(first.layers[1].ffn_in.bias, src.layers[1].ffn_in.bias[:48])


@pytest.mark.parametrize("src, tgt, how, expected", [
    (6, 3, "uniform", [0, 3, 5]), (6, 6, "uniform", list(range(6))), (4, 1, "uniform", [0]),
    (12, 4, "uniform", [0, 4, 7, 11]), (6, 2, "last", [4, 5]), (6, 2, [1, 4], [1, 4]),
])
def test_layer_choice(src, tgt, how, expected):
    assert choose_layers(src, tgt, how) == expected


@pytest.mark.parametrize("target, words", [
    ((5, 4, 64, 128), "depth 5 > 4"), ((4, 8, 64, 128), "heads 8 > 4"), ((4, 4, 128, 256), "hidden 128 > 64"),
    (Arch(2, 2, 64, 64, head_dim=40), "head size"),
])
def test_larger_target_is_a_clear_error(target, words):
    with pytest.raises(ArchError, match=words) as e:
        extract(_source(), target)
    assert "no larger than the source" in str(e.value)
    with pytest.raises(ArchError, match="distinct"):
        extract(_source(), (2, 4, 64, 128), layers=[1, 1])


def test_from_checkpoint_directory_and_run_directory(tmp_path):
    src = MaskedLM(_source())
    export_mlm(src, tmp_path / "run" / "export")
    # importance=first: the expected tensors are plain slices of the in-memory source, written out by hand
    # (comparing the two entry points with each other would pass on a bug they share)
    cfg = {"layers": [0, 3], "importance": "first", "dropout": 0.0}
    enc = extract_from_checkpoint(str(tmp_path / "run"), Arch(2, 2, 32, 64), cfg=cfg)
    assert enc.arch.tuple == (2, 2, 32, 64) and enc.arch.dropout == 0.0
    assert isinstance(enc, Encoder)
    mlm = extract_mlm_from_checkpoint(str(tmp_path / "run" / "export"), Arch(2, 2, 32, 64), cfg=cfg)
    assert mlm.head is not None and mlm.head.dense.weight.shape == (32, 32)
    s3 = src.encoder.layers[3]                        # target layer 1 <- source layer 3
    for got in (enc, mlm.encoder):
        assert torch.equal(got.layers[1].ffn_in.bias, s3.ffn_in.bias[:64])
        assert torch.equal(got.layers[1].ffn_in.weight, s3.ffn_in.weight[:64, :32])
        assert torch.equal(got.emb_ln.weight, src.encoder.emb_ln.weight[:32])
    assert torch.equal(mlm.head.dense.weight, src.head.dense.weight[:32, :32])


def test_missing_source_is_a_setup_error(tmp_path):
    from bortlab.config import SetupError

    with pytest.raises(SetupError, match="model.init=extract: the source"):
        extract_from_checkpoint(str(tmp_path / "missing"), Arch(1, 1, 8, 8))


def test_fine_tuning_builds_an_extracted_model_from_a_pretraining_export(tmp_path, tokenizer, compose):
    """model.init=extract through bortlab.models.build (the fine-tuning and FPTAS path), source = an export dir."""
    from bortlab.data.tasks import get_task
    from bortlab.models.build import build_model, build_tokenizer

    src = MaskedLM(_source(Arch(2, 2, 32, 64, max_positions=64)))
    export_mlm(src, tmp_path / "export", tokenizer)
    cfg = compose(["arch=tiny", "arch.depth=1", "arch.hidden=16", "arch.heads=1", "arch.intermediate=32",
                   "model.init=extract", f"model.source={tmp_path / 'export'}", "task=glue/mrpc"])
    tok = build_tokenizer(cfg)
    model, arch = build_model(cfg, get_task("glue/mrpc"), tok)
    assert arch.tuple == (1, 1, 16, 32) and arch.vocab_size == 30522 and arch.max_positions == 64   # inherited
    ids = torch.tensor([tok("a small test", "another one")["input_ids"]])
    assert model(ids).shape == (1, 2)
