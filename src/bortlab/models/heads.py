"""Task heads on top of `Encoder`: one score vector per sequence (classification/regression) or per choice.

Both pool the encoder's output, then apply dropout and one Linear. Two poolings:
- `cls` (default): the encoder's pooled output (BERT's tanh pooler, or the first token when the arch has
  none), exactly as HF's BertForSequenceClassification / BertForMultipleChoice do, so their logits can be
  compared with transformers' given the same weights.
- `mean`: the average of the last hidden states over real (unmasked) tokens. This is what
  sentence-embedding checkpoints were trained to produce (sentence-transformers' `1_Pooling` with
  `pooling_mode_mean_tokens`); their [CLS] state and pooler were never trained (all-MiniLM-L6-v2's pooler
  bias is exactly 0), so a [CLS] head must first learn to read them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bortlab.models.encoder import Encoder


POOLINGS = ("cls", "mean")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, L, H) -> (B, H): average over the positions the mask marks as real (all of them without a mask)."""
    if attention_mask is None:
        return hidden.mean(1)
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)                       # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class _Head(nn.Module):
    def __init__(self, encoder: Encoder, out_features: int, dropout: float | None, pooling: str = "cls"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r} "
                             "(model.pooling=cls for BERT-style checkpoints, mean for sentence-embedding ones)")
        self.encoder = encoder
        self.pooling = pooling
        self.p_drop = encoder.arch.dropout if dropout is None else dropout
        self.classifier = nn.Linear(encoder.arch.hidden, out_features)
        nn.init.normal_(self.classifier.weight, std=0.02)   # BERT's init, like the encoder's Linears
        nn.init.zeros_(self.classifier.bias)

    def score(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        hidden = self.encoder(input_ids, attention_mask, token_type_ids)                     # (B, L, H)
        if self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)                                       # (B, H)
        else:
            pooled = self.encoder.pool(hidden)                                               # (B, H)
        return self.classifier(F.dropout(pooled, self.p_drop, self.training))                 # (B, out)


class SequenceClassifier(_Head):
    """Logits (batch, num_labels) for single sentences or pairs; num_labels=1 is regression (STS-B)."""

    def __init__(self, encoder: Encoder, num_labels: int, dropout: float | None = None, pooling: str = "cls"):
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1 (1 = regression), got {num_labels}")
        super().__init__(encoder, num_labels, dropout, pooling)
        self.num_labels = num_labels

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(input_ids, attention_mask, token_type_ids)


class MultipleChoice(_Head):
    """Inputs (batch, choices, length) -> logits (batch, choices): every (context, choice) pair is encoded
    as one sequence and scored by a shared Linear(H, 1); a softmax over choices gives the answer."""

    def __init__(self, encoder: Encoder, dropout: float | None = None, pooling: str = "cls"):
        super().__init__(encoder, 1, dropout, pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.dim() != 3:
            raise ValueError(f"MultipleChoice expects input_ids of shape (batch, choices, length), "
                             f"got {tuple(input_ids.shape)}")
        B, C, L = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(B * C, L)   # noqa: E731  (B, C, L) -> (B*C, L)
        return self.score(flat(input_ids), flat(attention_mask), flat(token_type_ids)).view(B, C)
