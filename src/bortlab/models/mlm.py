"""Masked-LM head on the bortlab encoder, and HF `BertForMaskedLM` / `RobertaForMaskedLM` checkpoints in and out.

The head is BERT's: dense H->H, activation, LayerNorm, then a decoder whose weight *is* the encoder's word
embedding matrix (tied, as in BERT, RoBERTa and Bort) plus a per-token bias. RoBERTa's `lm_head` has the same
maths under other names (and always uses exact GELU, which is also what RoBERTa configs declare).

Logits are usually wanted at the masked positions only (15% of tokens): `MaskedLM.logits(rows)` takes the
(N, H) hidden rows to score, so the (N, V) product is never computed for the other 85%.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bortlab.models.arch import Arch
from bortlab.models.encoder import Encoder, _activation

log = logging.getLogger(__name__)

# our head names -> (BERT name, RoBERTa name); the tied decoder weight is never stored (HF drops it too)
_HEAD_KEYS = {
    "dense.weight": ("cls.predictions.transform.dense.weight", "lm_head.dense.weight"),
    "dense.bias": ("cls.predictions.transform.dense.bias", "lm_head.dense.bias"),
    "ln.weight": ("cls.predictions.transform.LayerNorm.weight", "lm_head.layer_norm.weight"),
    "ln.bias": ("cls.predictions.transform.LayerNorm.bias", "lm_head.layer_norm.bias"),
    "bias": ("cls.predictions.bias", "lm_head.bias"),
}


class MLMHead(nn.Module):
    """transform (dense, act, LayerNorm) + tied decoder; the decoder weight is passed in at call time so
    the embedding matrix has exactly one owner (the encoder) and appears once in every state dict."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.dense = nn.Linear(arch.hidden, arch.hidden)
        self.ln = nn.LayerNorm(arch.hidden, eps=arch.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(arch.vocab_size))
        self.act = _activation(arch.hidden_act)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, rows: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        return F.linear(self.ln(self.act(self.dense(rows))), decoder_weight, self.bias)


class MaskedLM(nn.Module):
    """An `Encoder` with an optional MLM head. `head=None` is a teacher that only offers hidden states
    (a checkpoint without MLM weights, such as the offline MiniLM)."""

    def __init__(self, encoder: Encoder, head: MLMHead | None | str = "new"):
        super().__init__()
        self.encoder = encoder
        self.head = MLMHead(encoder.arch) if head == "new" else head

    @property
    def arch(self) -> Arch:
        return self.encoder.arch

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Last hidden states (B, L, H)."""
        return self.encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """(..., H) hidden rows -> (..., V) vocabulary logits."""
        if self.head is None:
            raise ValueError("this model has no MLM head (its checkpoint carried none); use its hidden states")
        return self.head(rows, self.encoder.word_embeddings.weight)


# ---- checkpoints --------------------------------------------------------------------------------------
def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """A pre-training run directory stands for the HF checkpoint it exported (`<run>/export`), so every
    stage can be handed the previous stage's run directory or its export directory alike."""
    name = os.path.expanduser(os.fspath(name_or_path))
    if os.path.isdir(name) and not os.path.exists(os.path.join(name, "config.json")) \
            and os.path.exists(os.path.join(name, "export", "config.json")):
        return os.path.join(name, "export")
    return name


def load_mlm(name_or_path: str | os.PathLike, *, dropout: float | None = None, revision: str | None = None,
             require_head: bool = False) -> MaskedLM:
    """Load any BERT/RoBERTa/Bort checkpoint (hub id or local dir) as a `MaskedLM`.

    The encoder comes from `bortlab.models.hf.load_pretrained` (its errors, pooler policy and safe loading).
    The head comes from the same checkpoint read as `AutoModelForMaskedLM`; a checkpoint without MLM weights
    gives `head=None`, or a clear error with `require_head=True`."""
    from transformers import AutoModelForMaskedLM

    from bortlab.models.hf import _quiet_transformers, load_pretrained

    name = resolve_checkpoint(name_or_path)
    enc = load_pretrained(name, revision=revision, dropout=dropout)
    kw = {"local_files_only": True} if os.path.isdir(name) else {}
    with _quiet_transformers():
        hf, info = AutoModelForMaskedLM.from_pretrained(name, revision=revision, output_loading_info=True, **kw)
    missing = set(info.get("missing_keys", ()))
    roberta = enc.arch.position_offset > 0
    names = {ours: pair[1 if roberta else 0] for ours, pair in _HEAD_KEYS.items()}
    if any(names[k] in missing for k in ("dense.weight", "ln.weight", "bias")):
        if require_head:
            raise ValueError(
                f"The checkpoint {name!r} has no masked-LM head (no {names['dense.weight']} weights): it is a bare "
                "encoder such as a BertModel or a sentence-embedding model. It can serve as a hidden-state teacher "
                "(task.hidden_weight > 0) but not for logit distillation; use a *ForMaskedLM checkpoint instead.")
        log.info("%s has no MLM head: hidden states only", name)
        return MaskedLM(enc, head=None)
    sd = hf.state_dict()
    head = MLMHead(enc.arch)
    head.load_state_dict({ours: sd[hf_name] for ours, hf_name in names.items()}, strict=True)
    if not torch.equal(sd[("lm_head" if roberta else "cls.predictions") + ".decoder.weight"],
                       enc.word_embeddings.weight):
        raise ValueError(f"{name!r}: the MLM decoder is not tied to the word embeddings; bortlab's head is tied "
                         "(as BERT, RoBERTa and Bort) and cannot represent an untied decoder exactly.")
    del hf, sd
    return MaskedLM(enc, head)


def hf_state_from_mlm(model: MaskedLM) -> dict:
    """The `BertForMaskedLM` / `RobertaForMaskedLM` state dict (tied decoder omitted, as transformers saves it)."""
    from bortlab.models.hf import hf_state_from_encoder

    roberta = model.arch.position_offset > 0
    prefix = "roberta." if roberta else "bert."
    out = {prefix + k: v for k, v in hf_state_from_encoder(model.encoder).items()}
    if model.head is not None:
        for ours, t in model.head.state_dict().items():
            out[_HEAD_KEYS[ours][1 if roberta else 0]] = t.detach().contiguous().clone()
    return out


def export_mlm(model: MaskedLM, out_dir: str | os.PathLike, tokenizer=None) -> Path:
    """Write `model` as a transformers `BertForMaskedLM` (or `RobertaForMaskedLM` for offset positions)
    directory, atomically: written beside `out_dir`, then renamed over it. `load_mlm`, `load_pretrained`
    and transformers' `AutoModelForMaskedLM` / `AutoModel` all read it back."""
    from bortlab.models.hf import check_vocab, hf_config_from_arch, write_hf_dir

    config = hf_config_from_arch(model.arch)          # ExportError before touching the disk
    cls = "RobertaForMaskedLM" if model.arch.position_offset > 0 else "BertForMaskedLM"
    config.architectures = [cls if model.head is not None else cls.replace("ForMaskedLM", "Model")]
    if tokenizer is not None:
        check_vocab(model.encoder, tokenizer)
    return write_hf_dir(out_dir, config, hf_state_from_mlm(model), tokenizer)
