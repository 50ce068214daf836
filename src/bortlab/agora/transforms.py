"""Transformations: generate new points near a mistake. One small interface, three text transformations.

A transformation turns one row into `k` new rows by perturbing each text field of the row on its own
(`rows.text_fields`), so a (premise, hypothesis) row stays a (premise, hypothesis) row. Words inside special
tokens written in the text ("[SEP]", "<mask>", ...) are never touched. Subclasses implement `perturb`: one
new version of each of a list of texts (a list, so the masked LM can run in batches).

- `nn`        replace a fraction of the words by one of their nearest neighbours (cosine) in an input
              word-embedding matrix; only whole-word vocabulary entries are used on both sides.
- `mlm`       mask a fraction of the words and let a masked LM (a checkpoint *with* an MLM head) fill them.
- `dropswap`  drop words and swap adjacent words at random.
"""
from __future__ import annotations

import logging
import random
import re
from functools import lru_cache
from typing import Optional, Sequence

import torch

from bortlab.config import SetupError

log = logging.getLogger(__name__)
_WORD = re.compile(r"[A-Za-z]+")
_MARKUP = r"\[[A-Za-z_]+\]|<[^<>\s]+>"      # special tokens of any vocabulary as they appear in raw text


class Transformation:
    name = "base"

    def bind(self, tokenizer, student=None, labeller=None) -> None:
        """Resolve what the transformation needs (embeddings, a model) once the run's pieces exist. Raise
        SetupError when it cannot apply: this is called before training starts."""
        self._protect = _protect_pattern(tokenizer)

    def perturb(self, texts: Sequence[str], rng: random.Random) -> list[str]:
        raise NotImplementedError

    def generate(self, row: dict, fields: Sequence[str], k: int, rng: random.Random) -> list[dict]:
        """`k` distinct new rows near `row`, each with every text field perturbed independently; fewer when
        the text offers nothing to change."""
        out, seen = [], {tuple(row[f] for f in fields)}
        for _ in range(3):                      # retry copies that came out unchanged or duplicated
            need = k - len(out)
            if need <= 0:
                break
            texts = [row[f] for _ in range(need) for f in fields]
            new = self.perturb(texts, rng)
            for j in range(need):
                values = tuple(new[j * len(fields):(j + 1) * len(fields)])
                if values in seen:
                    continue
                seen.add(values)
                out.append({**row, **dict(zip(fields, values))})
        return out

    # ---- helpers shared by the subclasses ------------------------------------------------------------
    def _candidates(self, text: str) -> list[re.Match]:
        """Alphabetic words of `text` outside any special token."""
        blocked = [m.span() for m in self._protect.finditer(text)] if self._protect else []
        return [m for m in _WORD.finditer(text)
                if not any(a < m.end() and m.start() < b for a, b in blocked)]


def _protect_pattern(tokenizer) -> re.Pattern:
    specials = sorted({t for t in (getattr(tokenizer, "all_special_tokens", None) or []) if t}, key=len, reverse=True)
    return re.compile("|".join([re.escape(t) for t in specials] + [_MARKUP]))


def _choose(n: int, fraction: float, rng: random.Random) -> list[int]:
    if n == 0:
        return []
    return sorted(rng.sample(range(n), min(n, max(1, round(fraction * n)))))


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _splice(text: str, spans: Sequence[tuple[int, int]], words: Sequence[str]) -> str:
    for (a, b), w in sorted(zip(spans, words), reverse=True):
        text = text[:a] + w + text[b:]
    return text


def word_embeddings(model: torch.nn.Module) -> Optional[torch.Tensor]:
    """The input word-embedding matrix of a bortlab or transformers model, or None."""
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Embedding) and name.split(".")[-1] == "word_embeddings":
            return m.weight
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    return emb.weight if isinstance(emb, torch.nn.Embedding) else None


def whole_words(tokenizer, rows: int, min_len: int = 2) -> dict[str, int]:
    """Word -> id for vocabulary entries that are a whole alphabetic word on their own (not a '##' piece,
    not a special token): the word written after a space tokenises to exactly that one id."""
    special = set(tokenizer.all_special_ids)
    words: dict[str, int] = {}
    for tok, i in tokenizer.get_vocab().items():
        if i in special or i >= rows:
            continue
        w = tokenizer.convert_tokens_to_string([tok]).strip()
        if len(w) >= min_len and w.isalpha() and w.isascii():
            words.setdefault(w, i)
    keys = list(words)
    ids = tokenizer([" " + w for w in keys], add_special_tokens=False)["input_ids"]
    return {w: i[0] for w, i in zip(keys, ids) if len(i) == 1}


# ---- nearest neighbours in an embedding space ----------------------------------------------------------
class NearestNeighbour(Transformation):
    """Replace `fraction` of the words (at least one) by one of their `neighbours` nearest whole words.

    embedding: "auto" (the labeller's matrix when it has one: a trained model, so neighbours mean something
    even when the student starts from random weights; else the student's), "student", "labeller", or a
    checkpoint directory / hub id (its tokenizer and input embeddings)."""

    name = "nn"

    def __init__(self, embedding: str = "auto", fraction: float = 0.15, neighbours: int = 10, min_len: int = 2):
        self.embedding, self.fraction, self.neighbours, self.min_len = embedding, fraction, neighbours, min_len

    def bind(self, tokenizer, student=None, labeller=None) -> None:
        tok, matrix, source = self._source(tokenizer, student, labeller)
        super().bind(tok)
        self.tokenizer = tok
        self._lower = tok("A", add_special_tokens=False)["input_ids"] == tok("a", add_special_tokens=False)["input_ids"]
        self._word2id = whole_words(tok, matrix.shape[0], self.min_len)
        if len(self._word2id) < self.neighbours + 1:
            raise SetupError(f"agora.transform.name=nn: the vocabulary of {source} has only {len(self._word2id)} "
                             f"whole-word entries; nearest-neighbour replacement needs a word vocabulary.")
        self._words = list(self._word2id)
        ids = torch.tensor([self._word2id[w] for w in self._words])
        e = matrix.detach().float().cpu()[ids]
        self._unit = e / e.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self._row = {w: j for j, w in enumerate(self._words)}
        self._near = lru_cache(maxsize=50_000)(self._nearest)
        log.info("agora nn: embeddings of %s, %d whole words", source, len(self._words))

    def _source(self, tokenizer, student, labeller):
        which = self.embedding
        if which == "auto":
            which = "labeller" if labeller is not None and labeller.embedding_source() is not None else "student"
        if which == "labeller":
            src = labeller.embedding_source() if labeller is not None else None
            if src is None:
                raise SetupError("agora.transform.embedding=labeller, but the labeller has no input embeddings "
                                 "(e.g. the student itself). Use embedding=student or a checkpoint directory.")
            return (*src, "the labeller")
        if which == "student":
            m = word_embeddings(student) if student is not None else None
            if m is None:
                raise SetupError("agora.transform.embedding=student, but no word-embedding matrix was found in "
                                 "the student model.")
            return tokenizer, m, "the student"
        from transformers import AutoTokenizer

        from bortlab.models.hf import load_pretrained

        try:
            enc = load_pretrained(str(which))
            tok = AutoTokenizer.from_pretrained(str(which))
        except Exception as e:
            raise SetupError(f"agora.transform.embedding={which!r} is neither auto/student/labeller nor a "
                             f"loadable checkpoint with a tokenizer ({type(e).__name__}: {e}).") from e
        return tok, enc.word_embeddings.weight, which

    def _nearest(self, word: str) -> tuple[str, ...]:
        j = self._row[word]
        sims = self._unit @ self._unit[j]
        top = sims.topk(min(len(sims), self.neighbours + 4)).indices.tolist()
        return tuple(self._words[t] for t in top if self._words[t].lower() != word.lower())[: self.neighbours]

    def perturb(self, texts: Sequence[str], rng: random.Random) -> list[str]:
        out = []
        for text in texts:
            cands = [m for m in self._candidates(text)
                     if (m.group().lower() if self._lower else m.group()) in self._row]
            spans, words = [], []
            for c in _choose(len(cands), self.fraction, rng):
                m = cands[c]
                key = m.group().lower() if self._lower else m.group()
                near = self._near(key)
                if near:
                    spans.append(m.span())
                    words.append(_match_case(rng.choice(near), m.group()))
            out.append(_splice(text, spans, words))
        return out


# ---- masked-LM infilling ----------------------------------------------------------------------------
class MaskedLMInfill(Transformation):
    """Mask `fraction` of the words (at least one) and replace each by a sample from the masked LM's
    `top_k` whole-word predictions other than the original. `model` must have an MLM head."""

    name = "mlm"

    def __init__(self, model: Optional[str] = None, fraction: float = 0.15, top_k: int = 10, batch_size: int = 32):
        self.model_name, self.fraction, self.top_k, self.batch_size = model, fraction, top_k, batch_size

    def bind(self, tokenizer, student=None, labeller=None) -> None:
        self.tokenizer, self.model = infill_model(self.model_name)
        super().bind(self.tokenizer)
        words = whole_words(self.tokenizer, self.model.arch.vocab_size)
        self._allowed = torch.zeros(self.model.arch.vocab_size, dtype=torch.bool)
        self._allowed[list(words.values())] = True

    @torch.no_grad()
    def perturb(self, texts: Sequence[str], rng: random.Random) -> list[str]:
        out = list(texts)
        mask = self.tokenizer.mask_token
        jobs = []                                   # (text index, spans, masked text)
        for t, text in enumerate(texts):
            cands = self._candidates(text)
            spans = [cands[c].span() for c in _choose(len(cands), self.fraction, rng)]
            if spans:
                jobs.append((t, spans, _splice(text, spans, [mask] * len(spans))))
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        for s in range(0, len(jobs), self.batch_size):
            chunk = jobs[s:s + self.batch_size]
            arch = self.model.arch
            enc = self.tokenizer([j[2] for j in chunk], return_tensors="pt", padding=True, truncation=True,
                                 max_length=min(512, arch.max_positions - arch.position_offset))
            mask_b = enc["attention_mask"]
            logits = self.model.logits(self.model(enc["input_ids"], attention_mask=mask_b))   # (B, L, V)
            logits[..., ~self._allowed] = float("-inf")
            for b, (t, spans, _) in enumerate(chunk):
                where = (enc["input_ids"][b] == self.tokenizer.mask_token_id).nonzero().squeeze(1).tolist()
                words = []
                for (a, e), pos in zip(spans, where):  # masks cut off by truncation keep their word
                    old = texts[t][a:e]
                    lg = logits[b, pos].clone()
                    old_ids = self.tokenizer(" " + old.lower(), add_special_tokens=False)["input_ids"]
                    if len(old_ids) == 1:
                        lg[old_ids[0]] = float("-inf")
                    top = lg.topk(self.top_k)
                    pick = top.indices[torch.multinomial(top.values.softmax(-1), 1, generator=gen)].item()
                    words.append(_match_case(self.tokenizer.decode([pick]).strip(), old))
                spans = spans[: len(words)]
                out[t] = _splice(texts[t], spans, words)
        return out


def infill_model(name: Optional[str]):
    """Tokenizer and masked LM (`bortlab.models.mlm.MaskedLM`, the loader every stage uses) of `name`;
    SetupError when it cannot be loaded or has no trained MLM head."""
    if not name:
        raise SetupError("agora.transform.name=mlm needs agora.transform.model=<dir or hub id of a checkpoint "
                         "with an MLM head>, e.g. a BertForMaskedLM or RobertaForMaskedLM save.")
    from bortlab.models.build import load_tokenizer
    from bortlab.models.mlm import load_mlm

    try:
        tok = load_tokenizer(str(name))
        model = load_mlm(str(name), require_head=True)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0][:300]
        if "no masked-LM head" in first:
            raise SetupError(
                f"agora.transform.name=mlm: {name} has no MLM head ({first}), so its 'predictions' would come "
                "from random weights. Use a checkpoint saved with its masked-LM head (BertForMaskedLM, "
                "RobertaForMaskedLM), or agora.transform.name=nn (nearest neighbours in its embedding space) or "
                "dropswap.") from e
        raise SetupError(f"agora.transform.model={name!r} could not be loaded as a masked LM "
                         f"({type(e).__name__}: {first}).") from e
    if tok.mask_token is None:
        raise SetupError(f"agora.transform.model={name!r}: its tokenizer has no mask token.")
    return tok, model.eval()


# ---- token dropout / swap ----------------------------------------------------------------------------
class DropSwap(Transformation):
    """Drop each word with probability `p_drop` and swap adjacent words with probability `p_swap`; at least
    one change per text with two or more words."""

    name = "dropswap"

    def __init__(self, p_drop: float = 0.1, p_swap: float = 0.1):
        self.p_drop, self.p_swap = p_drop, p_swap

    def perturb(self, texts: Sequence[str], rng: random.Random) -> list[str]:
        out = []
        for text in texts:
            toks = text.split(" ")
            free = [i for i, t in enumerate(toks) if t and not (self._protect and self._protect.search(t))]
            if len(free) < 2:
                out.append(text)
                continue
            drop = {i for i in free if rng.random() < self.p_drop}
            if len(drop) >= len(free):
                drop = set(rng.sample(free, len(free) - 1))
            swaps = [(a, b) for a, b in zip(free, free[1:]) if rng.random() < self.p_swap]
            if not drop and not swaps:       # force one change
                if rng.random() < 0.5:
                    drop = {rng.choice(free)}
                else:
                    j = rng.randrange(len(free) - 1)
                    swaps = [(free[j], free[j + 1])]
            for a, b in swaps:
                toks[a], toks[b] = toks[b], toks[a]
            out.append(" ".join(t for i, t in enumerate(toks) if i not in drop))
        return out


TRANSFORMS = {"nn": NearestNeighbour, "mlm": MaskedLMInfill, "dropswap": DropSwap}


def build_transform(cfg: Optional[dict]) -> Transformation:
    cfg = dict(cfg or {})
    name = cfg.pop("name", "nn")
    if name not in TRANSFORMS:
        raise SetupError(f"agora.transform.name={name!r}: choose one of {sorted(TRANSFORMS)}.")
    cls = TRANSFORMS[name]
    import inspect

    def options(c):
        return set(inspect.signature(c.__init__).parameters) - {"self"}

    # the config node carries every transformation's options; only keys no transformation knows are typos
    anyone = set().union(*(options(c) for c in TRANSFORMS.values()))
    typos = sorted(k for k in cfg if k not in anyone)
    if typos:
        raise SetupError(f"agora.transform: {typos} are not options of any transformation; {name!r} takes "
                         f"{sorted(options(cls))}.")
    return cls(**{k: v for k, v in cfg.items() if k in options(cls)})
