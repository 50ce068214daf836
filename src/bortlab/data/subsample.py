"""Which training rows a run uses: a seeded reserve held out of the train split, a class-balanced subset.

The scarce-data protocol of docs/agora.md (issue 19) in config keys alone:

    labeller:  data.reserve=20000 data.reserve_seed=0 data.use=rest            # trains on U = train − R
    student:   data.reserve=20000 data.reserve_seed=0 data.use=reserve \
               data.train_subset=500 data.train_subset_seed=${seed}            # S: 250 + 250 rows of R
               agora.dev=holdout agora.holdout_size=500                        # H: the next 250 + 250 of R
    A1 (S ∪ H with gold labels):   the same with data.train_subset=1000

Draws are nested on purpose: the chosen part is shuffled once (seeded by `train_subset_seed`) and grouped by
class; a balanced draw of n takes the first n/C rows of every class in that order, and the rows not drawn
(`spare`) keep the order. So S = the first 250 per class, H (drawn from the spare) = the next 250 per class,
and `train_subset=1000` = S ∪ H exactly: arm A1 trains on the very rows A2 trains on and reads.

Tuning on a development split, never on the official dev (`data.tune_split`, `data.tune_skip`):

    data.tune_split=500 data.tune_skip=500     # score on D: the balanced 250 + 250 spare rows after H's 500

D is drawn from the spare by the same rule (skip the next `tune_skip` per the class quota, take the next
`tune_split`), so it never overlaps S, nor H when tune_skip = agora.holdout_size; D leaves the spare (no
distillation pool can hold its rows) and replaces the official dev split as the run's dev: checkpoint
selection, the final scores and metrics.json's `dev` are D's, and `dev_split` says so.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional, Sequence

from bortlab.config import SetupError

USES = ("all", "rest", "reserve")


@dataclass(frozen=True)
class Selection:
    reserve: Optional[int] = None     # rows of train held back as the reserve R (null: none)
    reserve_seed: int = 0             # fixed across seeds, so every run agrees on which rows are R
    use: str = "all"                  # all | rest (train − R: e.g. the labeller) | reserve (R: e.g. the student)
    subset: Optional[int] = None      # a class-balanced sample of this many rows of the chosen part (null: all)
    subset_seed: int = 0              # per seed a different S; the spare rows keep this order
    tune: Optional[int] = None        # score on this many spare rows (balanced) instead of the official dev
    tune_skip: int = 0                # spare rows skipped first (e.g. Agora's hold-out H), so D is disjoint from them

    @classmethod
    def from_cfg(cls, data) -> "Selection":
        """From the config's `data` node (a DictConfig or dict); absent keys take the defaults."""
        get = data.get if data is not None else (lambda k, d=None: d)
        sel = cls(reserve=_whole(get("reserve", None), "data.reserve"),
                  reserve_seed=_whole(get("reserve_seed", 0), "data.reserve_seed") or 0,
                  use=str(get("use", "all") or "all"),
                  subset=_whole(get("train_subset", None), "data.train_subset"),
                  subset_seed=_whole(get("train_subset_seed", 0), "data.train_subset_seed") or 0,
                  tune=_whole(get("tune_split", None), "data.tune_split"),
                  tune_skip=_whole(get("tune_skip", 0), "data.tune_skip") or 0)
        sel.check()
        return sel

    @property
    def active(self) -> bool:
        return self.reserve is not None or self.subset is not None or self.tune is not None

    def check(self, n_rows: Optional[int] = None, n_classes: int = 0) -> None:
        """Bad combinations, named with their fix; with `n_rows`, also sizes that the split cannot give."""
        if self.use not in USES:
            raise SetupError(f"data.use={self.use!r} is not one of {', '.join(USES)}: all (the whole train split), "
                             "rest (train minus the data.reserve rows, e.g. for a labeller) or reserve (only the "
                             "reserved rows, e.g. for a student drawn from them).")
        if self.use != "all" and self.reserve is None:
            raise SetupError(f"data.use={self.use} needs data.reserve=<rows held back> (e.g. data.reserve=20000 "
                             "data.reserve_seed=0): without a reserve there is no rest and no reserve to use.")
        if self.reserve is not None and self.use == "all":
            raise SetupError(f"data.reserve={self.reserve} with data.use=all holds nothing back: the run would "
                             "train on the reserved rows too. Say which part to train on: data.use=rest (train "
                             "minus the reserve) or data.use=reserve (only the reserve), or drop data.reserve.")
        if self.reserve is not None and self.reserve < 1:
            raise SetupError(f"data.reserve={self.reserve} must be >= 1 (rows held back), or null for none.")
        if self.subset is not None and self.subset < max(1, n_classes):
            raise SetupError(f"data.train_subset={self.subset} must be >= {max(1, n_classes)} (one row per class "
                             "at least), or null to train on every row of the chosen part.")
        if self.tune is not None and self.subset is None:
            raise SetupError(f"data.tune_split={self.tune} draws its rows from the spare (the rows data.train_subset "
                             "leaves out of the chosen part), but no data.train_subset is set, so every train row is "
                             "trained on and none is left to tune on. Set data.train_subset=<rows to train on> (with "
                             "data.reserve/data.use if the rest must stay unseen), or drop data.tune_split to score "
                             "on the official dev split.")
        if self.tune is not None and self.tune < max(1, n_classes):
            raise SetupError(f"data.tune_split={self.tune} must be >= {max(1, n_classes)} (one row per class at "
                             "least), or null to score on the official dev split.")
        if self.tune_skip < 0:
            raise SetupError(f"data.tune_skip={self.tune_skip} must be >= 0 (spare rows skipped before the tune split).")
        if n_rows is None:
            return
        if self.reserve is not None and self.reserve >= n_rows:
            raise SetupError(f"data.reserve={self.reserve} leaves nothing of the {n_rows}-row train split to the "
                             f"rest. Reserve fewer rows (less than {n_rows}).")
        part = {"all": n_rows, "rest": n_rows - (self.reserve or 0), "reserve": self.reserve or 0}[self.use]
        if self.subset is not None and self.subset > part:
            raise SetupError(f"data.train_subset={self.subset} is more than the {part} rows of the chosen part "
                             f"(data.use={self.use}). Draw at most {part}, or reserve more rows.")
        if self.tune is not None and self.subset + self.tune_skip + self.tune > part:
            raise SetupError(f"data.train_subset={self.subset} + data.tune_skip={self.tune_skip} + data.tune_split="
                             f"{self.tune} is more than the {part} rows of the chosen part (data.use={self.use}). "
                             "Tune on fewer rows, or reserve more.")

    def split(self, task, rows: Sequence[dict]) -> tuple[list[int], list[int]]:
        """(train indices, spare indices) into `rows`: spare = the chosen part's rows not in the subset, in
        draw order (empty when no subset is drawn)."""
        labels = [task.target(r) for r in rows] if task.kind != "regression" else None
        self.check(len(rows), len(set(labels)) if labels else 0)
        part = list(range(len(rows)))
        if self.reserve is not None:
            order = list(range(len(rows)))
            random.Random(self.reserve_seed).shuffle(order)
            reserved = set(order[: self.reserve])
            part = [i for i in part if (i in reserved) == (self.use == "reserve")]
        if self.subset is None:
            return part, []
        random.Random(self.subset_seed).shuffle(part)
        if labels is None:                     # regression: no classes to balance, a plain seeded sample
            return sorted(part[: self.subset]), part[self.subset:]
        return balanced_take(part, [labels[i] for i in part], self.subset)


def tune_take(task, rows: Sequence[dict], spare: Sequence[int], skip: int, n: int) -> tuple[list[int], list[int]]:
    """(tune, spare left): D = `n` rows of `spare` after the next `skip` (class-balanced, in draw order, as
    every other draw from the spare); the skipped rows stay in the spare, first, in their order."""
    spare = list(spare)
    if task.kind == "regression":             # no classes: the next rows in draw order
        return sorted(spare[skip: skip + n]), spare[:skip] + spare[skip + n:]
    labels = {i: task.target(rows[i]) for i in spare}
    skipped, rest = balanced_take(spare, [labels[i] for i in spare], skip)
    tune, _ = balanced_take(rest, [labels[i] for i in rest], n)
    taken = set(tune)
    return tune, [i for i in spare if i not in taken]


def balanced_take(order: Sequence[int], labels: Sequence, n: int) -> tuple[list[int], list[int]]:
    """(taken, rest): `n` items of `order` as equal over the labels as they allow (a class that runs short gives
    its share to the others), each class's items taken first-come in `order`; `rest` keeps the order of the
    items not taken, so a second call on it takes the next ones of every class."""
    by_class: dict[object, list[int]] = {}
    for pos, y in enumerate(labels):
        by_class.setdefault(y, []).append(pos)
    quota = share(n, {y: len(p) for y, p in by_class.items()})
    taken_pos = sorted(p for y, ps in by_class.items() for p in ps[: quota[y]])
    chosen = set(taken_pos)
    return sorted(order[p] for p in taken_pos), [order[p] for p in range(len(order)) if p not in chosen]


def share(n: int, available: dict) -> dict:
    """How many of each class to take for `n` in all, as equal as `available` allows (water-filling): the
    remainder of an uneven split goes to classes in sorted order, a short class's deficit to the others."""
    quota = {y: 0 for y in available}
    left, open_ = min(n, sum(available.values())), sorted(available, key=str)
    while left > 0 and open_:
        each, extra = divmod(left, len(open_))
        for j, y in enumerate(list(open_)):
            give = min(each + (1 if j < extra else 0), available[y] - quota[y])
            quota[y] += give
            left -= give
        open_ = [y for y in open_ if quota[y] < available[y]]
    return quota


def _whole(value, key: str) -> Optional[int]:
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer()
    if not ok:
        raise SetupError(f"{key}={value!r} is not a whole number. Pass e.g. {key}=500, or null.")
    return int(value)
