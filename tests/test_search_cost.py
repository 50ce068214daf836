"""The FPTAS cost model against instantiated models: parameter counts of transformers.BertModel and of
bortlab's Encoder, and the operation count against torch's FLOP counter."""
import pytest
import torch
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bortlab.models.arch import PRESETS, Arch
from bortlab.search import CostModel, SearchError
from bortlab.search.cost import bert_config

ARCHS = [Arch(2, 4, 64, 128, vocab_size=500), Arch(3, 2, 96, 256, vocab_size=700, pooler=False),
         Arch(1, 8, 128, 64, vocab_size=300, type_vocab_size=1, max_positions=64), PRESETS["tiny"]]


def name(arch):
    return "x".join(map(str, arch.tuple)) + (f"-d{arch.head_dim}" if arch.head_dim else "")


def trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ARCHS, ids=name)
def test_params_equal_transformers_bert(arch):
    hf = transformers.BertModel(bert_config(arch), add_pooling_layer=arch.pooler)
    emb = sum(p.numel() for n, p in hf.named_parameters() if n.startswith("embeddings."))
    assert CostModel().params(arch) == trainable(hf)
    assert CostModel(effective=True).params(arch) == trainable(hf) - emb


@pytest.mark.parametrize("arch", ARCHS + [Arch(2, 4, 64, 128, vocab_size=500, head_dim=24)], ids=name)
def test_params_equal_bortlab_encoder(arch):
    from bortlab.models.encoder import Encoder

    enc = Encoder(arch)
    emb = sum(p.numel() for n, p in enc.named_parameters() if "embeddings" in n or n.startswith("emb_ln"))
    assert CostModel().params(arch) == trainable(enc)
    assert CostModel(effective=True).params(arch) == trainable(enc) - emb


def elementwise_ops(arch, L):
    """The non-matmul part of the op count (softmax 5/score, GELU 8/elt, LayerNorm 8/elt, residual adds,
    embedding sum + LayerNorm, pooler bias + tanh): what torch's FLOP counter, which counts matmuls only,
    cannot see."""
    A, H, I, D = arch.heads, arch.hidden, arch.intermediate, arch.depth
    return D * (5 * A * L * L + 8 * L * I + 16 * L * H + 2 * L * H) + 10 * L * H + (H if arch.pooler else 0)


@pytest.mark.parametrize("arch", ARCHS[:3], ids=name)
@pytest.mark.parametrize("L", [16, 40])
def test_ops_matmul_part_equals_torch_flop_counter(arch, L):
    hf = transformers.BertModel(bert_config(arch), add_pooling_layer=arch.pooler).eval()
    ids = torch.randint(0, arch.vocab_size, (1, L))
    # the math SDPA backend decomposes attention into bmm's, which the counter sees
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        hf(ids)
    assert CostModel(seq_len=L).ops(arch) - counter.get_total_flops() == elementwise_ops(arch, L)


def test_latency_cost_is_measured_once_per_architecture():
    cost = CostModel(seq_len=16, latency=True, repeats=2)
    arch = Arch(1, 2, 32, 64, vocab_size=100)
    first = cost.ops(arch)
    assert first > 0 and cost.ops(arch) == first  # cached: the FPTAS calls it more than once
    assert "latency" in cost.describe()
    with pytest.raises(SearchError, match="seq_len"):
        CostModel(seq_len=0)
