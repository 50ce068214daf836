"""MLM head: logits equal to transformers' BertForMaskedLM / RobertaForMaskedLM, export read back by transformers."""
import pytest
import torch
from transformers import (AutoModel, BertConfig, BertForMaskedLM, BertModel, RobertaConfig,
                          RobertaForMaskedLM)

from bortlab.models.hf import load_pretrained
from bortlab.models.mlm import MaskedLM, export_mlm, load_mlm, resolve_checkpoint

SMALL = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=40)


def _randomised(model):
    """HF inits LayerNorms to 1/0 and biases to 0; perturb everything so a swapped tensor cannot go unnoticed."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _batch(pad_id: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return ids.masked_fill(mask == 0, pad_id), mask


@pytest.mark.parametrize("cls, config", [
    (BertForMaskedLM, BertConfig(**SMALL)),
    (BertForMaskedLM, BertConfig(**SMALL, hidden_act="gelu_new", type_vocab_size=1)),
    (RobertaForMaskedLM, RobertaConfig(**SMALL, pad_token_id=1, type_vocab_size=1, layer_norm_eps=1e-5)),
])
def test_logits_equal_transformers_and_export_round_trips(tmp_path, cls, config):
    torch.manual_seed(0)
    ref = _randomised(cls(config))
    ref.save_pretrained(tmp_path / "src")
    ids, mask = _batch(config.pad_token_id)
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).logits
        ours = load_mlm(tmp_path / "src").eval()
        got = ours.logits(ours(ids, attention_mask=mask))
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=2e-5, rtol=1e-4)

    out = export_mlm(ours, tmp_path / "export")
    export_mlm(ours, tmp_path / "export")                  # replacing an existing export works
    back, info = cls.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(input_ids=ids, attention_mask=mask).logits[real], expected[real],
                                   atol=2e-5, rtol=1e-4)
        # the export is also a plain encoder checkpoint for fine-tuning (model.pretrained=<export>)
        enc = load_pretrained(out).eval()
        bare = AutoModel.from_pretrained(out).eval()
        torch.testing.assert_close(enc(ids, attention_mask=mask)[real],
                                   bare(input_ids=ids, attention_mask=mask).last_hidden_state[real], atol=2e-5, rtol=1e-4)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_decoder_is_tied_to_word_embeddings():
    from bortlab.models.arch import Arch
    from bortlab.models.encoder import Encoder

    arch = Arch(1, 2, 16, 32, vocab_size=50, pooler=False)
    m = MaskedLM(Encoder(arch))
    # transformers' BertForMaskedLM of that shape ties its decoder to the word embeddings: same count
    hf = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, max_position_embeddings=arch.max_positions))
    assert hf.cls.predictions.decoder.weight is hf.bert.embeddings.word_embeddings.weight
    assert sum(p.numel() for p in m.parameters()) == hf.num_parameters()
    m.logits(m(torch.randint(0, 50, (2, 5)))).sum().backward()
    assert m.encoder.word_embeddings.weight.grad.abs().sum() > 0
    assert not any(k.startswith("head.") and "embed" in k for k in m.state_dict())


def test_bare_encoder_checkpoint_has_no_head(tmp_path):
    _randomised(BertModel(BertConfig(**SMALL))).save_pretrained(tmp_path / "bare")
    m = load_mlm(tmp_path / "bare")
    assert m.head is None and m.arch.pooler
    with pytest.raises(ValueError, match="no masked-LM head"):
        load_mlm(tmp_path / "bare", require_head=True)
    with pytest.raises(ValueError, match="no MLM head"):
        m.logits(torch.zeros(1, 32))


def test_run_directory_stands_for_its_export(tmp_path):
    (tmp_path / "run" / "export").mkdir(parents=True)
    (tmp_path / "run" / "export" / "config.json").write_text("{}")
    assert resolve_checkpoint(tmp_path / "run") == str(tmp_path / "run" / "export")
    assert resolve_checkpoint(tmp_path / "run" / "export") == str(tmp_path / "run" / "export")
    assert resolve_checkpoint("org/model") == "org/model"
