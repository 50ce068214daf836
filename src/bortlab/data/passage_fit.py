"""Fit a long passage into the token budget by keeping its sentences that share the rarest words with the
question, in their original order, instead of cutting the passage's end (`data.passage_fit=select`).

Why: MultiRC passages run to a median of ~324 MiniLM tokens, so at 256 tokens three dev answers in four lose
the passage's end, and with it, often, the sentence the question is about; cutting the end is blind to the
question. Selection keeps the question and the answer whole (they are never shortened, as with `cut`) and
spends the passage's budget on the sentences most likely to hold the evidence.

Scoring: a sentence scores the sum, over the question's words it contains, of log((n + 1) / df), where n is
the number of sentences in the passage and df the number that contain the word: a word found in every
sentence ("the") adds little, a name or a number found in one adds most. Sentences are taken by score
(ties: earlier first) while they fit. A passage that already fits is left exactly as it is, so `select`
and `cut` feed the same text to every input that is not too long.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

MODES = ("cut", "select")

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_WORD = re.compile(r"[^\W_]+")


def split_sentences(text: str) -> list[str]:
    """Sentences at ., ! or ? followed by white space (closing quotes and brackets stay with their sentence)."""
    parts, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.start() + len(m.group(0).rstrip())
        parts.append(text[start:end].strip())
        start = m.end()
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def select_sentences(sentences: Sequence[str], lengths: Sequence[int], query: str, budget: int) -> list[int]:
    """Indices (ascending) of the sentences kept within `budget` tokens, best-scoring first; [] if none fits."""
    bags = [words(s) for s in sentences]
    df = Counter(w for bag in bags for w in bag)
    n, asked = len(sentences), words(query)
    score = [sum(math.log((n + 1) / df[w]) for w in bag & asked) for bag in bags]
    kept, used = [], 0
    for i in sorted(range(n), key=lambda i: (-score[i], i)):
        if used + lengths[i] <= budget:
            kept.append(i)
            used += lengths[i]
    return sorted(kept)


def fit_passages(passages: Sequence[str], queries: Sequence[str], tokenizer, max_length: int) -> list[str]:
    """Each passage shortened to what fits beside its query in `max_length` tokens (with the special tokens).

    Token counts are per sentence, which is exact for WordPiece; byte-level BPE may differ by a token at a
    sentence boundary, and the tokenizer's `only_first` truncation afterwards takes off any such overflow.
    """
    def count(texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    special = tokenizer.num_special_tokens_to_add(pair=True)
    query_len = count(queries) if queries else []
    split: dict[str, tuple[list[str], list[int]]] = {}     # passages repeat across questions: split once
    out = []
    for passage, query, q_len in zip(passages, queries, query_len):
        if passage not in split:
            sentences = split_sentences(passage)
            split[passage] = (sentences, count(sentences) if sentences else [])
        sentences, lengths = split[passage]
        budget = max_length - special - q_len
        if sum(lengths) <= budget:
            out.append(passage)
            continue
        kept = select_sentences(sentences, lengths, query, budget)
        out.append(" ".join(sentences[i] for i in kept) if kept else passage)   # nothing fits: cut as before
    return out
