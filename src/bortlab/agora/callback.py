"""`AgoraCallback`: Agora as a Lightning callback, usable with any classification or multiple-choice task.

Every `every_n_epochs` epochs, for `rounds` rounds (or after the optimiser steps `at_steps`, or every
`every_n_steps` steps): predict Agora's dev set with the student, take the source rows (`source`: the
mistakes, a uniform draw of dev rows, or all), generate `k` new rows near each with the transformation, label
them with the labeller (dropping those below the confidence threshold; with `soft_labels` the rows keep the
labeller's probabilities), apply the budget (`points_per_round`, `max_added_fraction`, `balance`; budget.py),
save them as `<run dir>/agora/round_<r>.jsonl` and append them to the datamodule's training set, which the
trainer serves from the next epoch (`reload_dataloaders_every_n_epochs` is set to 1; a step round ends the
current epoch). A run restarted in the same directory re-reads the round files instead of regenerating them.

Agora's dev set (`dev`): `holdout` (default) holds out a stratified `holdout_fraction` of train, so the
official dev split is never consumed and stays the reported score; `dev` uses the official dev split (the
reported dev score is then *not* honest, and the summary says so); any other name is a split of the task.

Per round it logs (to the run's loggers, `agora/rounds.jsonl` and the console): Agora-dev score, mistakes,
points generated and kept, the kept points' label distribution and the labeller's Agora-dev accuracy. At the
end of training `agora/summary.json` holds the final Agora-dev score, and with `final_round=true` the final
model's mistakes are turned into points too (`agora/final.jsonl`, not trained on): the Θ loop's food.
"""
from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Optional

import lightning as L
import torch

from bortlab.agora import budget as B, rows as R
from bortlab.agora.labellers import Labeller, StudentLabeller, label_rows, load_labeller, predict_rows
from bortlab.agora.transforms import Transformation, build_transform
from bortlab.config import SetupError

log = logging.getLogger(__name__)
HOLDOUT = "agora_holdout"
DEFAULTS = dict(dev="holdout", holdout_fraction=0.2, holdout_size=None, every_n_epochs=1, at_steps=None,
                every_n_steps=None, rounds=3, k=8, max_mistakes=None, points_per_round=None, max_added_fraction=None,
                source="mistakes", balance=False, soft_labels=False, seed=0, transform=None, labeller=None,
                final_round=False, pool=None, fields=None, out_dir=None)


class AgoraCallback(L.Callback):
    def __init__(self, cfg=None, labeller: Optional[Labeller] = None, transform: Optional[Transformation] = None, **kw):
        from omegaconf import DictConfig, OmegaConf

        node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
        node.update(kw)
        unknown = sorted(set(node) - set(DEFAULTS))
        if unknown:
            raise SetupError(f"agora: unknown options {unknown}; the options are {sorted(DEFAULTS)}.")
        o = {**DEFAULTS, **node}
        self.dev, self.fraction, self.rounds = str(o["dev"]), float(o["holdout_fraction"]), int(o["rounds"])
        self.every = int(o["every_n_epochs"] or 1)
        self.holdout_size = None if o["holdout_size"] is None else int(o["holdout_size"])
        self.k, self.max_mistakes, self.seed = int(o["k"]), o["max_mistakes"], int(o["seed"])
        self.steps = B.schedule(o["at_steps"], o["every_n_steps"], self.rounds)   # None: rounds on epoch ends
        if self.steps is not None:
            self.rounds = len(self.steps)
        self.points = None if o["points_per_round"] is None else int(o["points_per_round"])
        self.max_added = None if o["max_added_fraction"] is None else float(o["max_added_fraction"])
        self.source, self.balance = B.check_source(str(o["source"])), bool(o["balance"])
        self.soft = bool(o["soft_labels"])
        if (self.points is not None and self.points < 1) or (self.max_added is not None and self.max_added < 0) \
                or (self.holdout_size is not None and self.holdout_size < 1):
            raise SetupError(f"agora: points_per_round ({self.points}) and holdout_size ({self.holdout_size}) must "
                             f"be >= 1 and max_added_fraction ({self.max_added}) >= 0, or null for no limit.")
        self.final_round, self.pool, self.fields, self.out_dir = bool(o["final_round"]), o["pool"], o["fields"], o["out_dir"]
        self.labeller_cfg = dict(o["labeller"] or {})
        self.threshold = float(self.labeller_cfg.pop("threshold", 0.0) or 0.0)
        if self.every < 1 or self.rounds < 0 or self.k < 1:
            raise SetupError(f"agora: every_n_epochs ({self.every}) and k ({self.k}) must be >= 1, rounds "
                             f"({self.rounds}) >= 0.")
        self.transform = transform or build_transform(o["transform"])   # a bad name fails here
        self.labeller = labeller
        self.rounds_done, self.labeller_acc, self.dev_split = 0, float("nan"), None
        self._bound = False

    # ---- set-up: every check happens here, before the first training step ------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self._bound:
            return
        from bortlab.data.datamodule import TaskDataModule

        dm = trainer.datamodule
        if not isinstance(dm, TaskDataModule):
            raise SetupError("callbacks=agora needs the run's data as a bortlab TaskDataModule "
                             "(trainer.fit(module, datamodule=dm)); Agora appends its rows to it.")
        self.dm, task = dm, dm.task
        R.check_task(task, fields_given=bool(self.fields))
        if trainer.reload_dataloaders_every_n_epochs != 1:
            # the training set grows between epochs: the train loader must be rebuilt every epoch
            trainer.reload_dataloaders_every_n_epochs = 1
        if self.steps is not None:
            # A step round ends the current epoch (pl_module.end_epoch_early: Lightning's documented "return -1
            # from on_train_batch_start"), and the next epoch's rebuilt loader serves the new rows: the simplest
            # mechanism that leaves the sampler, DDP sharding and mid-epoch resume as they are. Each round thus
            # cuts one epoch short; it does not count against trainer.max_epochs, so the budget stays the same.
            if not hasattr(pl_module, "end_epoch_early"):
                raise SetupError("agora.at_steps / agora.every_n_steps need a bortlab FineTuneModule (it ends the "
                                 "epoch after a round so the train loader restarts with the new rows); use "
                                 "agora.every_n_epochs with other modules.")
            if trainer.fit_loop.max_epochs not in (None, -1):
                trainer.fit_loop.max_epochs += len(self.steps)
            late = [s for s in self.steps if 0 < trainer.max_steps <= s]
            if late:
                log.warning("agora: rounds at steps %s come at or after trainer.max_steps=%d: they will not run",
                            late, trainer.max_steps)
        if trainer.max_steps in (-1, None) and self.rounds:
            log.warning("agora: trainer.max_steps is not set. The lr schedule is sized on the initial training set; "
                        "Agora's rows lengthen later epochs, which then run at lr 0. Set trainer.max_steps to fix "
                        "the training budget.")
        self.dir = Path(self.out_dir or trainer.default_root_dir) / "agora"
        self.dev_split = self._agora_dev(dm)
        dev_rows = dm.rows[self.dev_split]
        if not dev_rows or any(task.target(r) is None for r in dev_rows):
            raise SetupError(f"agora: Agora's dev set ({self.dev_split}) is empty or unlabelled.")
        fields = list(self.fields or R.text_fields(task, dev_rows[0]))
        if not fields:
            raise SetupError(f"agora: found no free-text field to perturb in {task.name} rows "
                             f"(fields: {sorted(dev_rows[0])}). Name them with agora.fields=[...].")
        self.text_fields = fields
        if self.labeller is None:
            self.labeller = load_labeller(self.labeller_cfg, task, dm)
        self.transform.bind(dm.tokenizer, student=pl_module.model, labeller=self.labeller)
        if not isinstance(self.labeller, StudentLabeller):
            self.labeller_acc = self.labeller.accuracy(task, dev_rows)
            log.info("agora: labeller %s, accuracy %.4f on Agora's dev set (%s, %d rows)", self.labeller.name,
                     self.labeller_acc, self.dev_split, len(dev_rows))
            if self.dev == "holdout" and self.labeller.saw_train_of(task, dm.selection):
                log.warning("agora: the labeller was fine-tuned on %s's train split, which contains Agora's hold-out: "
                            "its %.4f there is optimistic (see its own run's dev score for an honest one).",
                            task.name, self.labeller_acc)
            if self.labeller_acc < 2 / 3 and task.kind == "classification" and len(task.labels) == 2:
                log.warning("agora: the labeller is right on only %.1f%% of Agora's dev set; Agora assumes an "
                            "ok-ish labeller (above 2/3).", 100 * self.labeller_acc)
        self.real_rows = len(dm.rows[dm.train_split])    # what max_added_fraction is relative to
        added = dm.add_train_rows(R.load_pool(self.pool)) if self.pool else 0
        earlier = R.load_rounds(self.dir)
        for rows in earlier[: self.rounds]:
            added += dm.add_train_rows(rows)
        self.added = added
        self.rounds_done = min(len(earlier), self.rounds)
        if earlier:
            log.info("agora: resumed %d round(s) from %s", self.rounds_done, self.dir)
        log.info("agora: dev=%s (%d rows), fields %s, transformation %s, %d extra training rows at start",
                 self.dev_split, len(dev_rows), fields, self.transform.name, added)
        self._bound = True

    def _agora_dev(self, dm) -> str:
        if self.dev == "holdout":
            if HOLDOUT not in dm.rows:   # a resumed fit keeps the split it made
                self._make_holdout(dm)
            return HOLDOUT
        split = dm.dev_splits[0] if self.dev == "dev" else self.dev
        if split not in dm.task.splits:
            raise SetupError(f"agora.dev={self.dev!r}: use holdout, dev, or one of {list(dm.task.splits)}.")
        if split in dm.dev_splits:
            log.warning("agora: agora.dev=%s feeds the official dev split to Agora: the dev score this run reports "
                        "is NOT an honest estimate. Use agora.dev=holdout to report on unseen data.", split)
        dm.load_split(split)
        return split

    def _make_holdout(self, dm) -> None:
        from bortlab.data.datamodule import SPARE
        from bortlab.data.subsample import balanced_take

        dm.load_split(dm.train_split)
        rows = dm.rows[dm.train_split]
        if self.holdout_size is not None and dm.rows.get(SPARE):
            # a subset S was drawn (data.train_subset): H is the next balanced rows of the same part, so S keeps
            # its size and S ∪ H is what data.train_subset=|S|+|H| would train on (bortlab.data.subsample)
            dm.take_spare(HOLDOUT, self.holdout_size, balanced=True)
            log.info("agora: Agora's dev set = %d balanced rows of the part not drawn into the training subset",
                     self.holdout_size)
            return
        if self.holdout_size is not None:
            if self.holdout_size >= len(rows):
                raise SetupError(f"agora.holdout_size={self.holdout_size} leaves nothing of the {len(rows)} "
                                 "training rows to train on. Hold out fewer rows.")
            order = list(range(len(rows)))
            random.Random(self.seed).shuffle(order)
            held, _ = balanced_take(order, [dm.task.target(r) for r in rows], self.holdout_size)
        else:
            if dm.rows.get(SPARE) is not None:
                log.warning("agora: holding out %.0f%% of the training subset itself; set agora.holdout_size to "
                            "draw Agora's dev set from the rows not in the subset instead", 100 * self.fraction)
            _, held = R.stratified_holdout(dm.task, rows, self.fraction, self.seed)
        dm.hold_out(HOLDOUT, held)
        log.info("agora: held out %d of %d training rows as Agora's dev set; the official dev split stays unseen",
                 len(held), len(rows))

    # ---- rounds ----------------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.steps is not None or epoch % self.every:
            return
        self._maybe_round(epoch // self.every, trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        r = self.rounds_done + 1
        if self.steps is None or r > len(self.steps) or trainer.global_step < self.steps[r - 1]:
            return
        if self._maybe_round(r, trainer, pl_module):
            pl_module.end_epoch_early = True     # the next epoch's loader holds the new rows

    def _maybe_round(self, r: int, trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
        if r <= self.rounds_done or r > self.rounds:
            return False
        if 0 < trainer.max_steps <= trainer.global_step:
            return False          # no training left to use new points
        stats = self.run_round(r, pl_module.model, trainer)
        self.rounds_done = r
        for lg in trainer.loggers:
            lg.log_metrics({f"agora/{k}": v for k, v in stats.items() if isinstance(v, (int, float))},
                           step=trainer.global_step)
        return True

    def run_round(self, r, model: torch.nn.Module, trainer: Optional[L.Trainer] = None, final: bool = False) -> dict:
        """One Agora round: mistakes on Agora's dev set -> k new rows each -> labelled -> saved (and, unless
        `final`, appended to the training set)."""
        from bortlab.data.scoring import score

        task, dm = self.dm.task, self.dm
        dev_rows = dm.rows[self.dev_split]
        logits = predict_rows(model, dm, dev_rows)
        gold = torch.tensor([task.target(x) for x in dev_rows])
        wrong = (logits.argmax(-1) != gold).nonzero().squeeze(1).tolist()
        dev_score = score(task, logits, dev_rows).get(task.metrics[0], float("nan"))
        rng = random.Random(self.seed * 100_003 + (10**6 if final else r))
        if isinstance(self.labeller, StudentLabeller):
            self.labeller.offer(model, dev_score)
            self.labeller_acc = self.labeller.accuracy(task, dev_rows)
        sources = B.pick_sources(self.source, len(dev_rows), wrong, self.k, self.points, self.max_mistakes, rng)
        budget = self._budget(final)
        if budget == 0:
            sources = []            # max_added_fraction is used up: nothing to generate or label
        # generate more than k per source only to fill points_per_round; max_added_fraction alone only cuts
        per = B.per_source(self.k, len(sources), budget if self.points is not None else None, self.balance)
        new = []
        for i in sources:
            src = dev_rows[i]
            for row in self.transform.generate(src, self.text_fields, per, rng):
                row["agora"] = {"round": "final" if final else r, "source": src.get("idx", i),
                                "transform": self.transform.name}
                new.append(row)
        generated = len(new)
        if budget is not None and not self.balance and not self.threshold and len(new) > budget:
            new = [new[j] for j in B.choose_points([0] * len(new), budget, False, rng)]   # trim before labelling
        kept, _ = label_rows(self.labeller, task, new, self.threshold, soft=self.soft)
        if budget is not None or self.balance:
            kept = [kept[j] for j in B.choose_points([task.target(x) for x in kept], budget, self.balance, rng)]
        for j, row in enumerate(kept):
            row["idx"] = f"agora-{'final' if final else r}-{j}"
        R.write_jsonl_atomic(self.dir / "final.jsonl" if final else R.round_path(self.dir, r), kept)
        if not final:
            self.added += self.dm.add_train_rows(kept)
        counts = Counter(task.target(x) for x in kept)
        names = task.labels if task.kind == "classification" else [f"choice{i}" for i in range(max(counts, default=0) + 1)]
        stats = {"round": r, "agora_dev_score": dev_score, "mistakes": len(wrong), "dev_rows": len(dev_rows),
                 "source": self.source, "sources": len(sources), "budget": budget, "added_total": self.added,
                 "generated": generated, "kept": len(kept), "labeller_acc": self.labeller_acc,
                 "train_rows": len(self.dm.rows[self.dm.train_split]),
                 **{f"label_{names[c]}": counts.get(c, 0) for c in range(len(names))}}
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "rounds.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({**stats, "step": trainer.global_step if trainer else None}) + "\n")
        log.info("agora round %s: Agora-dev %s %.4f, %d mistakes, %d %s sources -> %d points, %d kept %s; "
                 "labeller acc %.4f", r, task.metrics[0], dev_score, len(wrong), len(sources), self.source,
                 generated, len(kept),
                 {names[c]: counts.get(c, 0) for c in range(len(names))}, self.labeller_acc)
        return stats

    def _budget(self, final: bool) -> Optional[int]:
        """This round's number of points: points_per_round, cut to what max_added_fraction still allows
        (the final round is not trained on, so only points_per_round applies); None = no limit."""
        n = self.points
        if self.max_added is not None and not final:
            room = max(0, int(self.max_added * self.real_rows) - self.added)
            n = room if n is None else min(n, room)
        return n

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from bortlab.data.scoring import score

        task, rows = self.dm.task, self.dm.rows[self.dev_split]
        if self.final_round:
            stats = self.run_round("final", pl_module.model, trainer, final=True)
            final = stats["agora_dev_score"]
        else:
            final = score(task, predict_rows(pl_module.model, self.dm, rows), rows).get(task.metrics[0], float("nan"))
        summary = {"agora_dev_split": self.dev_split, "agora_dev_metric": task.metrics[0], "agora_dev_score": final,
                   "honest": self.dev_split not in self.dm.dev_splits, "rounds_done": self.rounds_done,
                   "train_rows": len(self.dm.rows[self.dm.train_split]), "labeller": self.labeller.name,
                   "labeller_acc": self.labeller_acc, "transform": self.transform.name,
                   "final_points": str(self.dir / "final.jsonl") if self.final_round else None}
        from bortlab.files import write_json_atomic

        self.dir.mkdir(parents=True, exist_ok=True)      # rounds=0 wrote nothing there yet
        write_json_atomic(self.dir / "summary.json", summary)

    # ---- checkpoint state: rounds already added --------------------------------------------------------
    def state_dict(self) -> dict:
        return {"rounds_done": self.rounds_done}

    def load_state_dict(self, state: dict) -> None:
        saved = int(state.get("rounds_done", 0))
        if saved > self.rounds_done:
            log.warning("agora: the checkpoint had %d rounds but only %d round files are in %s; the missing "
                        "rounds will be generated again", saved, self.rounds_done, getattr(self, "dir", "?"))
