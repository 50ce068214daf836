"""The pre-training corpus: plain text (or a `datasets` corpus) -> cached token ids -> packed, masked blocks.

* Sources: `corpus` is a file, a directory (every `*.txt` under it, recursively) or a glob, or a list of
  those; `dataset` names a `datasets` corpus (online). A text file holds one document per line, or
  documents separated by blank lines (`doc_format=auto` picks the latter when the file has blank lines).
* Tokenised once: ids of all documents (each followed by the separator token) and document offsets are
  saved as `.npy` under `cache_dir`, keyed by the files' paths, sizes and mtimes and the tokenizer's
  vocabulary; later runs memory-map them.
* A held-out split of whole documents (never seen in training) gives the error proxy.
* Packing (RoBERTa's FULL-SENTENCES): the split's token stream is cut into blocks of `max_length`, each
  [CLS] + max_length−2 tokens + [SEP], crossing document boundaries at separator tokens, so no padding.
* Dynamic masking (BERT): every time a block is drawn, 15% of its non-special tokens are chosen; 80% become
  [MASK], 10% a random token, 10% stay. The held-out blocks are masked once with a fixed seed, so the
  held-out loss measures the model, not the draw.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import lightning as L
import numpy as np
import torch

from bortlab.data.io import DataError

log = logging.getLogger(__name__)
DOC_FORMATS = ("auto", "lines", "paragraphs")


# ---- reading text -----------------------------------------------------------------------------------
def corpus_files(spec: str | os.PathLike | Sequence) -> list[Path]:
    """The text files `spec` names (file, directory, glob, or a list of them), sorted, or DataError."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[Path] = []
    for s in specs:
        p = Path(os.path.expanduser(os.fspath(s)))
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(q for q in p.rglob("*.txt") if q.is_file())
        else:
            found = sorted(Path(q) for q in glob.glob(str(p), recursive=True) if Path(q).is_file())
        if not found:
            raise DataError(
                f"data.corpus={s!s}: no text files there (a file, a directory holding *.txt files, or a glob such "
                "as 'corpus/*.txt' were expected). Write one with `python -m bortlab.pretrain.make_corpus --out "
                "corpus.txt`, or pass data.dataset=<datasets corpus> when online.")
        files.extend(found)
    return files


def read_documents(path: Path, doc_format: str = "auto") -> Iterator[str]:
    """Documents of one file: each non-blank line (`lines`), or blank-line separated blocks (`paragraphs`)."""
    if doc_format not in DOC_FORMATS:
        raise DataError(f"data.doc_format={doc_format!r}: choose one of {DOC_FORMATS}.")
    if doc_format == "auto":
        with open(path, encoding="utf-8", errors="replace") as f:
            head = [line.strip() for _, line in zip(range(10000), f)]
        doc_format = "paragraphs" if "" in head[1:-1] else "lines"
    with open(path, encoding="utf-8", errors="replace") as f:
        block: list[str] = []
        for line in f:
            line = line.strip()
            if doc_format == "lines":
                if line:
                    yield line
            elif line:
                block.append(line)
            elif block:
                yield " ".join(block)
                block = []
        if block:
            yield " ".join(block)


def _dataset_documents(name: str, config: str | None, split: str, column: str) -> tuple[Iterable[str], str]:
    try:
        import datasets

        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:   # offline, unknown name, gated, ...
        raise DataError(f"data.dataset={name!r} (config {config!r}, split {split!r}) could not be loaded: "
                        f"{type(e).__name__}: {str(e).splitlines()[0][:200]}. Without hub access use a local "
                        "text corpus: data.corpus=<file|dir|glob>.") from e
    if column not in ds.column_names:
        raise DataError(f"data.dataset={name!r} has no column {column!r} (columns: {ds.column_names}); "
                        "set data.text_column.")
    return (t for t in ds[column] if t and t.strip()), f"{name}/{config}/{split}/{ds._fingerprint}"


# ---- tokenising once ----------------------------------------------------------------------------------
def _tokenizer_key(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha1(json.dumps([type(tokenizer).__name__, vocab]).encode()).hexdigest()


def _sep_id(tokenizer) -> int:
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if sep is None:
        raise DataError(f"tokenizer {tokenizer.name_or_path!r} has no separator/end token to join documents.")
    return int(sep)


def tokenize_corpus(tokenizer, *, corpus=None, dataset: str | None = None, dataset_config: str | None = None,
                    dataset_split: str = "train", text_column: str = "text", doc_format: str = "auto",
                    cache_dir: str | os.PathLike | None = None, batch_docs: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets): all documents' token ids, each followed by [SEP], and document start offsets
    (len = docs + 1). Read from the cache when the same sources were tokenised by the same vocabulary."""
    if corpus is None and not dataset:
        raise DataError("Pre-training needs text: data.corpus=<file|dir|glob> (plain text, one document per line "
                        "or blank-line separated) or data.dataset=<datasets corpus, online>. "
                        "`python -m bortlab.pretrain.make_corpus --out corpus.txt` writes one from the task data.")
    if corpus is not None:
        files = corpus_files(corpus)
        source = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
        docs: Iterable[str] = (d for f in files for d in read_documents(f, doc_format))
        what = ", ".join(str(f) for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    else:
        docs, source = _dataset_documents(dataset, dataset_config, dataset_split, text_column)
        what = f"data.dataset={dataset}"
    key = hashlib.sha1(json.dumps([source, doc_format, _tokenizer_key(tokenizer)]).encode()).hexdigest()[:20]
    cache = Path(os.path.expanduser(os.fspath(cache_dir or "~/.cache/bortlab/corpus")))
    ids_file, off_file = cache / f"{key}.ids.npy", cache / f"{key}.docs.npy"
    if ids_file.exists() and off_file.exists():
        log.info("corpus: cached token ids %s", ids_file)
        return np.load(ids_file, mmap_mode="r", allow_pickle=False), np.load(off_file, allow_pickle=False)

    sep, chunks, lengths, batch = _sep_id(tokenizer), [], [], []

    def flush():
        if not batch:   # the tokenizer rejects an empty batch
            return
        for row in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            if row:   # a document of only unknown whitespace tokenises to nothing
                chunks.append(np.asarray(row + [sep], dtype=np.int32))
                lengths.append(len(row) + 1)
        batch.clear()

    for d in docs:
        batch.append(d)
        if len(batch) >= batch_docs:
            flush()
    flush()
    if not chunks:
        raise DataError(f"The corpus ({what}) holds no text: every file is empty or blank. Point data.corpus at "
                        "plain-text files with one document per line or blank-line separated documents.")
    ids = np.concatenate(chunks)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cache.mkdir(parents=True, exist_ok=True)
    from bortlab.files import atomic_path

    for path, arr in ((ids_file, ids), (off_file, offsets)):   # atomic: a crash never leaves half a cache
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    log.info("corpus: %d documents, %d tokens from %s (cached as %s)", len(lengths), len(ids), what, ids_file)
    return ids, offsets


# ---- splitting, packing, masking -------------------------------------------------------------------------
def split_documents(offsets: np.ndarray, heldout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Document indices (train, held-out): a seeded random `heldout` fraction of documents, at least one."""
    n = len(offsets) - 1
    if n < 2:
        raise DataError(f"The corpus has {n} document(s); a held-out split needs at least 2 (use one document "
                        "per line, or separate documents by blank lines).")
    k = min(n - 1, max(1, round(heldout * n)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


def pack(ids: np.ndarray, offsets: np.ndarray, docs: np.ndarray, max_length: int, cls: int, sep: int,
         min_tokens: int = 8) -> torch.Tensor:
    """(n_blocks, max_length) int64 blocks [CLS] chunk [SEP] from the documents `docs`; the last, shorter
    block is kept when it has `min_tokens` or more and padded with -1 (the collator pads it properly)."""
    stream = np.concatenate([ids[offsets[d]:offsets[d + 1]] for d in docs]).astype(np.int64)
    body = max_length - 2
    n_full, rest = divmod(len(stream), body)
    blocks = [stream[: n_full * body].reshape(n_full, body)]
    if rest >= min_tokens:
        blocks.append(np.pad(stream[n_full * body:], (0, body - rest), constant_values=-1)[None])
    body_ids = np.concatenate(blocks)
    out = np.full((len(body_ids), max_length), -1, dtype=np.int64)
    out[:, 0], out[:, 1:-1] = cls, body_ids
    lengths = (body_ids >= 0).sum(1)
    out[np.arange(len(out)), lengths + 1] = sep
    return torch.from_numpy(out)


class MaskingCollator:
    """Pads blocks (-1 marks padding) and applies BERT's 80/10/10 masking to `mlm_probability` of the
    non-special tokens of every sequence (at least one per sequence)."""

    def __init__(self, tokenizer, mlm_probability: float = 0.15, mask_fraction: float = 0.8,
                 random_fraction: float = 0.1, vocab_size: int | None = None):
        if tokenizer.mask_token_id is None:
            raise DataError(f"tokenizer {tokenizer.name_or_path!r} has no mask token; masked-LM training needs one.")
        self.mask_id, self.pad_id = int(tokenizer.mask_token_id), int(tokenizer.pad_token_id or 0)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.vocab_size = int(vocab_size or len(tokenizer))
        self.p, self.p_mask, self.p_random = mlm_probability, mask_fraction, random_fraction

    def __call__(self, blocks: Sequence[torch.Tensor] | torch.Tensor, generator: torch.Generator | None = None) -> dict:
        x = torch.stack(list(blocks)) if not torch.is_tensor(blocks) else blocks
        attention = x.ge(0)
        ids = x.clamp_min(0).masked_fill(~attention, self.pad_id)
        candidates = attention & ~torch.isin(ids, self.special)
        # choose exactly round(p * n) positions per row: rank random keys, candidates first
        keys = torch.rand(ids.shape, generator=generator).masked_fill(~candidates, 2.0)
        ranks = keys.argsort(dim=1).argsort(dim=1)
        n = (candidates.sum(1).float() * self.p).round().clamp_min(1).long()
        chosen = candidates & (ranks < n[:, None])
        labels = ids.masked_fill(~chosen, -100)
        u = torch.rand(ids.shape, generator=generator)
        to_mask = chosen & (u < self.p_mask)
        to_random = chosen & (u >= self.p_mask) & (u < self.p_mask + self.p_random)
        random_ids = torch.randint(self.vocab_size, ids.shape, generator=generator)
        inputs = torch.where(to_mask, torch.full_like(ids, self.mask_id), torch.where(to_random, random_ids, ids))
        return {"input_ids": inputs, "attention_mask": attention.long(), "labels": labels}


class _Blocks(torch.utils.data.Dataset):
    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.blocks[i]


class CorpusDataModule(L.LightningDataModule):
    """Packed, dynamically masked training blocks and fixed-masked held-out blocks from a corpus."""

    def __init__(self, tokenizer, *, corpus=None, dataset=None, dataset_config=None, dataset_split="train",
                 text_column="text", doc_format="auto", cache_dir=None, max_length: int = 128,
                 batch_size: int = 32, eval_batch_size: int = 64, heldout: float = 0.02,
                 heldout_max_blocks: int = 64, mlm_probability: float = 0.15, num_workers: int = 0, seed: int = 0,
                 vocab_size: int | None = None):
        super().__init__()
        self.tokenizer = tokenizer
        self.source = dict(corpus=corpus, dataset=dataset, dataset_config=dataset_config,
                           dataset_split=dataset_split, text_column=text_column, doc_format=doc_format,
                           cache_dir=cache_dir)
        self.max_length, self.batch_size, self.eval_batch_size = int(max_length), int(batch_size), int(eval_batch_size)
        self.heldout, self.heldout_max_blocks, self.seed = float(heldout), int(heldout_max_blocks), int(seed)
        self.num_workers = int(num_workers)
        self.collate = MaskingCollator(tokenizer, mlm_probability, vocab_size=vocab_size)
        self.train_blocks = self.val_batch = None
        self.stats: dict = {}

    def setup(self, stage: str | None = None) -> None:
        if self.train_blocks is not None:
            return
        ids, offsets = tokenize_corpus(self.tokenizer, **self.source)
        train_docs, held_docs = split_documents(offsets, self.heldout, self.seed)
        cls = self.tokenizer.cls_token_id if self.tokenizer.cls_token_id is not None else self.tokenizer.bos_token_id
        sep = _sep_id(self.tokenizer)
        self.train_blocks = pack(ids, offsets, train_docs, self.max_length, cls, sep)
        held = pack(ids, offsets, held_docs, self.max_length, cls, sep, min_tokens=1)[: self.heldout_max_blocks]
        if len(self.train_blocks) == 0:
            raise DataError(f"The corpus is too small: its training documents fill no block of {self.max_length} "
                            "tokens. Add text or lower data.max_length.")
        # masked once, with a fixed generator: the held-out loss is comparable across steps and runs
        self.val_batch = self.collate(held, generator=torch.Generator().manual_seed(self.seed + 1))
        self.stats = {"documents": len(offsets) - 1, "tokens": int(len(ids)), "train_documents": len(train_docs),
                      "heldout_documents": len(held_docs), "train_blocks": len(self.train_blocks),
                      "heldout_blocks": len(held), "max_length": self.max_length}
        log.info("corpus: %s", self.stats)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(_Blocks(self.train_blocks), batch_size=self.batch_size, shuffle=True,
                                           collate_fn=self.collate, num_workers=self.num_workers, drop_last=False)

    def val_dataloader(self):
        n = len(self.val_batch["input_ids"])
        chunks = [{k: v[i:i + self.eval_batch_size] for k, v in self.val_batch.items()}
                  for i in range(0, n, self.eval_batch_size)]
        return torch.utils.data.DataLoader(chunks, batch_size=None)
