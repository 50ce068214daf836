"""Finding and reading the official release files, with errors that name the file, the line and the fix."""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Optional

ENV_ROOT = "BORTLAB_DATA"

_HOW_TO_GET = {
    "glue": "download GLUE with the official download_glue_data.py script (it writes <root>/<TASK>/*.tsv)",
    "superglue": "download SuperGLUE from super.gluebenchmark.com/tasks and unzip it (it writes <root>/<Task>/*.jsonl)",
    "race": "request RACE from www.cs.cmu.edu/~glai1/data/race/ and unpack it (it writes <root>/RACE/{train,dev,test}/{middle,high}/*.txt)",
}


class DataError(ValueError):
    """A missing or malformed data file; the message names the path (and line) and how to fix it."""


def default_root() -> Optional[str]:
    return os.environ.get(ENV_ROOT) or None


def task_dir(root: Optional[str | os.PathLike], benchmark: str, dirname: str) -> Optional[Path]:
    """The directory holding a task's files, or None when no local copy exists.

    `root` may point at the benchmark directory (`data/glue`) or at its parent (`data`, holding `glue/`,
    `superglue/`): both layouts are accepted. Without `root`, $BORTLAB_DATA is used."""
    root = root if root not in (None, "") else default_root()
    if root is None:
        return None
    root = Path(root).expanduser()
    for cand in (root / dirname, root / benchmark / dirname, root / benchmark.upper() / dirname):
        if cand.is_dir():
            return cand
    return None


def missing_file_error(task_name: str, benchmark: str, expected: Path | str, root) -> DataError:
    how = _HOW_TO_GET.get(benchmark, "get the official release files")
    where = f"data.root={root!s}" if root else f"no data.root and ${ENV_ROOT} unset"
    return DataError(
        f"{task_name}: data file not found: {expected} ({where}). To fix: {how}, then pass "
        f"data.root=<dir> (or set {ENV_ROOT}=<dir>); with internet access and no local files the task is "
        "loaded with datasets.load_dataset instead."
    )


def read_tsv(path: Path, *, header: bool, min_columns: int, quoting: int = csv.QUOTE_NONE) -> tuple[list[str], list[list[str]]]:
    """Rows of a GLUE-style TSV. Quoting is off (some sentences contain unbalanced quotes) and a UTF-8 BOM
    is skipped (MRPC has one). A row with too few columns raises DataError naming file and line."""
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=quoting)
        head: list[str] = next(reader, []) if header else []
        rows = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < min_columns:
                raise DataError(
                    f"{path}:{reader.line_num}: malformed row: expected at least {min_columns} tab-separated "
                    f"columns, found {len(row)} ({_preview(row)}). Re-download the file or fix that line."
                )
            rows.append(row)
        return head, rows


def read_jsonl(path: Path, required: Iterable[str] = ()) -> list[dict]:
    """Objects of a JSON-lines file; a line that does not parse or lacks a required field raises DataError
    naming the file and line."""
    required = tuple(required)
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: line is not valid JSON ({e.msg} at column {e.colno}).") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, found {type(obj).__name__}.")
            missing = [k for k in required if k not in obj]
            if missing:
                raise DataError(f"{path}:{lineno}: missing field(s) {missing}; found {sorted(obj)}.")
            out.append(obj)
    return out


def load_hf_split(task_name: str, hf_dataset: Optional[tuple[str, str]], split: str, benchmark: str, expected: Path | str, root):
    """Fallback to `datasets.load_dataset` when there are no local files. Offline, it fails with the same
    message a missing local file gives (plus the hub error), not a deep stack trace."""
    if hf_dataset is None:
        raise missing_file_error(task_name, benchmark, expected, root)
    from bortlab.hub import hub_reachable, is_local

    packaged = hf_dataset[0] in ("json", "csv", "parquet", "text", "arrow")   # builders that read local files
    if not (packaged or is_local(hf_dataset[0]) or hub_reachable()):
        err = missing_file_error(task_name, benchmark, expected, root)
        raise DataError(f"{err} (The Hugging Face hub is unreachable, so datasets.load_dataset{tuple(hf_dataset)} "
                        "was not tried.)")
    try:
        import datasets

        ds = datasets.load_dataset(*hf_dataset, split=split)
    except Exception as e:  # the hub is unreachable, the name is wrong, ...
        err = missing_file_error(task_name, benchmark, expected, root)
        raise DataError(f"{err} (datasets.load_dataset{hf_dataset} failed: {type(e).__name__}: {str(e)[:200]})") from None
    return [dict(r) for r in ds]


def _preview(row: list[str], width: int = 80) -> str:
    text = "\\t".join(row)
    return text if len(text) <= width else text[: width - 3] + "..."
