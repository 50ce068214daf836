"""Turn the `model` and `arch` config nodes into a tokenizer and an encoder with a task head.

model.init:
  pretrained  load `model.pretrained` (hub id or directory); its shape must be the `arch` asked for
  scratch     build `arch` from N(0, 0.02); the vocabulary size follows the tokenizer
  extract     inherit weights from `model.source` into the smaller `arch` (see bortlab.models.extract)
"""
from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from bortlab.config import SetupError
from bortlab.hub import hub_kwargs
from bortlab.models.arch import Arch

log = logging.getLogger(__name__)

INITS = ("pretrained", "scratch", "extract")


def load_tokenizer(name: str):
    """The tokenizer of a checkpoint (hub id, dir, or a pre-training run dir: its export/)."""
    from transformers import AutoTokenizer

    from bortlab.models.mlm import resolve_checkpoint

    name = resolve_checkpoint(name)          # a pre-training run directory stands for its export/
    return AutoTokenizer.from_pretrained(name, **hub_kwargs(name))


def build_tokenizer(cfg: DictConfig):
    """`model.tokenizer` when given; else the checkpoint's own; for scratch runs the checkpoint's named in
    `model.pretrained` when reachable (Bort's RoBERTa vocabulary for arch=bort), else the offline MiniLM's."""
    m = cfg.model
    if m.init not in INITS:
        raise SetupError(f"model.init={m.init!r} is not one of {INITS}.")
    if m.get("tokenizer"):
        tried = [m.tokenizer]
    elif m.init == "pretrained":
        tried = [m.pretrained]
    elif m.init == "extract":
        tried = [m.get("source") or m.pretrained]
    else:
        from bortlab.config import minilm_path

        tried = ([m.pretrained] if m.get("pretrained") else []) + [minilm_path()]
    errors = []
    for name in tried:
        if not name:
            continue
        try:
            tok = load_tokenizer(str(name))
            log.info("tokenizer: %s (%d entries)", name, len(tok))
            return tok
        except Exception as e:  # unreachable hub id, not a tokenizer directory, ...
            errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    if m.init == "pretrained" and not m.get("tokenizer"):
        raise SetupError(
            f"Could not load the checkpoint {m.pretrained!r} ({'; '.join(errors)}). Options: "
            "model.pretrained=<local dir holding a copy of the checkpoint> (config.json, weights, tokenizer), "
            "or model.init=scratch to train this architecture from random weights."
        )
    raise SetupError(
        "No tokenizer could be loaded. Tried: " + "; ".join(errors) +
        ". Pass model.tokenizer=<hub id or local dir with a tokenizer> (e.g. the directory of a local copy of the "
        "checkpoint, which model.pretrained / model.source can then point at too), or train from random weights "
        "with model.init=scratch."
    )


def arch_from_cfg(cfg: DictConfig) -> Arch:
    node = OmegaConf.to_container(cfg.arch, resolve=True)
    return Arch.from_dict(node)


def build_encoder(cfg: DictConfig, tokenizer=None, check_shape: bool = True, *, mlm: bool = False,
                  vocab_size: int | None = None, check_tokenizer: bool = True):
    """The encoder per `model.init` (module docstring), for every stage.

    `tokenizer` sizes a scratch vocabulary (`vocab_size` wins: a student takes its teacher's) and, with
    `check_tokenizer`, is checked against a loaded vocabulary. `check_shape=False` returns a pretrained or
    source checkpoint whatever its shape (the sweep pre-flight compares every candidate with it).
    `mlm=True` builds the pre-training student, a `MaskedLM`: the checkpoint's (extracted) MLM head where it
    has one, else a fresh head; a scratch student has no pooler, as Bort."""
    from bortlab.models.encoder import Encoder
    from bortlab.models.hf import check_vocab, load_pretrained
    from bortlab.models.mlm import MaskedLM, load_mlm, resolve_checkpoint

    m = cfg.model
    asked = arch_from_cfg(cfg)
    dropout = m.get("dropout")
    checked = None                     # the checkpoint a loaded vocabulary is checked against
    if m.init == "pretrained":
        if not m.get("pretrained"):
            raise SetupError(
                f"model.init=pretrained but model.pretrained is empty for arch {asked}. Pass "
                "model.pretrained=<hub id or local dir>, or train from random weights with model.init=scratch."
            )
        try:
            name = resolve_checkpoint(str(m.pretrained))    # a pre-training run directory: its export/
            model = (load_mlm(name, dropout=dropout) if mlm
                     else load_pretrained(name, dropout=dropout, **hub_kwargs(name)))
        except (OSError, ValueError) as e:
            raise SetupError(
                f"Could not load the checkpoint {m.pretrained!r} ({e}). Options: model.pretrained=<local dir "
                "holding config.json and weights> (a copy of the hub checkpoint), or model.init=scratch to "
                "train this architecture from random weights."
            ) from e
        got = model.arch
        if check_shape and got.tuple != asked.tuple:
            raise SetupError(
                f"The checkpoint {m.pretrained} has shape {got} but arch asks for {asked}. Use the arch preset "
                "that matches the checkpoint, model.init=extract to inherit its weights into the smaller shape, "
                "or model.init=scratch."
            )
        checked = str(m.pretrained)
    elif m.init == "scratch":
        overrides = {"vocab_size": int(vocab_size) if vocab_size is not None else len(tokenizer)}
        if tokenizer is not None and tokenizer.pad_token_id is not None:
            overrides["pad_token_id"] = int(tokenizer.pad_token_id)
        if dropout is not None:
            overrides.update(dropout=float(dropout), attention_dropout=float(dropout))
        if mlm:
            overrides["pooler"] = False
        if asked.vocab_size != overrides["vocab_size"]:
            log.info("scratch init: vocabulary size %d follows the %s (arch preset said %d)", overrides["vocab_size"],
                     "tokenizer" if vocab_size is None else "teacher", asked.vocab_size)
        model = Encoder(asked.replace(**overrides))
    elif m.init == "extract":
        from bortlab.models.extract import extract_from_checkpoint, extract_mlm_from_checkpoint, load_source

        source = m.get("source") or m.get("pretrained")
        if not source:
            raise SetupError("model.init=extract needs model.source=<checkpoint to extract from> (a hub id, a "
                             "transformers dir or a pre-training run dir).")
        if not check_shape:
            return load_source(str(source), with_head=mlm)
        from bortlab.models.arch import ArchError
        from bortlab.models.hf import VocabMismatchError

        try:
            model = (extract_mlm_from_checkpoint if mlm else extract_from_checkpoint)(str(source), asked, cfg=m)
        except (SetupError, ArchError, VocabMismatchError):
            raise
        except (OSError, ValueError) as e:      # a checkpoint without the weights extraction needs
            raise SetupError(f"model.init=extract: could not extract {asked} from model.source={source!r}: {e}") from e
        checked = str(source)
    else:
        raise SetupError(f"model.init={m.init!r} is not one of {INITS}.")
    if mlm and not isinstance(model, MaskedLM):
        model = MaskedLM(model)
    elif mlm and model.head is None:
        model = MaskedLM(model.encoder)          # a fresh head on a bare encoder
    if checked and tokenizer is not None and check_tokenizer:
        check_vocab(model.encoder if mlm else model, tokenizer, checkpoint=checked)
    return model


def build_model(cfg: DictConfig, task, tokenizer):
    """Encoder + head for `task`; returns (model, arch actually built)."""
    from bortlab.models.heads import POOLINGS, MultipleChoice, SequenceClassifier

    m = cfg.model
    dropout = m.get("dropout")
    encoder = build_encoder(cfg, tokenizer)
    pooling = str(m.get("pooling") or "cls")
    if pooling not in POOLINGS:
        raise SetupError(f"model.pooling={pooling!r} is not one of {POOLINGS}: use model.pooling=cls (BERT's "
                         "[CLS] pooler) or model.pooling=mean (the average over real tokens).")
    if task.kind == "multiple_choice":
        model = MultipleChoice(encoder, dropout=dropout, pooling=pooling)
    else:
        model = SequenceClassifier(encoder, task.num_labels, dropout=dropout, pooling=pooling)
    return model, encoder.arch
