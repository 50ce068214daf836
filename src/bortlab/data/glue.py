"""GLUE: one Task per task, read from the GLUE release TSV files (or `nyu-mll/glue` through `datasets`).

Every reader returns rows as dicts with normalised keys, whatever the file calls its columns:
`idx` (the id a submission needs: the file's id column in test files, the 0-based row number otherwise),
the text fields (`sentence`, `sentence1`/`sentence2`, `question`/`sentence`, `question1`/`question2`) and
`label` (the label string as the file spells it, a float for STS-B, None for unlabelled rows).

Label order (index = position in `Task.labels`) equals the class ids of `nyu-mll/glue`, so the `datasets`
fallback maps an id to a label string by position; MNLI and AX therefore use HF's
(entailment, neutral, contradiction) rather than alphabetical order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional

from bortlab.data import io
from bortlab.data.tasks import Pair, Task, register

HF_GLUE = "nyu-mll/glue"
_BINARY = ("0", "1")
_NLI3 = ("entailment", "neutral", "contradiction")
_NLI2 = ("entailment", "not_entailment")
_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
_HF_SPLITS = {"train": "train", "dev": "validation", "test": "test"}


@dataclass(frozen=True)
class Layout:
    """How one task's release files are laid out."""
    text: tuple[str, ...]                       # normalised text keys, in input order
    columns: dict[str, str]                     # normalised key -> header name in the file
    label_column: str                           # header name of the gold label in labelled files
    id_column: str = "index"                    # header name of the submission id in test files
    headerless: dict[str, tuple[str, ...]] = field(default_factory=dict)   # split -> column names (no header line)
    files: dict[str, str] = field(default_factory=lambda: dict(_FILES))    # split -> file name
    hf_columns: dict[str, str] = field(default_factory=dict)              # normalised key -> HF column, where it differs
    hf_splits: dict[str, str] = field(default_factory=lambda: dict(_HF_SPLITS))


def _same(*keys: str) -> dict[str, str]:
    return {k: k for k in keys}


_PAIR = _same("sentence1", "sentence2")
_MNLI_FILES = {s: f"{s}.tsv" for s in ("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched")}
_MNLI_HF = {"train": "train", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched",
            "test_matched": "test_matched", "test_mismatched": "test_mismatched"}
_PREMISE = {"sentence1": "premise", "sentence2": "hypothesis"}

LAYOUTS: dict[str, Layout] = {
    # CoLA train/dev are the only GLUE files without a header line
    "glue/cola": Layout(("sentence",), _same("sentence"), "label",
                        headerless={s: ("source", "label", "orig_label", "sentence") for s in ("train", "dev")}),
    "glue/sst2": Layout(("sentence",), _same("sentence"), "label"),
    "glue/mrpc": Layout(("sentence1", "sentence2"), {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality"),
    "glue/stsb": Layout(("sentence1", "sentence2"), _PAIR, "score"),
    "glue/qqp": Layout(("question1", "question2"), _same("question1", "question2"), "is_duplicate", id_column="id"),
    "glue/mnli": Layout(("sentence1", "sentence2"), _PAIR, "gold_label", files=_MNLI_FILES,
                        hf_columns=_PREMISE, hf_splits=_MNLI_HF),
    "glue/qnli": Layout(("question", "sentence"), _same("question", "sentence"), "label"),
    "glue/rte": Layout(("sentence1", "sentence2"), _PAIR, "label"),
    "glue/wnli": Layout(("sentence1", "sentence2"), _PAIR, "label"),
    "glue/ax": Layout(("sentence1", "sentence2"), _PAIR, "label", files={"test": "diagnostic.tsv"},
                      hf_columns=_PREMISE, hf_splits={"test": "test"}),
}


# ---- reading ---------------------------------------------------------------------------------------
def read_glue(task: Task, split: str, root=None) -> list[dict]:
    """Rows of one split: the local release file when the task's directory exists under `root`
    (or $BORTLAB_DATA), else `datasets.load_dataset(*task.hf_dataset)`."""
    layout = LAYOUTS[task.name]
    fname = layout.files[split]
    tdir = io.task_dir(root, task.benchmark, task.dirname)
    if tdir is None:
        return _read_hf(task, layout, split, _expected(root, task, fname), root)
    path = tdir / fname
    if not path.is_file():
        raise io.missing_file_error(task.name, task.benchmark, path, root)
    return _read_file(task, layout, split, path)


def _expected(root, task: Task, fname: str) -> Path:
    # where the file would be in the usual layout; only used in error messages
    base = Path(root) if root not in (None, "") else Path(io.default_root() or f"${io.ENV_ROOT}")
    if base.name.lower() != task.benchmark:
        base = base / task.benchmark
    return base / task.dirname / fname


def _read_file(task: Task, layout: Layout, split: str, path: Path) -> list[dict]:
    test = split in task.test_splits
    names = layout.headerless.get(split)
    head, raw = io.read_tsv(path, header=names is None, min_columns=1)
    head = list(names) if names is not None else [h.strip() for h in head]
    wanted = {k: layout.columns[k] for k in layout.text}
    if test:
        wanted["idx"] = layout.id_column        # test rows are submitted under the file's own ids
    else:
        wanted["label"] = layout.label_column
    missing = [c for c in wanted.values() if c not in head]
    if missing:
        raise io.DataError(
            f"{path}:1: header lacks column(s) {missing}; found {head}. {task.name} expects the GLUE release "
            f"layout (columns {sorted(wanted.values())}); re-download the file or fix its header."
        )
    pos = {k: head.index(c) for k, c in wanted.items()}
    need = max(pos.values()) + 1
    if any(len(r) < need for r in raw):
        # read again with the real minimum (error path only) so read_tsv names the short row's line
        io.read_tsv(path, header=names is None, min_columns=need)
    known = set(task.labels)
    rows = []
    for n, r in enumerate(raw):
        row = {"idx": n}
        for k, p in pos.items():
            row[k] = r[p]
        if test:
            row["idx"] = _as_int(row["idx"], path, n, names is None, layout.id_column)
            row["label"] = None
        elif task.is_regression:
            row["label"] = _as_float(row["label"], path, n, names is None)
        elif row["label"] not in known:
            raise io.DataError(
                f"{path}:{_line_of(path, n, names is None)}: label {row['label']!r} is not one of {list(task.labels)} "
                f"({task.name}, column {layout.label_column!r}). The row is probably shifted by a stray tab or the "
                "file is not the GLUE release; fix that line or re-download the file."
            )
        rows.append(row)
    return rows


def _as_int(value: str, path: Path, n: int, header: bool, column: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise io.DataError(f"{path}:{_line_of(path, n, header)}: id column {column!r} holds {value!r}, not an "
                           "integer; fix that line or re-download the file.") from None


def _as_float(value: str, path: Path, n: int, header: bool) -> float:
    try:
        return float(value)
    except ValueError:
        raise io.DataError(f"{path}:{_line_of(path, n, header)}: score {value!r} is not a number; fix that "
                           "line or re-download the file.") from None


def _line_of(path: Path, n: int, header: bool) -> int:
    """1-based line number of data row `n` (error path only): read_tsv skips blank lines, so count again."""
    seen = -1
    with open(path, encoding="utf-8-sig", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            if header and lineno == 1:
                continue
            if "\t" in line or line.strip():    # the rows read_tsv keeps
                seen += 1
                if seen == n:
                    return lineno
    return lineno


def _read_hf(task: Task, layout: Layout, split: str, expected: Path, root) -> list[dict]:
    raw = io.load_hf_split(task.name, task.hf_dataset, layout.hf_splits[split], task.benchmark, expected, root)
    test = split in task.test_splits
    rows = []
    for n, r in enumerate(raw):
        row = {"idx": int(r.get("idx", n))}
        for k in layout.text:
            row[k] = r[layout.hf_columns.get(k, k)]
        label = r.get("label")
        if test or label is None or label == -1:   # HF marks unlabelled rows with -1
            row["label"] = None
        elif task.is_regression:
            row["label"] = float(label)
        else:
            if not 0 <= int(label) < len(task.labels):
                raise io.DataError(f"{task.name}: datasets.load_dataset{task.hf_dataset} split {layout.hf_splits[split]!r} "
                                   f"row {n} has label id {label}, outside 0..{len(task.labels) - 1}.")
            row["label"] = task.labels[int(label)]
        rows.append(row)
    return rows


# ---- encoding --------------------------------------------------------------------------------------
def text_pair(keys: tuple[str, ...], row: dict) -> list[Pair]:
    return [(row[keys[0]], row[keys[1]] if len(keys) > 1 else None)]


def label_index(labels: tuple[str, ...], row: dict) -> Optional[int]:
    label = row.get("label")
    return None if label is None else labels.index(label)


def score(row: dict) -> Optional[float]:
    label = row.get("label")
    return None if label is None else float(label)


# ---- the table -------------------------------------------------------------------------------------
def _glue(short: str, dirname: str, metrics: tuple[str, ...], labels: tuple[str, ...], submission: str,
          **kw) -> Task:
    name = f"glue/{short}"
    regression = not labels
    return register(Task(
        name=name, benchmark="glue", kind="regression" if regression else "classification", metrics=metrics,
        reader=read_glue, inputs=partial(text_pair, LAYOUTS[name].text),
        target=score if regression else partial(label_index, labels),
        labels=labels, dirname=dirname, hf_dataset=(HF_GLUE, short),
        readout="value" if regression else "argmax",
        submission_name=submission, submission_format="tsv", submission_keys=(("index", "idx"),), **kw,
    ))


COLA = _glue("cola", "CoLA", ("mcc",), _BINARY, "CoLA.tsv")
SST2 = _glue("sst2", "SST-2", ("accuracy",), _BINARY, "SST-2.tsv")
MRPC = _glue("mrpc", "MRPC", ("f1", "accuracy"), _BINARY, "MRPC.tsv")
# similarity scores on [0, 5]: the submission clips predictions to that scale
STSB = _glue("stsb", "STS-B", ("pearson", "spearman"), (), "STS-B.tsv", value_range=(0.0, 5.0))
QQP = _glue("qqp", "QQP", ("f1", "accuracy"), _BINARY, "QQP.tsv")
# MNLI has two test sets and so two leaderboard files, one per split
MNLI = _glue("mnli", "MNLI", ("accuracy",), _NLI3, "MNLI-m.tsv",
             splits=("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched"),
             dev_splits=("dev_matched", "dev_mismatched"), test_splits=("test_matched", "test_mismatched"),
             submission_files=(("test_matched", "MNLI-m.tsv"), ("test_mismatched", "MNLI-mm.tsv")))
QNLI = _glue("qnli", "QNLI", ("accuracy",), _NLI2, "QNLI.tsv")
RTE = _glue("rte", "RTE", ("accuracy",), _NLI2, "RTE.tsv")
WNLI = _glue("wnli", "WNLI", ("accuracy",), _BINARY, "WNLI.tsv")
# the diagnostic set has no training data: it is predicted with the MNLI model, hence MNLI's labels
AX = _glue("ax", "diagnostic", ("mcc",), _NLI3, "AX.tsv", splits=("test",), dev_splits=(),
           predict_with="glue/mnli")
