"""bf16 and int8 inference stay faithful to fp32 on real text: the real MiniLM on real RTE pairs, compared with
transformers' own fp32 hidden states at every real token."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def reference(minilm_dir, rte_dev_pairs):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    pairs = rte_dev_pairs[:48]
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], return_tensors="pt", padding=True, truncation=True,
              max_length=128)
    with torch.no_grad():
        hf = AutoModel.from_pretrained(minilm_dir).eval()(**enc).last_hidden_state
    return enc, hf


@pytest.mark.parametrize("precision, floor", [("fp32", 0.99999), ("bf16", 0.999), ("int8", 0.99)])
def test_precisions_keep_hidden_states_of_real_text(minilm_dir, reference, precision, floor):
    from bortlab.models.hf import load_pretrained

    enc, hf = reference
    model = load_pretrained(minilm_dir, precision=precision).eval()     # fp32 loads in train mode
    with torch.inference_mode():
        ours = model(enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"])
    real = enc["attention_mask"].bool()
    cos = torch.nn.functional.cosine_similarity(ours.float()[real], hf[real], dim=-1)
    assert float(cos.min()) >= floor, (precision, float(cos.min()), float(cos.mean()))
    if precision == "bf16":
        assert ours.dtype == torch.bfloat16
    if precision == "int8":       # the layers' weights are int8 now, the embeddings are not
        assert type(model.layers[0].qkv.weight.data) is not torch.Tensor
        assert type(model.word_embeddings.weight.data) is torch.Tensor


def test_an_unknown_precision_is_a_setup_error(minilm_dir):
    from bortlab.config import SetupError
    from bortlab.models.hf import load_pretrained

    with pytest.raises(SetupError, match="precision='fp8' is not one of fp32, bf16, int8"):
        load_pretrained(minilm_dir, precision="fp8")
