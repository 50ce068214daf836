"""One table of tasks drives readers, input encoding, heads, metrics and submissions.

Each benchmark module (`glue`, `superglue`, `race`) registers its tasks here with `register`. A task turns a
row (a dict read from the official release files) into text pairs with `inputs(row)` — one pair for
classification and regression, one per choice for multiple choice — and a target with `target(row)`.

The table also says how a task is scored and submitted, so that code needs no per-task branches:
`readout` (how one prediction per row comes from the logits), `metrics` / `scored_by` (the official names
and the registered metric computing each, `bortlab.data.metrics`), `group` (rows scored together),
`candidate` / `gold_answers` (answer texts, ReCoRD), and `submission_name` / `submission_files` /
`submission_format` / `submission_keys` / `submission_labels` / `value_range` (the leaderboard file).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

Pair = tuple[str, Optional[str]]

# How `bortlab.data.scoring.predictions` reads one prediction per row from the logits:
READOUTS = {
    "argmax": "label or choice index: argmax over the logits (indices pass through)",
    "value": "regression score: the single logit",
    "group_best": "candidate score (logit of class 1 minus class 0); the best row of each `group` is its answer",
}
# The record shapes of submission files (`bortlab.data.submission.write_submission`):
SUBMISSION_FORMATS = {
    "tsv": "GLUE: a header `index<TAB>prediction`, then one line per row",
    "jsonl": "SuperGLUE/RACE: one JSON object per row (per group for group_best), submission_keys + label",
    "jsonl_nested": "MultiRC: one line per passage, answers nested in questions by the submission_keys levels",
}


class TaskError(ValueError):
    """Unknown task or a task used in a way it does not support."""


@dataclass(frozen=True)
class Task:
    name: str                                   # "glue/rte": the Hydra config path under conf/task/
    benchmark: str                              # "glue" | "superglue" | "race"
    kind: str                                   # "classification" | "regression" | "multiple_choice"
    metrics: tuple[str, ...]                    # official metrics; metrics[0] selects checkpoints
    reader: Callable                            # reader(task, split, root) -> list[dict]
    inputs: Callable[[dict], list[Pair]]        # row -> text pairs (one per choice for multiple choice)
    target: Callable[[dict], object]            # row -> label index / float score / choice index; None if unlabelled
    labels: tuple[str, ...] = ()                # label strings as in the files, in index order
    splits: tuple[str, ...] = ("train", "dev", "test")   # every split the reader accepts
    dev_splits: tuple[str, ...] = ("dev",)      # evaluated each validation; dev_splits[0] selects checkpoints
    test_splits: tuple[str, ...] = ("test",)    # unlabelled; predicted into submission files
    dirname: str = ""                           # directory of the task inside the benchmark's release
    max_length: int = 128                       # default tokenised length; long-passage tasks override
    truncation: str = "longest_first"           # tokenizer truncation strategy; "only_first" = passage first
    num_choices: int = 0                        # multiple choice: choices per example
    group: Optional[Callable[[dict], object]] = None   # rows scored together: MultiRC/ReCoRD the question an
                                                #   answer / candidate belongs to, AX-g the minimal pair
    predict_with: Optional[str] = None          # diagnostics (AX): predicted with the model of this task
    hf_dataset: Optional[tuple[str, str]] = None       # (path, name) for datasets.load_dataset when no local files
    # ---- scoring (bortlab.data.scoring / metrics): how predictions are read and which metric computes each name
    readout: str = "argmax"                     # predictions from logits, see READOUTS
    scored_by: tuple[str, ...] = ()             # registry metric behind each of `metrics` (same order) where it is
                                                #   not the name itself (ReCoRD's f1/em are answer-string metrics)
    candidate: Optional[Callable[[dict], str]] = None  # readout "group_best": the answer text a row proposes
    gold_answers: Optional[Callable[[dict], Sequence[str]]] = None   # "group_best": the gold answer texts of a row
    value_range: Optional[tuple[float, float]] = None  # readout "value": the gold scale; submissions clip to it
    # ---- submissions (bortlab.data.submission / superglue_submission)
    submission_name: str = ""                   # leaderboard file name for test predictions
    submission_files: tuple[tuple[str, str], ...] = ()   # (test split, file name) where it is not submission_name
    submission_format: str = "jsonl"            # record shape, see SUBMISSION_FORMATS
    submission_labels: tuple = ()               # a label index as the leaderboard spells it; () = `labels`
    submission_keys: tuple[tuple[str, str], ...] = (("idx", "idx"),)   # (record key, row key) naming each record;
                                                #   "jsonl_nested": the row keys of the outer to inner levels

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise TaskError(f"{self.name}: readout {self.readout!r} is not one of {sorted(READOUTS)}.")
        if self.submission_format not in SUBMISSION_FORMATS:
            raise TaskError(f"{self.name}: submission_format {self.submission_format!r} is not one of "
                            f"{sorted(SUBMISSION_FORMATS)}.")
        if self.scored_by and len(self.scored_by) != len(self.metrics):
            raise TaskError(f"{self.name}: scored_by names {len(self.scored_by)} metrics for the {len(self.metrics)} "
                            f"in metrics {self.metrics}; give one per metric, or none.")
        if self.readout == "group_best" and (self.group is None or self.candidate is None):
            raise TaskError(f"{self.name}: readout 'group_best' needs group= and candidate=.")

    @property
    def metric_impls(self) -> tuple[str, ...]:
        """The registry metric computing each of `metrics`, in the same order."""
        return self.scored_by or self.metrics

    @property
    def submission_spelling(self) -> tuple:
        """Label index -> the value a submission file writes."""
        return self.submission_labels or self.labels

    def submission_file(self, split: str) -> str:
        """The leaderboard file name of a test split ("" when the task has none)."""
        return dict(self.submission_files).get(split, self.submission_name)

    @property
    def num_labels(self) -> int:
        if self.kind == "regression":
            return 1
        if self.kind == "multiple_choice":
            return 1                            # one score per (context, choice) pair
        return len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"


_TASKS: dict[str, Task] = {}
_LOADED = False     # set once every benchmark module has been imported (and so has registered its tasks)


def register(task: Task) -> Task:
    _TASKS[task.name] = task
    return task


def _load_benchmarks() -> None:
    # benchmark modules register on import; import lazily so `tasks` has no import cycle. A flag, not
    # "is _TASKS empty", decides: importing one module directly (bortlab.data.glue) must not hide the others.
    global _LOADED
    if _LOADED:
        return
    import importlib

    for mod in ("glue", "superglue", "race"):
        try:
            importlib.import_module(f"bortlab.data.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"bortlab.data.{mod}":
                raise
    _LOADED = True


def get_task(name: str) -> Task:
    _load_benchmarks()
    key = name.strip().lower()
    if key not in _TASKS:
        raise TaskError(
            f"Unknown task {name!r}. Known tasks: {', '.join(sorted(_TASKS))}. "
            "Pass it as task=<benchmark>/<task>, e.g. task=glue/rte."
        )
    return _TASKS[key]


def read_split(task: str | Task, split: str, root=None) -> list[dict]:
    """Rows of one split of a task, from the official release files under `root` (default $BORTLAB_DATA),
    or from `datasets.load_dataset` when no local copy exists."""
    t = task if isinstance(task, Task) else get_task(task)
    if split not in t.splits:
        raise TaskError(f"{t.name} has no split {split!r}; its splits are {list(t.splits)}.")
    return t.reader(t, split, root)


def all_tasks() -> dict[str, Task]:
    _load_benchmarks()
    return dict(_TASKS)
