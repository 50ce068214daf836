"""Hugging Face interop proven against transformers itself: random and real checkpoints load into Encoder
with equal hidden states; exports load back into transformers with equal outputs; errors are clear."""
import os

import pytest
import torch
from transformers import (AutoModel, AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification,
                          BertModel, BertTokenizer, RobertaConfig, RobertaForSequenceClassification,
                          RobertaModel)

from bortlab.models import Arch, Encoder
from bortlab.models.hf import (CheckpointNotFoundError, ExportError, VocabMismatchError, check_vocab,
                               export_pretrained, load_pretrained)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _inputs(vocab, pad, B=3, L=21, types=2, seed=0):
    """Ids with right padding of several lengths (one row full, one of length 1), and token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(pad + 2, vocab, (B, L), generator=g)
    mask = (torch.arange(L)[None] < torch.tensor([L, 1, L // 2][:B])[:, None]).long()
    tt = (torch.arange(L)[None] >= L // 3).long().expand(B, L).clone() if types > 1 else None
    return ids.masked_fill(mask == 0, pad), mask, tt


def _assert_same(enc, hf_base, ids, mask, tt, pooled=True):
    with torch.no_grad():
        ref = hf_base(ids, attention_mask=mask, token_type_ids=tt)
        for unpad in (True, False):
            enc.unpad = unpad
            ours = enc(ids, mask, tt)
            diff = ((ours - ref.last_hidden_state) * mask[..., None]).abs().max().item()
            assert diff <= 1e-5, f"unpad={unpad}: max abs diff {diff:.2e} on real tokens"
            if pooled:
                assert (enc.pool(ours) - ref.pooler_output).abs().max().item() <= 1e-5
        enc.unpad = True


def _roundtrip(hf_model, tmp_path, **kw):
    hf_model.eval().save_pretrained(tmp_path / "ckpt")
    return load_pretrained(tmp_path / "ckpt", **kw).eval()


BORT = dict(vocab_size=2000, hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, intermediate_size=768,
            max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1)
CASES = {
    "bort_shape": (BertModel, BertConfig(**BORT)),
    "odd_3x5x80x200": (BertModel, BertConfig(vocab_size=300, hidden_size=80, num_hidden_layers=3,
                                             num_attention_heads=5, intermediate_size=200)),
    "gelu_new_relu_eps": (BertModel, BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, intermediate_size=96, hidden_act="gelu_new",
                                                layer_norm_eps=1e-7)),
    "relu": (BertModel, BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, hidden_act="relu")),
    "roberta_offset": (RobertaModel, RobertaConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                                                   num_attention_heads=4, intermediate_size=128, pad_token_id=1,
                                                   max_position_embeddings=40, type_vocab_size=1)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_random_hf_model_loads_with_equal_hidden_states(case, tmp_path):
    cls, config = CASES[case]
    torch.manual_seed(0)
    hf = cls(config)
    enc = _roundtrip(hf, tmp_path)
    assert enc.arch.tuple == (config.num_hidden_layers, config.num_attention_heads, config.hidden_size,
                              config.intermediate_size)
    assert enc.num_params() == hf.num_parameters() == enc.arch.num_params()
    assert enc.arch.position_offset == (config.pad_token_id + 1 if cls is RobertaModel else 0)
    ids, mask, tt = _inputs(config.vocab_size, config.pad_token_id, types=config.type_vocab_size)
    _assert_same(enc, hf, ids, mask, tt)


def test_bert_base_shape(tmp_path):
    torch.manual_seed(0)
    hf = BertModel(BertConfig(vocab_size=3000))
    enc = _roundtrip(hf, tmp_path)
    assert enc.arch.replace(vocab_size=30522) == Arch.preset("bert_base")
    _assert_same(enc, hf, *_inputs(3000, 0, B=2, L=64))


@pytest.mark.parametrize("cls,config,prefix,pooler", [
    (BertForSequenceClassification, BertConfig(vocab_size=200, hidden_size=48, num_hidden_layers=2,
                                               num_attention_heads=3, intermediate_size=64), "bert", True),
    # RoBERTa's classification head has its own dense+tanh; its base model is built without a pooler
    (RobertaForSequenceClassification, RobertaConfig(vocab_size=200, hidden_size=48, num_hidden_layers=2,
                                                     num_attention_heads=3, intermediate_size=64, pad_token_id=1,
                                                     max_position_embeddings=40, type_vocab_size=1), "roberta", False),
])
def test_head_class_checkpoints_strip_their_prefix(cls, config, prefix, pooler, tmp_path):
    torch.manual_seed(0)
    hf = cls(config)
    enc = _roundtrip(hf, tmp_path)
    assert enc.arch.pooler == pooler == (getattr(hf, prefix).pooler is not None)
    base = getattr(hf, prefix)
    _assert_same(enc, base, *_inputs(200, config.pad_token_id, types=config.type_vocab_size), pooled=pooler)


def test_checkpoint_without_pooler_gives_pooler_false(tmp_path):
    torch.manual_seed(0)
    hf = BertForMaskedLM(BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64))
    enc = _roundtrip(hf, tmp_path, dropout=0.0)
    assert not enc.arch.pooler and enc.pooler is None and enc.arch.dropout == enc.arch.attention_dropout == 0.0
    ids, mask, tt = _inputs(200, 0)
    _assert_same(enc, hf.bert, ids, mask, tt, pooled=False)
    with torch.no_grad():
        h = enc(ids, mask, tt)
    torch.testing.assert_close(enc.pool(h), h[:, 0], atol=0, rtol=0)   # documented: CLS state without pooler


def test_real_minilm_on_rte_sentences(minilm_dir, rte_dev_pairs, tokenizer):
    torch.manual_seed(0)
    tok = tokenizer
    hf = BertModel.from_pretrained(minilm_dir).eval()
    enc = load_pretrained(minilm_dir).eval()
    assert enc.arch == Arch.preset("minilm").replace(dropout=0.1, attention_dropout=0.1)
    check_vocab(enc, tok, checkpoint=minilm_dir)
    pairs = rte_dev_pairs[:12]
    batch = tok([a for a, _ in pairs], [b for _, b in pairs], padding="longest", truncation=True, max_length=256,
                return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()          # real dynamic padding
    _assert_same(enc, hf, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


@pytest.mark.parametrize("kind", ["sequence", "multiple_choice"])
def test_mean_pooled_head_on_real_minilm_equals_the_sentence_transformers_formula(kind, minilm_dir, rte_dev_pairs,
                                                                                   tokenizer):
    """model.pooling=mean: the head reads the average of transformers' last_hidden_state over real tokens
    (sentence-transformers' mean pooling, which all-MiniLM-L6-v2 was trained with), padded or unpadded."""
    from bortlab.models.heads import MultipleChoice, SequenceClassifier

    torch.manual_seed(0)
    tok = tokenizer
    hf = BertModel.from_pretrained(minilm_dir).eval()
    enc = load_pretrained(minilm_dir)
    head = (SequenceClassifier(enc, 3, pooling="mean") if kind == "sequence"
            else MultipleChoice(enc, pooling="mean")).eval()
    pairs = rte_dev_pairs[:8]
    batch = tok([a for a, _ in pairs], [b for _, b in pairs], padding="longest", truncation=True, max_length=256,
                return_tensors="pt")
    ids, mask, tt = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    assert (mask == 0).any()
    with torch.no_grad():
        h = hf(ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        m = mask.unsqueeze(-1).float()
        ref = head.classifier((h * m).sum(1) / m.sum(1))                   # (8, out)
        for unpad in (True, False):
            enc.unpad = unpad
            if kind == "sequence":
                ours = head(ids, mask, tt)
            else:                                                          # 4 questions x 2 choices
                ours = head(ids.view(4, 2, -1), mask.view(4, 2, -1), tt.view(4, 2, -1)).view(8, 1)
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
        assert not torch.allclose(ref, head.classifier(torch.tanh(enc.pooler(h[:, 0]))), atol=1e-3)   # not cls


def test_unknown_pooling_is_a_clear_error():
    from bortlab.models.heads import SequenceClassifier

    with pytest.raises(ValueError, match="pooling must be one of"):
        SequenceClassifier(Encoder(Arch(1, 2, 32, 64, vocab_size=50, max_positions=16)), 2, pooling="max")


# ---- export ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [
    Arch(2, 2, 32, 64, vocab_size=100, max_positions=40),
    Arch(3, 5, 80, 200, vocab_size=100, max_positions=40, hidden_act="gelu_new"),
    Arch(2, 4, 64, 96, vocab_size=120, max_positions=30, pad_token_id=1, position_offset=2, type_vocab_size=1,
         layer_norm_eps=1e-5),
    Arch.preset("bort", vocab_size=500, pooler=False),
    Arch(1, 4, 64, 32, vocab_size=90, max_positions=30, type_vocab_size=0, pooler=False, hidden_act="relu"),
], ids=str)
def test_export_loads_in_transformers_with_equal_outputs(arch, tmp_path):
    torch.manual_seed(0)
    enc = Encoder(arch).eval()
    out = export_pretrained(enc, tmp_path / "export")
    assert sorted(os.listdir(tmp_path)) == ["export"]                 # no temp dirs left behind
    assert {"config.json", "model.safetensors"} <= set(os.listdir(out))
    hf = AutoModel.from_pretrained(out).eval()
    assert type(hf) is (RobertaModel if arch.position_offset else BertModel)
    if arch.pooler:
        assert hf.num_parameters() == enc.num_params() == arch.num_params()
    ids, mask, tt = _inputs(arch.vocab_size, arch.pad_token_id, types=arch.type_vocab_size)
    _assert_same(enc, hf, ids, mask, tt, pooled=arch.pooler)
    # the export's config as transformers reads it (not bortlab's reader), field by field
    c = hf.config
    assert (c.num_hidden_layers, c.num_attention_heads, c.hidden_size, c.intermediate_size) == arch.tuple
    assert (c.vocab_size, c.max_position_embeddings, c.layer_norm_eps, c.hidden_act, c.pad_token_id) == (
        arch.vocab_size, arch.max_positions, arch.layer_norm_eps, arch.hidden_act, arch.pad_token_id)
    if arch.type_vocab_size == 0:                                      # documented: exported as one zero row
        assert c.type_vocab_size == 1 and hf.embeddings.token_type_embeddings.weight.abs().max() == 0
    else:
        assert c.type_vocab_size == arch.type_vocab_size
    # and back again: bortlab's loader against transformers on the exported weights (comparing the reload with
    # the exporting Encoder only would pass on a mistake export and load share, e.g. a swapped tensor pair)
    back = load_pretrained(out).eval()
    assert back.arch == (arch.replace(type_vocab_size=1) if arch.type_vocab_size == 0 else arch)
    _assert_same(back, hf, ids, mask, tt, pooled=arch.pooler)


def _tokenizer(n):
    """A WordPiece tokenizer with exactly n tokens, built in memory."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(n - 5)]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    assert len(tok) == n
    return tok


def test_export_replaces_existing_dir_and_saves_tokenizer(tmp_path):
    tok = _tokenizer(100)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("old")
    enc = Encoder(Arch(1, 2, 16, 32, vocab_size=100, max_positions=16))
    out = export_pretrained(enc, tmp_path / "out", tokenizer=tok)
    assert not (out / "stale.txt").exists() and os.listdir(tmp_path) == ["out"]
    assert len(AutoTokenizer.from_pretrained(out)) == 100


def test_export_rejects_what_transformers_cannot_express(tmp_path):
    enc = Encoder(Arch(2, 3, 48, 96, head_dim=20, vocab_size=50))
    with pytest.raises(ExportError, match="head_dim=20"):
        export_pretrained(enc, tmp_path / "x")
    with pytest.raises(ExportError, match="position_offset=5"):
        export_pretrained(Encoder(Arch(1, 2, 16, 32, vocab_size=50, position_offset=5)), tmp_path / "y")
    assert not any(tmp_path.iterdir())                                 # nothing written


# ---- vocabulary and missing-checkpoint errors --------------------------------------------------------


def test_check_vocab():
    small = _tokenizer(300)
    check_vocab(Arch(1, 2, 16, 32, vocab_size=300), small)                  # exact fit
    check_vocab(Arch(1, 2, 16, 32, vocab_size=304), small)                  # rows padded up a little: fine
    with pytest.raises(VocabMismatchError) as e:                            # Bort/RoBERTa rows, WordPiece-sized tok
        check_vocab(Arch.preset("bort"), small, checkpoint="amazon/bort")
    msg = str(e.value)
    assert all(s in msg for s in ("300 tokens", "50265 embedding rows", "amazon/bort", "model.tokenizer="))
    assert isinstance(e.value, ValueError)
    with pytest.raises(VocabMismatchError, match="more tokens than"):
        check_vocab(Encoder(Arch(1, 2, 16, 32, vocab_size=200)), small)


def test_real_minilm_tokenizer_against_bort_checkpoint(tokenizer):
    tok = tokenizer
    with pytest.raises(VocabMismatchError, match="30522 tokens.*50265 embedding rows"):
        check_vocab(Arch.preset("bort"), tok, checkpoint="amazon/bort")


def test_missing_local_checkpoint_is_a_clear_error(tmp_path):
    missing = tmp_path / "no" / "such" / "ckpt"
    with pytest.raises(CheckpointNotFoundError) as e:
        load_pretrained(missing)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError) and str(missing) in msg
    assert "does not exist" in msg and "model.init=scratch" in msg
    (tmp_path / "empty").mkdir()                                 # a directory without config.json
    with pytest.raises(CheckpointNotFoundError, match="exists but does not hold") as e:
        load_pretrained(tmp_path / "empty")
    assert isinstance(e.value.__cause__, (OSError, ValueError)) and "model.init=scratch" in str(e.value)


def test_unreachable_hub_id_is_a_clear_error_with_cause():
    # local_files_only: the hub is unreachable here anyway; this avoids transformers' network retries
    with pytest.raises(CheckpointNotFoundError) as e:
        load_pretrained("bortlab-test/does-not-exist", revision="main", local_files_only=True)
    msg = str(e.value)
    assert "Hugging Face Hub" in msg and "bortlab-test/does-not-exist" in msg and "model.init=scratch" in msg
    assert isinstance(e.value.__cause__, OSError)
