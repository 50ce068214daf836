"""Agora's round options (issue 19): step rounds whose rows reach the train loader at once, a points budget and
a cap, source selection, class-balanced rounds, soft labels and their KL term, the labeller's final checkpoint.
The synthetic task, oracle labeller and bag-of-words student are test_agora's."""
import json
import math
import random

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from test_agora import SYNTH, BagOfWords, Oracle

from bortlab.agora import AgoraCallback
from bortlab.agora import budget as B
from bortlab.agora import rows as R
from bortlab.config import SetupError
from bortlab.data.datamodule import Collator, TaskDataModule
from bortlab.models.finetune import FineTuneModule


class Spy(L.Callback):
    """Per optimiser step: the number of rows the current train loader's sampler draws from."""

    def __init__(self):
        self.sizes = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.sizes[trainer.global_step] = len(trainer.train_dataloader.batch_sampler.lengths)


def _fit(tokenizer, tmp_path, opts, steps=30, epochs=1000):
    L.seed_everything(0)
    dm = TaskDataModule(SYNTH, tokenizer, batch_size=16, seed=0)
    module = FineTuneModule(BagOfWords(len(tokenizer)), SYNTH, lr=5e-2, warmup_ratio=0.1)
    cb, spy = AgoraCallback({"dev": "agora_dev", "transform": {"name": "dropswap"}, **opts}, labeller=Oracle()), Spy()
    trainer = L.Trainer(max_epochs=epochs, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[cb, spy],
                        default_root_dir=str(tmp_path), num_sanity_val_steps=0, check_val_every_n_epoch=10**6)
    trainer.fit(module, datamodule=dm)
    log = [json.loads(x) for x in (tmp_path / "agora" / "rounds.jsonl").read_text().splitlines()]
    return trainer, dm, cb, spy, log


def _round(tmp_path, r):
    return R.read_jsonl(tmp_path / "agora" / f"round_{r}.jsonl")


def test_step_rounds_fire_at_their_steps_and_the_loader_serves_the_new_rows_next(tokenizer, tmp_path):
    # 120 rows, batch 16: 8 batches an epoch, so rounds at 5 and 12 fall mid-epoch
    trainer, dm, cb, spy, log = _fit(tokenizer, tmp_path, {"at_steps": [5, 12, 20], "k": 2}, steps=30)
    assert [x["step"] for x in log] == [5, 12, 20] and trainer.global_step == 30
    sizes = [120 + sum(len(_round(tmp_path, r)) for r in range(1, j + 1)) for j in range(4)]
    assert sizes[1] > 120
    for step, n in spy.sizes.items():        # before a round: the old rows; from the step after it: the new ones
        assert n == sizes[sum(step >= s for s in (5, 12, 20))], (step, n)
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == trainer.global_step        # the skipped batches did not advance the lr schedule
    assert trainer.current_epoch > 0 and len(dm.rows["train"]) == sizes[3]
    # a restart in the same directory reads the rounds back: no new round, every step sees all their rows
    stamp = [(tmp_path / "agora" / f"round_{r}.jsonl").read_text() for r in (1, 2, 3)]
    _, _, cb2, spy2, log2 = _fit(tokenizer, tmp_path, {"at_steps": [5, 12, 20], "k": 2}, steps=30)
    assert cb2.rounds_done == 3 and log2 == log and set(spy2.sizes.values()) == {sizes[3]}
    assert [(tmp_path / "agora" / f"round_{r}.jsonl").read_text() for r in (1, 2, 3)] == stamp


def test_every_n_steps_and_bad_schedules():
    assert B.schedule(None, 7, 3) == [7, 14, 21] and B.schedule(None, None, 3) is None
    assert AgoraCallback({"at_steps": [3, 9], "rounds": 5}).rounds == 2
    with pytest.raises(SetupError, match="set one of them"):
        AgoraCallback({"at_steps": [3], "every_n_steps": 4})
    with pytest.raises(SetupError, match="strictly increasing"):
        AgoraCallback({"at_steps": [5, 5]})
    with pytest.raises(SetupError, match="agora.source='best'"):
        AgoraCallback({"source": "best"})


def test_points_budget_balance_and_cap(tokenizer, tmp_path):
    _, dm, _, _, log = _fit(tokenizer, tmp_path, {"every_n_steps": 4, "rounds": 3, "k": 2, "source": "all",
                                                  "points_per_round": 20, "balance": True,
                                                  "max_added_fraction": 0.25}, steps=16)
    counts = [[sum(SYNTH.target(r) == c for r in _round(tmp_path, i)) for c in (0, 1)] for i in (1, 2)]
    assert counts == [[10, 10], [5, 5]]            # 20 a round, balanced; the cap 0.25 × 120 = 30 leaves 10
    assert not (tmp_path / "agora" / "round_3.jsonl").exists() or not _round(tmp_path, 3)
    assert [x["kept"] for x in log] == [20, 10, 0] and len(dm.rows["train"]) == 150
    assert all(x["sources"] == 60 for x in log[:2])                 # source=all: every Agora-dev row


def test_a_cap_alone_cuts_but_never_fills(tokenizer, tmp_path):
    # k = 1 per mistake; a cap of 10 × 120 rows must not make a round generate more than k per mistake
    _, _, _, _, log = _fit(tokenizer, tmp_path, {"at_steps": [3], "k": 1, "max_added_fraction": 10.0}, steps=4)
    assert log[0]["generated"] <= log[0]["mistakes"] and log[0]["budget"] == 1200


def test_sources_mistakes_random_all():
    rng = random.Random(0)
    wrong = [3, 8, 9]
    assert B.pick_sources("mistakes", 50, wrong, 4, None, None, rng) == wrong
    assert B.pick_sources("all", 50, wrong, 4, None, None, rng) == list(range(50))
    drawn = B.pick_sources("random", 50, wrong, 4, 30, None, rng)
    assert len(drawn) == math.ceil(30 / 4) and len(set(drawn)) == len(drawn)   # as many as the budget needs
    assert len(B.pick_sources("random", 50, wrong, 4, None, None, rng)) == len(wrong)   # no budget: Agora's volume
    hits = [0] * 50                                 # uniform over the dev rows, right or wrong
    for _ in range(2000):
        for i in B.pick_sources("random", 50, wrong, 4, 20, None, rng):
            hits[i] += 1
    assert min(hits) > 150 and max(hits) < 250     # each row: 2000 × 5/50 = 200 expected, sd 13.4
    assert B.per_source(2, 10, 100, False) == 10 and B.per_source(2, 10, 100, True) == 20 and B.per_source(8, 10, 20, False) == 8
    labels = [0] * 30 + [1] * 4
    kept = B.choose_points(labels, 10, True, rng)
    assert sorted(labels[i] for i in kept) == [0] * 6 + [1] * 4
    assert sorted(labels[i] for i in B.choose_points(labels, None, True, rng)) == [0] * 4 + [1] * 4


def test_random_source_end_to_end_draws_what_the_budget_needs(tokenizer, tmp_path):
    _, _, _, _, log = _fit(tokenizer, tmp_path, {"at_steps": [20], "k": 2, "source": "random",
                                                  "points_per_round": 30}, steps=22)
    assert log[0]["source"] == "random" and log[0]["sources"] == 15 and log[0]["kept"] == 30
    assert len({r["agora"]["source"] for r in _round(tmp_path, 1)}) == 15


def _kl_reference(logits, labels, soft, weight, T):
    """(1 − w)·CE + w·T²·Σ p_T (log p_T − log q_T), with p_T ∝ p^(1/T), written out row by row."""
    out = []
    for z, y, p, w in zip(logits, labels, soft, weight):
        ce = -torch.log_softmax(z, -1)[y]
        pt = p ** (1 / T) / (p ** (1 / T)).sum()
        q = torch.softmax(z / T, -1)
        kl = (pt * (pt.log() - q.log())).sum()
        out.append((1 - w) * ce + w * T * T * kl)
    return torch.stack(out).mean()


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_soft_loss_is_ce_plus_a_kl_term(T):
    torch.manual_seed(0)
    module = FineTuneModule(BagOfWords(10), SYNTH, soft_temperature=T)
    logits, labels = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1])
    soft = torch.softmax(torch.randn(5, 2), -1)
    weight = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0])
    torch.testing.assert_close(module.soft_loss(logits, labels, soft, weight),
                               _kl_reference(logits, labels, soft, weight, T))
    # no soft rows: plain cross-entropy, the default path
    torch.testing.assert_close(module.soft_loss(logits, labels, soft, torch.zeros(5)), F.cross_entropy(logits, labels))
    ref = F.kl_div(torch.log_softmax(logits / T, -1), _kl_reference_pt(soft, T), reduction="batchmean") * T * T
    torch.testing.assert_close(module.soft_loss(logits, labels, soft, torch.ones(5)), ref)


def _kl_reference_pt(p, T):
    return p ** (1 / T) / (p ** (1 / T)).sum(-1, keepdim=True)


def test_soft_labels_reach_the_batches(tokenizer, tmp_path):
    _, dm, _, _, _ = _fit(tokenizer, tmp_path, {"at_steps": [5], "k": 2, "soft_labels": True}, steps=6)
    new = _round(tmp_path, 1)
    oracle = Oracle().probs(new).tolist()
    assert new and [r["soft_label"] for r in new] == oracle and all(r["soft_weight"] == 1.0 for r in new)
    feats = dm.features["train"]
    batch = Collator(dm.pad_id, SYNTH)([feats[0], feats[-1]])      # a real row and an Agora row
    torch.testing.assert_close(batch["soft_labels"][1], torch.tensor(oracle[-1]))
    assert batch["soft_weight"].tolist() == [0.0, 1.0]
    assert "soft_labels" not in Collator(dm.pad_id, SYNTH)(feats[:3])        # real rows only: unchanged batches


def test_labeller_checkpoint_best_or_last(tmp_path):
    from bortlab.finetune.checkpoint import run_checkpoint

    (tmp_path / "checkpoints").mkdir()
    for name in ("best.ckpt", "last.ckpt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"x")
    assert run_checkpoint(tmp_path).name == "best.ckpt"
    assert run_checkpoint(tmp_path, checkpoint="last").name == "last.ckpt"
    (tmp_path / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(SetupError, match="no checkpoints/last.ckpt"):
        run_checkpoint(tmp_path, "agora.labeller.path", checkpoint="last")
    with pytest.raises(SetupError, match="choose best"):
        run_checkpoint(tmp_path, checkpoint="final")
