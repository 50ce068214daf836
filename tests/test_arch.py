"""Arch: validation errors and parameter counts against transformers' own models."""
import pytest
import transformers

from bortlab.models.arch import PRESETS, Arch, ArchError


def hf_bert(arch: Arch) -> transformers.BertModel:
    cfg = transformers.BertConfig(
        vocab_size=arch.vocab_size, hidden_size=arch.hidden, num_hidden_layers=arch.depth,
        num_attention_heads=arch.heads, intermediate_size=arch.intermediate,
        max_position_embeddings=arch.max_positions, type_vocab_size=arch.type_vocab_size,
    )
    return transformers.BertModel(cfg, add_pooling_layer=arch.pooler)


@pytest.mark.parametrize("arch", [PRESETS["tiny"], PRESETS["minilm"], Arch(3, 5, 80, 200, vocab_size=1000),
                                  Arch(2, 4, 64, 96, pooler=False, type_vocab_size=1, vocab_size=500)])
def test_num_params_equals_transformers(arch):
    hf = hf_bert(arch)
    assert arch.num_params() == hf.num_parameters()
    emb = sum(p.numel() for n, p in hf.named_parameters() if n.startswith("embeddings."))
    assert arch.num_params(non_embedding=True) == hf.num_parameters() - emb


def test_preset_sizes_match_published_counts():
    assert round(PRESETS["bert_large"].num_params() / 1e6) == 335
    assert round(PRESETS["bert_base"].num_params() / 1e6) == 109  # HF BertModel: 109,482,240
    # the paper: Bort is 16% of BERT-large (net), its embeddings ~39M of its 56M
    paper = PRESETS["bort_paper"]
    assert 0.15 < paper.num_params() / PRESETS["bert_large"].num_params() < 0.17
    assert round((paper.num_params() - paper.num_params(True)) / 1e6) == 39


def test_invalid_tuple_names_the_fix():
    with pytest.raises(ArchError, match=r"heads must divide hidden.*head_dim"):
        Arch(4, 5, 128, 512)
    with pytest.raises(ArchError, match="depth"):
        Arch(0, 2, 128, 512)
    with pytest.raises(ArchError, match="Unknown Arch field"):
        Arch.from_dict({"depth": 2, "heads": 2, "hidden": 8, "intermediate": 8, "layers": 3})
    assert Arch(4, 5, 128, 512, head_dim=32).attn_width == 160


def test_ops_grow_with_length_and_size():
    a = PRESETS["minilm"]
    assert a.num_ops(256) > 2 * a.num_ops(128)  # attention is quadratic in length
    assert PRESETS["bert_large"].num_ops(128) > PRESETS["bort"].num_ops(128) * 10
    # dominant term: 2 * params * tokens for the matmuls
    body = a.num_params(True)
    assert 1.0 < a.num_ops(128) / (2 * body * 128) < 1.5
