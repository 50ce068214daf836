"""The parametric encoder and heads: parameter counts, unpadded == padded == one-by-one, training, heads vs HF."""
import pytest
import torch
from transformers import BertConfig, BertForMultipleChoice, BertForSequenceClassification, BertModel

from bortlab.models import Arch, Encoder, MultipleChoice, SequenceClassifier
from bortlab.models.hf import encoder_state_from_hf

SHAPES = [
    Arch(2, 2, 32, 64, vocab_size=100, max_positions=40),
    Arch(3, 5, 80, 200, vocab_size=100, max_positions=40),                       # odd, heads | hidden
    Arch(2, 3, 48, 96, head_dim=20, vocab_size=100, max_positions=40),           # attn width 60 != hidden
    Arch(1, 4, 64, 32, vocab_size=120, type_vocab_size=0, pooler=False, hidden_act="relu"),
    Arch(2, 4, 64, 128, vocab_size=100, max_positions=40, pad_token_id=1, position_offset=2, hidden_act="gelu_new"),
]


def _batch(arch, B=4, L=19, seed=0, lengths=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, arch.vocab_size, (B, L), generator=g)
    lengths = torch.tensor(lengths or [L, 1, L - 7, 5][:B])
    mask = (torch.arange(L)[None] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, arch.pad_token_id)
    types = (torch.arange(L)[None] >= 3).long().expand(B, L).clone() if arch.type_vocab_size > 1 else None
    return ids, mask, types


def _reference_count(arch: Arch) -> tuple[int, int]:
    """(parameters, parameters outside the embeddings) of transformers' BertModel of the same shape; the one
    shape transformers cannot express (head_dim=20: attention width 60 != hidden 48) is counted by hand."""
    if arch.head_dim is not None:
        assert (arch.depth, arch.heads, arch.hidden, arch.intermediate, arch.head_dim) == (2, 3, 48, 96, 20)
        H, W, I = 48, 60, 96
        emb = (100 + 40 + 2) * H + 2 * H                                    # word, position, type rows + LayerNorm
        layer = (3 * (H * W + W) + (W * H + H) + 2 * H) + ((H * I + I) + (I * H + H) + 2 * H)
        body = 2 * layer + (H * H + H)                                      # two layers and the pooler
        return emb + body, body
    hf = BertModel(BertConfig(vocab_size=arch.vocab_size, hidden_size=arch.hidden, num_hidden_layers=arch.depth,
                              num_attention_heads=arch.heads, intermediate_size=arch.intermediate,
                              max_position_embeddings=arch.max_positions, type_vocab_size=arch.type_vocab_size),
                   add_pooling_layer=arch.pooler)
    emb = sum(p.numel() for n, p in hf.named_parameters() if n.startswith("embeddings."))
    return hf.num_parameters(), hf.num_parameters() - emb


@pytest.mark.parametrize("arch", SHAPES + [Arch.preset("bort"), Arch.preset("bert_base")], ids=str)
def test_num_params_match_transformers_or_a_hand_count(arch):
    """Both bortlab counts (the module's and Arch's formula) against a reference outside bortlab: comparing
    them with each other only would pass on a mistake they share."""
    ref = _reference_count(arch)
    enc = Encoder(arch)
    assert (enc.num_params(), enc.num_params(non_embedding=True)) == ref
    assert (arch.num_params(), arch.num_params(non_embedding=True)) == ref


@pytest.mark.parametrize("arch", SHAPES, ids=str)
def test_unpadded_paths_equal_padded_and_one_by_one(arch):
    torch.manual_seed(0)
    enc = Encoder(arch).eval()
    ids, mask, types = _batch(arch)
    real = mask.bool()
    with torch.no_grad():
        enc.unpad = False
        dense = enc(ids, mask, types)                      # classic padded path with an SDPA mask
        enc.unpad = True
        for per_seq in (True, False):                      # unpadded rows; attention per sequence / on a grid
            enc.per_sequence_attention = per_seq
            fast = enc(ids, mask, types)
            assert fast.shape == (4, 19, arch.hidden)
            torch.testing.assert_close(fast[real], dense[real], atol=1e-5, rtol=0)
            assert fast[~real].abs().max() == 0            # documented: pads are zero on the unpadded path
        for b in range(ids.shape[0]):                      # each sequence alone, no padding at all
            n = int(mask[b].sum())
            alone = enc(ids[b:b + 1, :n], None, None if types is None else types[b:b + 1, :n])
            torch.testing.assert_close(dense[b, :n], alone[0], atol=1e-5, rtol=0)
        full = torch.ones_like(mask)                       # an all-ones mask is the maskless path
        torch.testing.assert_close(enc(ids, full, types), enc(ids, None, types), atol=0, rtol=0)


def test_left_padding_and_an_empty_row():
    arch = SHAPES[1]
    torch.manual_seed(0)
    enc = Encoder(arch).eval()
    ids, mask, _ = _batch(arch, lengths=[19, 0, 12, 5])
    left_ids, left_mask = ids.flip(1), mask.flip(1)        # real tokens at the end; BERT positions still 0..L-1
    with torch.no_grad():
        enc.unpad = False
        ref = enc(left_ids, left_mask)
        enc.unpad = True
        for per_seq in (True, False):
            enc.per_sequence_attention = per_seq
            got = enc(left_ids, left_mask)
            keep = left_mask.bool()
            torch.testing.assert_close(got[keep], ref[keep], atol=1e-5, rtol=0)
            assert torch.isfinite(got).all()


@pytest.mark.parametrize("threads, grad, per_sequence", [
    (1, False, True), (1, True, True), (2, False, True), (2, True, False), (3, False, False)])
def test_the_default_attention_layout_follows_threads_and_grad(monkeypatch, threads, grad, per_sequence):
    # per sequence = one SDPA call per non-empty sequence and layer; the grid = one call per layer
    import bortlab.models.encoder as encoder_module

    arch = SHAPES[1]
    enc = Encoder(arch).eval()
    ids, mask, types = _batch(arch)
    calls = []
    sdpa = encoder_module.F.scaled_dot_product_attention
    monkeypatch.setattr(encoder_module.F, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.set_grad_enabled(grad):
            enc(ids, mask, types)
    finally:
        torch.set_num_threads(before)
    assert len(calls) == arch.depth * (ids.shape[0] if per_sequence else 1)


@pytest.mark.parametrize("arch", [SHAPES[1], SHAPES[2], SHAPES[4]], ids=str)
def test_gradients_equal_on_both_paths(arch):
    arch = arch.replace(dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    enc = Encoder(arch).train()
    ids, mask, types = _batch(arch)
    grads = []
    for unpad, per_seq in ((True, True), (False, None), (True, False)):
        enc.zero_grad()
        enc.unpad, enc.per_sequence_attention = unpad, per_seq
        h = enc(ids, mask, types)
        (enc.pool(h).square().sum() + (h * mask[..., None]).sum()).backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None})
    assert set(grads[0]) == set(grads[1]) == set(grads[2]) == {n for n, _ in enc.named_parameters()}
    for other in grads[1:]:
        for n in grads[0]:
            torch.testing.assert_close(grads[0][n], other[n], atol=1e-5, rtol=1e-4, msg=n)
    pad_row = enc.word_embeddings.padding_idx
    assert grads[0]["word_embeddings.weight"][pad_row].abs().max() == 0   # HF's padding_idx semantics


def test_train_mode_dropout_and_a_step_reduces_loss():
    arch = Arch(2, 2, 32, 64, vocab_size=50, max_positions=16, dropout=0.2, attention_dropout=0.2)
    torch.manual_seed(0)
    model = SequenceClassifier(Encoder(arch), num_labels=2)
    ids, mask, types = _batch(arch, L=12)
    labels = torch.tensor([0, 1, 1, 0])
    model.train()
    a, b = model(ids, mask, types), model(ids, mask, types)
    assert not torch.equal(a, b)                                  # dropout active on the unpadded path
    model.eval()
    torch.testing.assert_close(model(ids, mask, types), model(ids, mask, types), atol=0, rtol=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(ids, mask, types), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5


def test_too_long_input_is_a_clear_error():
    enc = Encoder(Arch(1, 2, 16, 32, vocab_size=20, max_positions=8))
    with pytest.raises(ValueError, match="max_positions=8"):
        enc(torch.ones(1, 9, dtype=torch.long))
    roberta = Encoder(Arch(1, 2, 16, 32, vocab_size=20, max_positions=10, pad_token_id=1, position_offset=2))
    roberta(torch.full((1, 8), 5))                                   # positions 2..9 fit exactly
    with pytest.raises(ValueError, match="position offset 2"):
        roberta(torch.full((1, 9), 5))


def _hf_pair(hf_cls, **kw):
    """A random HF head model and our head with its weights (encoder via encoder_state_from_hf)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=80, max_position_embeddings=32, **kw)
    hf = hf_cls(config).eval()
    from bortlab.models.hf import arch_from_hf_config
    arch = arch_from_hf_config(config)
    enc = Encoder(arch)
    enc.load_state_dict(encoder_state_from_hf(hf.state_dict(), arch))
    return hf, enc


@pytest.mark.parametrize("num_labels", [1, 3])
def test_sequence_classifier_equals_hf(num_labels):
    hf, enc = _hf_pair(BertForSequenceClassification, num_labels=num_labels)
    ours = SequenceClassifier(enc, num_labels).eval()
    ours.classifier.load_state_dict(hf.classifier.state_dict())
    ids, mask, types = _batch(enc.arch, L=15)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask, types), hf(ids, attention_mask=mask, token_type_ids=types).logits,
                                   atol=1e-5, rtol=0)
    assert ours.encoder is enc and ours(ids, mask).shape == (4, num_labels)


def test_multiple_choice_equals_hf():
    hf, enc = _hf_pair(BertForMultipleChoice)
    ours = MultipleChoice(enc).eval()
    ours.classifier.load_state_dict(hf.classifier.state_dict())
    ids, mask, types = _batch(enc.arch, B=4, L=11)
    ids, mask, types = (t.view(2, 2, 11) for t in (ids, mask, types))   # 2 questions x 2 choices
    with torch.no_grad():
        got = ours(ids, mask, types)
        assert got.shape == (2, 2)
        torch.testing.assert_close(got, hf(ids, attention_mask=mask, token_type_ids=types).logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch, choices, length"):
        ours(ids[0])


def test_all_padding_batch_and_pickling():
    import pickle
    enc = Encoder(Arch(1, 2, 16, 32, vocab_size=20, max_positions=8, hidden_act="gelu_new"))
    ids = torch.ones(2, 4, dtype=torch.long)
    assert enc(ids, torch.zeros_like(ids)).abs().max() == 0              # no real token at all: zeros, no error
    clone = pickle.loads(pickle.dumps(enc))                              # ddp_spawn / torch.save(model) need this
    torch.testing.assert_close(clone.eval()(ids), enc.eval()(ids), atol=0, rtol=0)
