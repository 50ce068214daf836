"""Hugging Face interop: BERT / RoBERTa / Bort checkpoints in and out of `bortlab.models.Encoder`.

Loading goes through the real `transformers` code paths (`AutoConfig`, `AutoModel.from_pretrained`), so a
hub id, a revision, a local directory and every head class (`BertFor*`, `RobertaFor*`; their `bert.` /
`roberta.` prefixes) work as they do in transformers itself. Weights are read safely: safetensors, or
pickles through transformers' `weights_only=True` loader; remote code is never trusted unless asked.

Pooler policy: a checkpoint without pooler weights (e.g. `BertForMaskedLM`, Bort) gives an encoder with
`arch.pooler=False`, whose `pool()` is the first token's hidden state; we do not invent a random pooler that
would look pretrained. `export_pretrained` of such an encoder writes no pooler either (transformers then
initialises one on load and says so; `last_hidden_state` is unaffected).
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from bortlab.models.arch import Arch, ArchError
from bortlab.models.encoder import Encoder

log = logging.getLogger(__name__)
_ROBERTA_TYPES = ("roberta", "xlm-roberta")
_PREFIXES = ("bert.", "roberta.")


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint could not be found locally nor fetched from the hub; the message lists the options."""


class VocabMismatchError(ValueError):
    """The tokenizer's vocabulary does not fit the model's embedding matrix."""


class ExportError(ArchError):
    """The architecture cannot be expressed as a transformers BertConfig / RobertaConfig."""


# ---- config <-> Arch --------------------------------------------------------------------------------
def arch_from_hf_config(config, *, pooler: bool = True) -> Arch:
    """Map a BertConfig / RobertaConfig (Bort is a BertConfig with vocab 50265) onto an `Arch`."""
    model_type = getattr(config, "model_type", "bert")
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise ArchError(f"{model_type} checkpoint uses position_embedding_type="
                        f"{config.position_embedding_type!r}; bortlab's encoder supports absolute positions only.")
    return Arch(
        depth=config.num_hidden_layers, heads=config.num_attention_heads, hidden=config.hidden_size,
        intermediate=config.intermediate_size, vocab_size=config.vocab_size,
        max_positions=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
        pooler=pooler, layer_norm_eps=float(config.layer_norm_eps), hidden_act=config.hidden_act,
        dropout=float(config.hidden_dropout_prob), attention_dropout=float(config.attention_probs_dropout_prob),
        pad_token_id=pad, position_offset=pad + 1 if model_type in _ROBERTA_TYPES else 0,
    )


def hf_config_from_arch(arch: Arch):
    """The transformers config that describes `arch`: RobertaConfig when positions are offset, else BertConfig."""
    from transformers import BertConfig, RobertaConfig
    if arch.head_dim is not None and arch.head_dim * arch.heads != arch.hidden:
        raise ExportError(
            f"Cannot export {arch} to transformers: head_dim={arch.head_dim} with heads={arch.heads} gives an "
            f"attention width of {arch.attn_width}, but BertConfig/RobertaConfig always use hidden/heads = "
            f"{arch.hidden}/{arch.heads} per head. Only architectures with head_dim=None (or head_dim*heads == "
            f"hidden) can be written as Hugging Face checkpoints; keep the bortlab checkpoint for this one.")
    if arch.position_offset not in (0, arch.pad_token_id + 1):
        raise ExportError(
            f"Cannot export {arch}: position_offset={arch.position_offset} but transformers supports 0 (BERT) or "
            f"pad_token_id + 1 = {arch.pad_token_id + 1} (RoBERTa) only.")
    cls = RobertaConfig if arch.position_offset > 0 else BertConfig
    return cls(
        vocab_size=arch.vocab_size, hidden_size=arch.hidden, num_hidden_layers=arch.depth,
        num_attention_heads=arch.heads, intermediate_size=arch.intermediate, hidden_act=arch.hidden_act,
        hidden_dropout_prob=arch.dropout, attention_probs_dropout_prob=arch.attention_dropout,
        max_position_embeddings=arch.max_positions,
        # transformers always has a token-type table; type_vocab_size=0 is exported as one all-zero row
        type_vocab_size=max(1, arch.type_vocab_size), layer_norm_eps=arch.layer_norm_eps,
        pad_token_id=arch.pad_token_id, architectures=["RobertaModel" if arch.position_offset else "BertModel"],
    )


# ---- state dicts ------------------------------------------------------------------------------------
_LAYER_MAP = {  # HF name under encoder.layer.{i}.  ->  ours under layers.{i}.
    "attention.output.dense": "attn_out", "attention.output.LayerNorm": "ln1",
    "intermediate.dense": "ffn_in", "output.dense": "ffn_out", "output.LayerNorm": "ln2",
}
_EMB_MAP = {"embeddings.word_embeddings": "word_embeddings", "embeddings.position_embeddings": "position_embeddings",
            "embeddings.token_type_embeddings": "token_type_embeddings", "embeddings.LayerNorm": "emb_ln",
            "pooler.dense": "pooler"}


def _strip(sd: dict) -> dict:
    """Drop a head-class prefix (bert./roberta.), rename old gamma/beta LayerNorm keys, keep tensors only."""
    out = {}
    for k, v in sd.items():
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    return out


def encoder_state_from_hf(hf_state_dict: dict, arch: Arch) -> dict:
    """Convert a BertModel/RobertaModel (or head-class) state dict to `Encoder(arch)`'s; Q, K, V are fused."""
    sd, out = _strip(hf_state_dict), {}
    for hf, ours in _EMB_MAP.items():
        for t in ("weight", "bias"):
            if f"{hf}.{t}" in sd:
                out[f"{ours}.{t}"] = sd[f"{hf}.{t}"]
    if arch.type_vocab_size == 0:
        out.pop("token_type_embeddings.weight", None)
    if not arch.pooler:
        out.pop("pooler.weight", None), out.pop("pooler.bias", None)
    for i in range(arch.depth):
        pre = f"encoder.layer.{i}."
        for t in ("weight", "bias"):
            out[f"layers.{i}.qkv.{t}"] = torch.cat([sd[f"{pre}attention.self.{n}.{t}"] for n in ("query", "key", "value")])
            for hf, ours in _LAYER_MAP.items():
                out[f"layers.{i}.{ours}.{t}"] = sd[f"{pre}{hf}.{t}"]
    return out


def hf_state_from_encoder(enc: Encoder) -> dict:
    """The inverse: a BertModel/RobertaModel state dict (no prefix), contiguous tensors ready for safetensors."""
    arch, sd, out = enc.arch, enc.state_dict(), {}
    for hf, ours in _EMB_MAP.items():
        for t in ("weight", "bias"):
            if f"{ours}.{t}" in sd:
                out[f"{hf}.{t}"] = sd[f"{ours}.{t}"]
    if arch.type_vocab_size == 0:   # see hf_config_from_arch: one zero row adds nothing to the embeddings
        out["embeddings.token_type_embeddings.weight"] = sd["word_embeddings.weight"].new_zeros(1, arch.hidden)
    W = arch.attn_width
    for i in range(arch.depth):
        pre = f"encoder.layer.{i}."
        for t in ("weight", "bias"):
            q, k, v = sd[f"layers.{i}.qkv.{t}"].split(W)
            out.update({f"{pre}attention.self.query.{t}": q, f"{pre}attention.self.key.{t}": k,
                        f"{pre}attention.self.value.{t}": v})
            for hf, ours in _LAYER_MAP.items():
                out[f"{pre}{hf}.{t}"] = sd[f"layers.{i}.{ours}.{t}"]
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as tlog
    level, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


# ---- load --------------------------------------------------------------------------------------------
def _looks_local(name: str) -> bool:
    """A path-like name (absolute, ./, ~, or more than one '/') is never a hub id; don't ask the hub for it."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _not_found(name: str, revision, err: Exception | None, where: str) -> CheckpointNotFoundError:
    """One self-sufficient message; `where` is "missing" (no such local path), "local" (a directory that
    transformers could not read) or "hub" (no such local directory; the hub was asked)."""
    tried = {
        "missing": f"the local path {name!r}, which does not exist",
        "local": f"the local directory {name!r}, which exists but does not hold a loadable transformers checkpoint",
        "hub": f"a local directory {name!r} (none exists) and then the Hugging Face Hub repo {name!r}"
               f"{f' at revision {revision!r}' if revision else ''} (not reachable, not cached, or no such repo)",
    }[where]
    why = f" The underlying error was {type(err).__name__}: {str(err).strip().splitlines()[0]}" if err else ""
    return CheckpointNotFoundError(
        f"Could not load a pretrained checkpoint from {name!r}: tried {tried}.{why} Options: point "
        f"`model.pretrained` at a local directory holding config.json and model.safetensors (e.g. one written by "
        f"save_pretrained or bortlab's export_pretrained), make the hub reachable (network, HF_TOKEN for gated "
        f"repos, HF_HUB_OFFLINE unset) or pre-download it into the HF cache, or train from random weights with "
        f"`model.init=scratch`.")


def load_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None,
                    trust_remote_code: bool = False, dropout: float | None = None,
                    local_files_only: bool = False, precision: str = "fp32") -> Encoder:
    """Load a BERT/RoBERTa/Bort checkpoint (hub id or local dir, any head class) into an `Encoder`.

    `dropout` overrides both hidden and attention dropout. `precision` other than fp32 (bf16, int8: see
    `bortlab.models.precision`) returns the encoder ready for inference in that precision, in eval mode. Raises `CheckpointNotFoundError` when nothing can
    be found, with the original exception chained."""
    from transformers import AutoConfig, AutoModel
    name = os.fspath(name_or_path)
    local = os.path.isdir(os.path.expanduser(name))
    if local:
        name = os.path.expanduser(name)
    elif os.path.exists(name) or _looks_local(name):
        raise _not_found(name, revision, None, "missing")
    common = dict(revision=revision, trust_remote_code=trust_remote_code, local_files_only=local_files_only)
    try:
        config = AutoConfig.from_pretrained(name, **common)
    except (OSError, ValueError) as e:      # ValueError: a local directory without a usable config.json
        raise _not_found(name, revision, e, "local" if local else "hub") from e
    if config.model_type not in ("bert", *_ROBERTA_TYPES):
        raise ArchError(f"{name!r} is a {config.model_type!r} checkpoint; bortlab loads BERT, RoBERTa and Bort "
                        f"(BertConfig) checkpoints only.")
    arch = arch_from_hf_config(config)                       # validates before any weights are read
    try:
        # AutoModel builds the bare BertModel/RobertaModel and strips bert./roberta. from head checkpoints;
        # its load report would call an absent pooler "newly initialized", but we drop it instead (see top)
        with _quiet_transformers():
            model, info = AutoModel.from_pretrained(name, config=config, output_loading_info=True,
                                                    weights_only=True, **common)   # pickles: tensors only
    except OSError as e:                    # no weights file next to the config, or a failed download
        raise _not_found(name, revision, e, "local" if local else "hub") from e
    missing = set(info.get("missing_keys", ()))
    has_pooler = not any(k.startswith("pooler.") or ".pooler." in k for k in missing)
    ignored = sorted(info.get("unexpected_keys", ()))
    log.info("loaded %s as %s (pooler: %s; ignored %d head tensors%s)", name, arch.replace(pooler=has_pooler),
             has_pooler, len(ignored), f", e.g. {ignored[0]}" if ignored else "")
    bad = sorted(k for k in missing if not (k.startswith("pooler.") or ".pooler." in k))
    if bad:
        raise ArchError(f"checkpoint {name!r} lacks encoder weights {bad[:5]}{'...' if len(bad) > 5 else ''}; "
                        f"it is not a complete BERT/RoBERTa encoder.")
    arch = arch.replace(pooler=has_pooler)
    if dropout is not None:
        arch = arch.replace(dropout=dropout, attention_dropout=dropout)
    enc = Encoder(arch)
    enc.load_state_dict(encoder_state_from_hf(model.state_dict(), arch), strict=True)
    if precision != "fp32":
        from bortlab.models.precision import apply_precision

        apply_precision(enc, precision)
    return enc


# ---- export ------------------------------------------------------------------------------------------
def export_pretrained(encoder: Encoder, out_dir: str | os.PathLike, tokenizer=None) -> Path:
    """Write `encoder` as a transformers checkpoint (config.json + model.safetensors [+ tokenizer]).

    The directory appears atomically: everything is written to a temporary sibling which is then renamed,
    so a crash never leaves a half-written checkpoint. An existing `out_dir` is replaced."""
    config = hf_config_from_arch(encoder.arch)               # raises ExportError before touching the disk
    if tokenizer is not None:
        check_vocab(encoder, tokenizer)
    return write_hf_dir(out_dir, config, hf_state_from_encoder(encoder), tokenizer)


def write_hf_dir(out_dir: str | os.PathLike, config, state: dict, tokenizer=None,
                 files: dict[str, str | bytes] | None = None) -> Path:
    """config.json + model.safetensors [+ tokenizer files] as one atomic directory: written into a temporary
    sibling, then renamed over `out_dir` (an existing one is moved aside first, since os.replace cannot
    replace a non-empty directory), so a crash never leaves a half-written checkpoint."""
    from safetensors.torch import save_file

    from bortlab.files import atomic_dir

    out = Path(out_dir).expanduser().resolve()
    with atomic_dir(out) as tmp:         # fsynced, umask modes, an existing out_dir replaced as a whole
        config.save_pretrained(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, data in (files or {}).items():     # a model card, an ONNX graph...
            (tmp / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return out


# ---- vocabulary check ------------------------------------------------------------------------------
def check_vocab(encoder_or_arch: Encoder | Arch, tokenizer, checkpoint: str | None = None) -> None:
    """Raise `VocabMismatchError` when `tokenizer` cannot belong to the model's embedding matrix.

    It cannot when it has more tokens than embedding rows (ids would index past the table), or clearly fewer
    (more than max(128, 1%) rows unused: a different vocabulary, e.g. 30522 WordPiece vs 50265 RoBERTa BPE).
    A few spare rows are normal (tables padded to a multiple of 8, added special tokens) and pass."""
    arch = encoder_or_arch.arch if isinstance(encoder_or_arch, Encoder) else encoder_or_arch
    rows, n = arch.vocab_size, len(tokenizer)
    if n <= rows and rows - n <= max(128, rows // 100):
        return
    tok_src = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
    model_src = checkpoint or f"the architecture {arch}"
    problem = ("has more tokens than the model has embedding rows, so some token ids would index past the "
               "embedding table" if n > rows else
               "is much smaller than the embedding table, so it is a different vocabulary from the one the "
               "weights were trained with and every token id would mean a different word")
    raise VocabMismatchError(
        f"Tokenizer/model vocabulary mismatch: the tokenizer from {tok_src!r} has {n} tokens but the model from "
        f"{model_src} has {rows} embedding rows; the tokenizer {problem}. Use the tokenizer that ships with the "
        f"checkpoint (set `model.tokenizer=` to the same name or directory as the checkpoint, e.g. a RoBERTa "
        f"BPE tokenizer for Bort/RoBERTa weights, BERT WordPiece for BERT/MiniLM), or build the model from "
        f"scratch with vocab_size={n}.")
