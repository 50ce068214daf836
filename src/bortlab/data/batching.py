"""Batches for TaskDataModule: the length-grouped batch sampler (also DDP's sharding) and the padding
collator. Kept apart from the datamodule so that each file reads as one idea."""
from __future__ import annotations

import logging
import math
import random
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from bortlab.data.tasks import Task

log = logging.getLogger("bortlab.data.datamodule")    # the datamodule's logger: messages read as before
SOFT, SOFT_WEIGHT = "soft_label", "soft_weight"   # row keys of a soft target and the share of its KL term


def _length(f: dict) -> int:
    ids = f["input_ids"]
    return max(len(c) for c in ids) if ids and isinstance(ids[0], list) else len(ids)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar length. Training: shuffle, cut into mega-batches of `mega` batches, sort each by
    length, split, shuffle the batches (the longest batch goes first so an out-of-memory shows at once).
    Evaluation: one global length sort. A new permutation every epoch, reproducible from the seed.

    With `num_replicas` > 1 (DDP) every rank builds the same global batches of `batch_size × num_replicas`
    rows and takes every `num_replicas`-th row of each, starting at its `rank`: per epoch the ranks together
    see each row once, the same rows as one process. Training gives every rank the same number of batches
    (a last global batch too small to share goes into the one before it); evaluation shards may differ by
    one batch, and the shorter ones repeat their last batch (scores are gathered by row index, so a repeat
    never counts twice)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, group: bool = True,
                 seed: int = 0, mega: int = 50, drop_last: bool = False, num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, num_replicas={num_replicas})")
        self.lengths, self.batch_size, self.shuffle, self.group = list(lengths), batch_size, shuffle, group
        self.seed, self.mega, self.drop_last, self.epoch = seed, mega, drop_last, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.skip = 0         # batches to leave out of the next iteration only (a mid-epoch resume)

    def __len__(self) -> int:
        n, r = len(self.lengths), self.num_replicas
        if not self.shuffle and r > 1:                      # evaluation: whole batches dealt round the ranks
            return math.ceil(math.ceil(n / self.batch_size) / r)
        size = self.batch_size * r
        if self.drop_last:
            return n // size
        batches = -(-n // size)
        if r > 1 and batches > 1 and n - (batches - 1) * size < r:
            batches -= 1                                     # merged into the one before it
        return batches

    def _global_batches(self, rng: random.Random) -> list[list[int]]:
        size = self.batch_size * self.num_replicas
        idx = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(idx)
        if self.group and self.shuffle:
            mega = self.mega * size
            idx = [i for s in range(0, len(idx), mega)
                   for i in sorted(idx[s : s + mega], key=self.lengths.__getitem__, reverse=True)]
        elif self.group:
            idx.sort(key=self.lengths.__getitem__, reverse=True)
        if not self.shuffle and self.num_replicas > 1:   # evaluation: whole batches go round the ranks
            size = self.batch_size
        batches = [idx[s : s + size] for s in range(0, len(idx), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        if self.shuffle and self.num_replicas > 1 and len(batches) > 1 and len(batches[-1]) < self.num_replicas:
            batches[-2].extend(batches.pop())              # too few rows to give every rank one
        if self.shuffle and self.group and len(batches) > 1:
            longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b][0]])
            first = batches.pop(longest)
            rng.shuffle(batches)
            batches.insert(0, first)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        batches = self._global_batches(rng)
        if self.num_replicas > 1 and self.shuffle:
            batches = [b[self.rank :: self.num_replicas] for b in batches]
        elif self.num_replicas > 1:
            mine = batches[self.rank :: self.num_replicas]
            per_rank = -(-len(batches) // self.num_replicas)
            batches = mine + mine[-1:] * (per_rank - len(mine)) if mine else batches[:1] * per_rank
        skip, self.skip = self.skip, 0
        if 0 < skip < len(batches):       # an end-of-epoch checkpoint (skip == all) starts the next epoch whole
            log.info("resuming mid-epoch: epoch %d continues after the %d batches its checkpoint had trained",
                     self.epoch - 1, skip)
            batches = batches[skip:]
        return iter(batches)


class Collator:
    """Pads a list of examples to the batch's longest sequence: (B, L), or (B, C, L) for multiple choice."""

    def __init__(self, pad_id: int, task: Task):
        self.pad_id, self.task = pad_id, task

    def __call__(self, feats: list[dict]) -> dict:
        mc = self.task.kind == "multiple_choice"
        seqs = [c for f in feats for c in (f["input_ids"] if mc else [f["input_ids"]])]
        L_max = max(len(s) for s in seqs)
        n = len(seqs)
        ids = torch.full((n, L_max), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, L_max), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in feats[0]:
            types = torch.zeros((n, L_max), dtype=torch.long)
            tseqs = [c for f in feats for c in (f["token_type_ids"] if mc else [f["token_type_ids"]])]
            for r, s in enumerate(tseqs):
                types[r, : len(s)] = torch.tensor(s)
            batch["token_type_ids"] = types
        if mc:  # (B*C, L) -> (B, C, L)
            C = len(feats[0]["input_ids"])
            batch = {k: v.view(len(feats), C, L_max) for k, v in batch.items()}
        labels = [f["label"] for f in feats]
        if all(y is not None for y in labels):
            dtype = torch.float if self.task.kind == "regression" else torch.long
            batch["labels"] = torch.tensor(labels, dtype=dtype)
        batch["index"] = torch.tensor([f["index"] for f in feats], dtype=torch.long)
        if any(SOFT in f for f in feats):
            # only batches holding a soft-target row carry these keys: the default path stays as it was
            width = len(next(f[SOFT] for f in feats if SOFT in f))
            batch["soft_labels"] = torch.tensor([f.get(SOFT) or [0.0] * width for f in feats], dtype=torch.float)
            batch["soft_weight"] = torch.tensor([f.get(SOFT_WEIGHT, 0.0) if SOFT in f else 0.0 for f in feats])
        return batch
