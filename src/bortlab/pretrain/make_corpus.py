"""Write a plain-text pre-training corpus (one document per line) from the real task data under ../shared/data.

    python -m bortlab.pretrain.make_corpus --data ../shared/data --out corpus.txt

Documents: SST-2 and CoLA training sentences, QNLI questions and sentences, WiC sentences, CB and COPA
premises, and the BoolQ and MultiRC passages (Wikipedia, news, fiction...). Deduplicated, in source order.
Left out by default, so that a model pre-trained on this corpus is never evaluated on text it has read:
MRPC and RTE (the fine-tuning comparisons), STS-B (part of it comes from the MRPC corpus), the diagnostics.
`--exclude` names more sources to leave out (e.g. `--exclude boolq,multirc`).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterator

# name -> (path under the data root, reader yielding documents)
Reader = Callable[[Path], Iterator[str]]


def _tsv(column: int | str, header: bool) -> Reader:
    def read(path: Path) -> Iterator[str]:
        csv.field_size_limit(sys.maxsize)
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            names = next(rows) if header else None
            col = names.index(column) if isinstance(column, str) else column
            for row in rows:
                if len(row) > col:
                    yield row[col]
    return read


def _jsonl(*fields: str) -> Reader:
    def read(path: Path) -> Iterator[str]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    for field in fields:
                        value = obj
                        for part in field.split("."):
                            value = value.get(part, "") if isinstance(value, dict) else ""
                        yield value
    return read


SOURCES: dict[str, list[tuple[str, Reader]]] = {
    "sst2": [("glue/SST-2/train.tsv", _tsv("sentence", header=True))],
    "cola": [("glue/CoLA/train.tsv", _tsv(3, header=False))],
    "qnli": [(f"glue/QNLI/{s}.tsv", _tsv(c, header=True)) for s in ("dev", "test") for c in ("question", "sentence")],
    "wic": [(f"superglue/WiC/{s}.jsonl", _jsonl("sentence1", "sentence2")) for s in ("train", "val", "test")],
    "cb": [(f"superglue/CB/{s}.jsonl", _jsonl("premise")) for s in ("train", "val", "test")],
    "copa": [(f"superglue/COPA/{s}.jsonl", _jsonl("premise", "choice1", "choice2")) for s in ("train", "val", "test")],
    "boolq": [(f"superglue/BoolQ/{s}.jsonl", _jsonl("passage")) for s in ("val", "test")],
    "multirc": [(f"superglue/MultiRC/{s}.jsonl", _jsonl("passage.text")) for s in ("train", "val", "test")],
}


def documents(root: Path, exclude: set[str] = frozenset()) -> Iterator[str]:
    seen: set[str] = set()
    for name, files in SOURCES.items():
        if name in exclude:
            continue
        for rel, read in files:
            path = root / rel
            if not path.exists():
                print(f"make_corpus: skipping {path} (not found)", file=sys.stderr)
                continue
            for doc in read(path):
                doc = " ".join(str(doc).split())      # one line per document
                if doc and doc not in seen:
                    seen.add(doc)
                    yield doc


class _NoDocuments(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("BORTLAB_DATA") or "../shared/data",
                    help="directory holding glue/ and superglue/ (default: $BORTLAB_DATA or ../shared/data)")
    ap.add_argument("--out", required=True, help="the text file to write")
    ap.add_argument("--exclude", default="", help=f"comma-separated sources to leave out, of {sorted(SOURCES)}")
    args = ap.parse_args(argv)
    exclude = {e.strip() for e in args.exclude.split(",") if e.strip()}
    unknown = exclude - set(SOURCES)
    if unknown:
        ap.error(f"unknown sources {sorted(unknown)}; choose among {sorted(SOURCES)}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = words = 0
    from bortlab.files import atomic_path

    try:
        with atomic_path(out) as tmp:       # a crash never leaves half a corpus where a whole one was
            with open(tmp, "w", encoding="utf-8") as f:
                for doc in documents(Path(args.data), exclude):
                    f.write(doc + "\n")
                    n, words = n + 1, words + len(doc.split())
            if n == 0:
                raise _NoDocuments      # leaves the write without renaming the empty file into place
    except _NoDocuments:
        print(f"make_corpus: no documents found under {args.data} (expected glue/ and superglue/ there)",
              file=sys.stderr)
        return 1
    print(f"wrote {out}: {n} documents, {words} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
