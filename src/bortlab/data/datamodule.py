"""A LightningDataModule for any task in the table: tokenise once, pad per batch, group by length.

Batches are padded to their own longest sequence (dynamic padding), and training batches are drawn from
length-sorted "mega-batches" so that sequences of similar length meet: on GLUE this cuts the padded tokens
several-fold, which is most of the speed-up over fixed-length batches. Evaluation batches are sorted by
length too; every batch carries the row indices so predictions are put back in file order.
"""
from __future__ import annotations

import logging
import random
from typing import Optional, Sequence

import lightning as L
from torch.utils.data import DataLoader

from bortlab.config import SetupError
from bortlab.data.batching import SOFT, SOFT_WEIGHT, Collator, LengthGroupedBatchSampler, _length
from bortlab.data.io import DataError
from bortlab.data.passage_fit import MODES as PASSAGE_FITS, fit_passages
from bortlab.data.subsample import Selection, balanced_take, tune_take
from bortlab.data.tasks import Task, get_task, read_split

log = logging.getLogger(__name__)
SPARE = "train_spare"     # the chosen part's rows left out of data.train_subset: Agora's hold-out, a distill pool
TUNE = "tune"             # data.tune_split: a development split drawn from the spare, scored instead of the official dev


class TaskDataModule(L.LightningDataModule):
    def __init__(
        self,
        task: str | Task,
        tokenizer,
        root: Optional[str] = None,
        max_length: Optional[int] = None,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        group_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        use_token_types: bool = True,
        train_split: str = "train",
        dev_splits: Optional[Sequence[str]] = None,
        test_splits: Optional[Sequence[str]] = None,
        passage_fit: str = "cut",
        selection: Optional[Selection] = None,
    ):
        super().__init__()
        self.task = task if isinstance(task, Task) else get_task(task)
        self.tokenizer = tokenizer
        self.root = root
        self.max_length = int(max_length or self.task.max_length)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.seed = seed
        self.use_token_types = use_token_types
        self.train_split = train_split
        self.dev_splits = tuple(self.task.dev_splits if dev_splits is None else dev_splits)
        if selection is not None and selection.tune is not None:
            self.dev_splits = (TUNE,)      # tuning: the official dev split is never read
        self.test_splits = tuple(self.task.test_splits if test_splits is None else test_splits)
        if passage_fit not in PASSAGE_FITS:
            raise SetupError(f"data.passage_fit={passage_fit!r} is not one of {', '.join(PASSAGE_FITS)}: cut (the passage's "
                             "end) or select (keep the sentences that share the rarest words with the question)")
        self.passage_fit = passage_fit
        self.selection = selection if selection is not None and selection.active else None
        # only `only_first` tasks have a passage (the first text) to shorten; elsewhere select changes nothing
        self._select_sentences = passage_fit == "select" and self.task.truncation == "only_first"
        if passage_fit != "cut" and not self._select_sentences:
            log.warning("data.passage_fit=%s has no effect on %s: it has no passage to shorten (its inputs are "
                        "truncated %s)", passage_fit, self.task.name, self.task.truncation)
        self.rows: dict[str, list[dict]] = {}        # split -> rows as read (kept for metrics/submissions)
        self.features: dict[str, list[dict]] = {}    # split -> tokenised examples, aligned with rows
        self._resume: Optional[tuple[int, int]] = None   # (epoch, batches done) from a mid-epoch checkpoint

    # ---- reading and tokenising ------------------------------------------------------------------
    def load_split(self, split: str) -> None:
        if split in self.features:
            return
        if split == TUNE:                     # drawn from the train split's spare when that is read
            self.load_split(self.train_split)
            return
        rows = read_split(self.task, split, root=self.root)
        require_rows(self.task, split, rows)
        self.rows[split] = rows
        # only official splits are cached: rows added at run time (Agora) change every round
        self.features[split] = self.encode_rows(rows, cache_split=split)
        log.info("%s/%s: %d rows, max %d tokens", self.task.name, split, len(rows), self.max_length)
        if split == self.train_split and self.selection is not None:
            # the whole split was tokenised (and cached) first: every reserve/subset draw reuses that cache
            keep, spare = self.selection.split(self.task, rows)
            sel = self.selection
            if sel.tune is not None:
                tune, spare = tune_take(self.task, rows, spare, sel.tune_skip, sel.tune)
                self._take(split, TUNE, tune)
                log.info("%s: scoring on a tune split of %d spare train rows (after skipping %d), not on the "
                         "official dev", self.task.name, len(tune), sel.tune_skip)
            self._take(split, SPARE, spare)
            self._take(split, split, keep)
            log.info("%s/%s: training on %d rows (data.use=%s%s%s), %d spare", self.task.name, split, len(keep),
                     sel.use, f", reserve {sel.reserve} seed {sel.reserve_seed}" if sel.reserve else "",
                     f", balanced subset seed {sel.subset_seed}" if sel.subset else "", len(spare))

    def _take(self, source: str, split: str, idx: Sequence[int]) -> None:
        """`split` := the rows of `source` at positions `idx` (in that order), renumbered from 0."""
        rows, feats = self.rows[source], self.features[source]
        self.rows[split] = [rows[i] for i in idx]
        self.features[split] = [{**feats[i], "index": j} for j, i in enumerate(idx)]

    def take_spare(self, split: str, n: int, balanced: bool = True, seed: int = 0) -> int:
        """Move `n` rows of the spare (the chosen part minus data.train_subset) into a new split: class-balanced
        and next in draw order (so, after a subset S, the next rows of every class), or a seeded uniform
        sample. They leave the spare, so later draws (a distillation pool) never overlap them."""
        self.load_split(self.train_split)
        spare = self.rows.get(SPARE) or []
        if n > len(spare):
            raise SetupError(f"Asked for {n} rows of the spare training rows (the chosen part minus "
                             f"data.train_subset), but only {len(spare)} are left. Draw fewer, or reserve more "
                             "rows (data.reserve).")
        order = list(range(len(spare)))
        if balanced and self.task.kind != "regression":
            taken, rest = balanced_take(order, [self.task.target(r) for r in spare], n)
        else:
            random.Random(seed).shuffle(order)
            taken, rest = sorted(order[:n]), sorted(order[n:])
        self._take(SPARE, split, taken)
        self._take(SPARE, SPARE, rest)
        return n

    def set_soft_labels(self, split: str, probs, weight: float) -> None:
        """Attach a soft target (a probability row per row, in the task's label order) to every row of `split`,
        trained with `weight` × T²·KL and (1 − weight) × CE on its label (FineTuneModule)."""
        probs = [[float(x) for x in p] for p in probs]
        if len(probs) != len(self.rows[split]):
            raise ValueError(f"{len(probs)} soft labels for {len(self.rows[split])} rows of {split}")
        for row, feat, p in zip(self.rows[split], self.features[split], probs):
            row[SOFT], row[SOFT_WEIGHT] = p, float(weight)
            feat[SOFT], feat[SOFT_WEIGHT] = p, float(weight)

    def _tokenize(self, rows, texts_a, texts_b, cache_split):
        from bortlab.data import feature_cache

        key = None
        if cache_split is not None:
            key = feature_cache.cache_key(self.task, cache_split, rows, self.tokenizer, self.max_length,
                                          self.use_token_types, self.passage_fit)
            hit = feature_cache.load(key)
            if hit is not None:
                return hit
        if texts_b is not None:
            texts_b = [b or "" for b in texts_b]
            if self._select_sentences:
                texts_a = fit_passages(texts_a, texts_b, self.tokenizer, self.max_length)
        try:
            enc = self.tokenizer(
                texts_a,
                texts_b,
                truncation=self.task.truncation if texts_b is not None else True,
                max_length=self.max_length,
                return_token_type_ids=self.use_token_types,
                return_attention_mask=False,
            )
        except Exception as e:
            if "truncat" not in str(e).lower():
                raise
            raise DataError(
                f"A max length of {self.max_length} tokens is too short for {self.task.name}: it shortens only the "
                f"passage ({self.task.truncation}), and the other text of some rows (the question and answer) alone "
                f"is longer. Pass a larger data.max_length (this task's default is {get_task(self.task.name).max_length})."
            ) from None
        ids, types = enc["input_ids"], enc.get("token_type_ids") if self.use_token_types else None
        if key is not None:
            feature_cache.save(key, ids, types)
        return ids, types

    def encode_rows(self, rows: Sequence[dict], cache_split: Optional[str] = None) -> list[dict]:
        """Tokenise rows with the task's `inputs`; one example per row (choices stacked for multiple choice)."""
        if not rows:
            return []
        pairs_per_row = [self.task.inputs(r) for r in rows]
        flat_a = [a for pairs in pairs_per_row for a, _ in pairs]
        flat_b = [b for pairs in pairs_per_row for _, b in pairs]
        has_b = any(b is not None for b in flat_b)
        ids, types = self._tokenize(rows, flat_a, flat_b if has_b else None, cache_split)
        out, k = [], 0
        for i, (row, pairs) in enumerate(zip(rows, pairs_per_row)):
            n = len(pairs)
            ex = {"index": i, "input_ids": ids[k : k + n], "label": self.task.target(row)}
            if types is not None and self.use_token_types:
                ex["token_type_ids"] = types[k : k + n]
            if row.get(SOFT) is not None:          # a soft target (Agora's soft labels, a distillation teacher)
                ex[SOFT], ex[SOFT_WEIGHT] = list(row[SOFT]), float(row.get(SOFT_WEIGHT, 1.0))
            if self.task.kind != "multiple_choice":     # one pair: unwrap the choice dimension
                ex["input_ids"] = ex["input_ids"][0]
                if "token_type_ids" in ex:
                    ex["token_type_ids"] = ex["token_type_ids"][0]
            out.append(ex)
            k += n
        return out

    def add_train_rows(self, rows: Sequence[dict]) -> int:
        """Append labelled rows (e.g. Agora's new points) to the training set served from the next epoch."""
        self.load_split(self.train_split)
        start = len(self.rows[self.train_split])
        feats = self.encode_rows(rows)
        for j, f in enumerate(feats):
            f["index"] = start + j
        self.rows[self.train_split].extend(rows)
        self.features[self.train_split].extend(feats)
        return len(feats)

    def hold_out(self, split: str, held: Sequence[int]) -> None:
        """Move the training rows at positions `held` into a new split `split` (Agora's own dev set, carved
        from train so that the official dev split stays unseen). Both splits are renumbered from 0."""
        if split in self.rows:
            raise SetupError(f"hold_out: the split {split!r} exists already")
        self.load_split(self.train_split)
        rows, feats = self.rows[self.train_split], self.features[self.train_split]
        held_set = set(held)
        keep = [i for i in range(len(rows)) if i not in held_set]
        self.rows[split] = [rows[i] for i in held]
        self.features[split] = [{**feats[i], "index": j} for j, i in enumerate(held)]
        self.rows[self.train_split] = [rows[i] for i in keep]
        self.features[self.train_split] = [{**feats[i], "index": j} for j, i in enumerate(keep)]

    def for_task(self, task: str | Task) -> "TaskDataModule":
        """A datamodule of another task with this one's tokenizer and settings (diagnostic sets such as AX
        are predicted with the model of the task they borrow)."""
        return TaskDataModule(task, self.tokenizer, root=self.root, max_length=self.max_length,
                              batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                              group_by_length=self.group_by_length, num_workers=self.num_workers, seed=self.seed,
                              use_token_types=self.use_token_types, passage_fit=self.passage_fit)   # no selection: other task

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self.load_split(self.train_split)
        if stage in (None, "fit", "validate"):
            for s in self.dev_splits:
                self.load_split(s)
        if stage in (None, "test", "predict"):
            for s in self.test_splits:
                self.load_split(s)

    # ---- loaders ---------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool, shard: bool = True) -> DataLoader:
        self.load_split(split)
        feats = self.features[split]
        bs = self.batch_size if train else self.eval_batch_size
        replicas, rank = self._replicas() if shard else (1, 0)
        sampler = LengthGroupedBatchSampler(
            [_length(f) for f in feats], bs, shuffle=train, group=self.group_by_length or not train,
            seed=self.seed, drop_last=False, num_replicas=replicas, rank=rank,
        )
        if train and getattr(self, "trainer", None) is not None:
            # a loader rebuilt every epoch (reload_dataloaders_every_n_epochs, Agora) must still shuffle anew
            sampler.epoch = int(self.trainer.current_epoch)
            if self._resume is not None and self._resume[0] == sampler.epoch:
                sampler.skip, self._resume = self._resume[1], None
        return DataLoader(
            feats, batch_sampler=sampler, collate_fn=Collator(self.pad_id, self.task), num_workers=self.num_workers
        )

    def _replicas(self) -> tuple[int, int]:
        """(world size, this process's rank) under the attached Trainer; (1, 0) without one. The trainer is
        built with `use_distributed_sampler=False`: this datamodule shards its own batches (Lightning cannot
        rebuild a custom batch sampler), so each rank sees its part of every length-grouped batch."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(getattr(trainer, "world_size", 1)), int(getattr(trainer, "global_rank", 0))

    def eval_loader(self, split: str) -> DataLoader:
        """Every row of `split` in length-sorted batches, unsharded (prediction, Agora, labellers)."""
        return self._loader(split, train=False, shard=False)

    # ---- mid-epoch resume --------------------------------------------------------------------------
    # Lightning restarts a plain DataLoader at its first batch when it resumes from a mid-epoch checkpoint
    # (val_check_interval < 1, every_n_train_steps): the epoch's first batches would be trained twice and
    # its last ones never. The checkpoint carries how far the epoch got; the sampler's order is reproducible
    # from (seed, epoch), so the resumed epoch skips what was trained. Lightning restores this state before
    # configure_optimizers builds the train loader (estimated_stepping_batches).
    def state_dict(self) -> dict:
        loop = getattr(getattr(getattr(self, "trainer", None), "fit_loop", None), "epoch_loop", None)
        if loop is None:
            return {}
        return {"epoch": int(self.trainer.current_epoch), "batches_done": int(loop.batch_progress.current.ready)}

    def load_state_dict(self, state: dict) -> None:
        self._resume = (int(state["epoch"]), int(state["batches_done"])) if state else None

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return 0 if pad is None else int(pad)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_split, train=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(s, train=False) for s in self.dev_splits]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(s, train=False) for s in self.test_splits]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()


def require_rows(task: Task, split: str, rows: Sequence[dict]) -> None:
    """A split that is present but empty (a header-only file) must not train 0 steps and report a score."""
    if not rows:
        raise DataError(
            f"The {task.name} {split} split has no rows (a file with only its header?). Point data.root at the "
            f"complete release files of {task.name}, or move the empty file away so that the task is read from "
            "the hub with datasets.load_dataset.")


__all__ = ["TaskDataModule", "Collator", "LengthGroupedBatchSampler", "SOFT", "SOFT_WEIGHT", "SPARE", "_length"]
