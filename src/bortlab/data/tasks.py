"""One table of tasks drives readers, input encoding, heads, metrics and submissions.

Each benchmark module (`glue`, `superglue`, `race`) registers its tasks here with `register`. A task turns a
row (a dict read from the official release files) into text pairs with `inputs(row)` — one pair for
classification and regression, one per choice for multiple choice — and a target with `target(row)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

Pair = tuple[str, Optional[str]]


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
    group: Optional[Callable[[dict], object]] = None   # MultiRC/ReCoRD: the question an answer belongs to
    predict_with: Optional[str] = None          # diagnostics (AX): predicted with the model of this task
    hf_dataset: Optional[tuple[str, str]] = None       # (path, name) for datasets.load_dataset when no local files
    submission_name: str = ""                   # leaderboard file name for test predictions

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
