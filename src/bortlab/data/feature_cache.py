"""On-disk cache of tokenised splits, so sweeps and reruns do not tokenise the same text again.

MultiRC's 27k answer rows, each with its ~300-token passage, take close to a minute to tokenise on two
cores; every FPTAS candidate job would pay it. The cache holds only token ids (int32 arrays in an .npz,
read with allow_pickle=False); labels are recomputed from the rows. The key covers everything that changes
the ids: task, split, the rows' text, tokenizer class, vocabulary and special tokens, max length, truncation.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from bortlab.files import atomic_path


def cache_dir() -> Optional[Path]:
    d = os.environ.get("BORTLAB_CACHE", str(Path.home() / ".cache" / "bortlab" / "features"))
    return None if d in ("", "0", "off") else Path(d)


def cache_key(task, split: str, rows, tokenizer, max_length: int, use_token_types: bool,
              passage_fit: str = "cut") -> str:
    h = hashlib.sha1()
    vocab = tokenizer.get_vocab()
    meta = [task.name, split, max_length, task.truncation, passage_fit, use_token_types, type(tokenizer).__name__,
            len(vocab), sorted(tokenizer.special_tokens_map.items(), key=str), getattr(tokenizer, "do_lower_case", None)]
    h.update(json.dumps(meta, default=str).encode())
    h.update(hashlib.sha1(json.dumps(sorted(vocab.items())[:: max(1, len(vocab) // 2000)]).encode()).digest())
    for r in rows:
        h.update(json.dumps(task.inputs(r), ensure_ascii=False).encode())
    return h.hexdigest()[:24]


def load(key: str):
    d = cache_dir()
    path = d / f"{key}.npz" if d else None
    if path is None or not path.exists():
        return None
    try:
        z = np.load(path, allow_pickle=False)
        return _unflatten(z["ids"], z["lengths"]), (_unflatten(z["types"], z["lengths"]) if "types" in z else None)
    except Exception:      # a damaged cache file is simply recomputed
        return None


def save(key: str, ids: list[list[int]], types: Optional[list[list[int]]]) -> None:
    d = cache_dir()
    if d is None:
        return
    d.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(s) for s in ids], dtype=np.int32)
    arrays = {"ids": np.fromiter((t for s in ids for t in s), dtype=np.int32, count=int(lengths.sum())),
              "lengths": lengths}
    if types is not None:
        arrays["types"] = np.fromiter((t for s in types for t in s), dtype=np.int8, count=int(lengths.sum()))
    # a file object, not a name: np.savez would append ".npz" to the temporary name
    with atomic_path(d / f"{key}.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _unflatten(flat: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    ends = np.cumsum(lengths)
    flat = flat.tolist()
    return [flat[e - n : e] for e, n in zip(ends.tolist(), lengths.tolist())]
