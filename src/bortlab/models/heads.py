"""Task heads on top of `Encoder`: one score vector per sequence (classification/regression) or per choice.

Both read the encoder's pooled output (BERT's tanh pooler, or the first token when the arch has none) and
apply dropout and one Linear, exactly as HF's BertForSequenceClassification / BertForMultipleChoice do, so
their logits can be compared with transformers' given the same weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bortlab.models.encoder import Encoder


class _Head(nn.Module):
    def __init__(self, encoder: Encoder, out_features: int, dropout: float | None):
        super().__init__()
        self.encoder = encoder
        self.p_drop = encoder.arch.dropout if dropout is None else dropout
        self.classifier = nn.Linear(encoder.arch.hidden, out_features)
        nn.init.normal_(self.classifier.weight, std=0.02)   # BERT's init, like the encoder's Linears
        nn.init.zeros_(self.classifier.bias)

    def score(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        pooled = self.encoder.pool(self.encoder(input_ids, attention_mask, token_type_ids))   # (B, H)
        return self.classifier(F.dropout(pooled, self.p_drop, self.training))                 # (B, out)


class SequenceClassifier(_Head):
    """Logits (batch, num_labels) for single sentences or pairs; num_labels=1 is regression (STS-B)."""

    def __init__(self, encoder: Encoder, num_labels: int, dropout: float | None = None):
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1 (1 = regression), got {num_labels}")
        super().__init__(encoder, num_labels, dropout)
        self.num_labels = num_labels

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(input_ids, attention_mask, token_type_ids)


class MultipleChoice(_Head):
    """Inputs (batch, choices, length) -> logits (batch, choices): every (context, choice) pair is encoded
    as one sequence and scored by a shared Linear(H, 1); a softmax over choices gives the answer."""

    def __init__(self, encoder: Encoder, dropout: float | None = None):
        super().__init__(encoder, 1, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if input_ids.dim() != 3:
            raise ValueError(f"MultipleChoice expects input_ids of shape (batch, choices, length), "
                             f"got {tuple(input_ids.shape)}")
        B, C, L = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(B * C, L)   # noqa: E731  (B, C, L) -> (B*C, L)
        return self.score(flat(input_ids), flat(attention_mask), flat(token_type_ids)).view(B, C)
