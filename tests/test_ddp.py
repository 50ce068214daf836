"""DDP on CPU (gloo): the batch sampler's shards, and `trainer=ddp trainer.devices=2` end to end in 2 processes."""
import json
import random

import pytest
import torch

from bortlab.data.datamodule import LengthGroupedBatchSampler


@pytest.mark.parametrize("n,batch,world", [(1001, 8, 2), (64, 32, 2), (65, 32, 2), (33, 16, 2), (100, 7, 3), (5, 4, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_ranks_share_each_epoch_without_repeats(n, batch, world, train):
    rng = random.Random(n)
    lengths = [rng.randint(3, 128) for _ in range(n)]
    one = [i for b in LengthGroupedBatchSampler(lengths, batch, shuffle=train, seed=5) for i in b]
    for epoch in range(2):
        shards = []
        for rank in range(world):
            s = LengthGroupedBatchSampler(lengths, batch, shuffle=train, seed=5, num_replicas=world, rank=rank)
            s.epoch = epoch
            shards.append(list(s))
            assert len(shards[-1]) == len(s)
        # the same number of steps on every rank, or DDP's all-reduce would wait forever
        assert len({len(s) for s in shards}) == 1
        rows = [i for s in shards for b in s for i in b]
        if train:   # each row exactly once per epoch, the rows one process sees; no empty batch
            assert sorted(rows) == sorted(one) == list(range(n))
            assert all(b for s in shards for b in s)
            assert max(len(b) for s in shards for b in s) <= 2 * batch
        else:       # evaluation may repeat a batch to even the shards out; scores dedupe by row index
            assert set(rows) == set(range(n))


def test_a_training_step_takes_each_rank_its_part_of_one_global_length_group():
    lengths = list(range(1, 129))
    shards = [list(LengthGroupedBatchSampler(lengths, 8, shuffle=True, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    for b0, b1 in zip(*shards):   # a step's two batches are neighbours in length: padding stays low
        assert abs(max(lengths[i] for i in b0) - max(lengths[i] for i in b1)) <= 16


def _evaluate_whole_dev(compose, overrides, ckpt):
    """Dev accuracy and F1 of `ckpt`, one process, every dev row, scored by scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score

    from bortlab.data.datamodule import TaskDataModule
    from bortlab.data.tasks import get_task
    from bortlab.models.build import build_model, build_tokenizer

    cfg = compose(overrides)
    task = get_task(cfg.task.name)
    tok = build_tokenizer(cfg)
    model, arch = build_model(cfg, task, tok)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    model.eval()
    dm = TaskDataModule(task, tok, root=cfg.data.root, max_length=cfg.task.max_length, use_token_types=arch.uses_token_types)
    index, preds = [], []
    with torch.no_grad():
        for batch in dm.eval_loader("dev"):
            index += batch["index"].tolist()
            preds += model(batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch.get("token_type_ids")).argmax(-1).tolist()
    gold = [task.target(dm.rows["dev"][i]) for i in index]
    assert sorted(index) == list(range(408))        # the whole MRPC dev set
    return accuracy_score(gold, preds), f1_score(gold, preds)


def test_two_process_cpu_ddp_trains_scores_the_whole_dev_set_and_resumes(train, tmp_path, data_root, compose):
    run_dir = tmp_path / "run"
    common = ["arch=tiny", "task=glue/mrpc", f"data.root={data_root}", "data.batch_size=16", "task.max_length=64",
              "trainer.limit_train_batches=6", "trainer.enable_progress_bar=false", "predict=false"]
    ddp = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.run.dir={run_dir}"]
    train(*common, *ddp, "trainer.max_epochs=1")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["processes"] == 2 and m["steps"] == 6
    # one checkpoint and one log, written by rank 0; the worker's own log file beside them
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (run_dir / "csv" / "metrics.csv").exists() and not list((run_dir / "csv").glob("metrics.*.csv"))
    assert (run_dir / "ddp_rank_1.log").exists()
    # the dev scores are the whole dev set's: one process re-scoring best.ckpt gets the same numbers
    acc, f1 = _evaluate_whole_dev(compose, common, run_dir / "checkpoints" / "best.ckpt")
    assert m["dev"]["val/accuracy"] == pytest.approx(acc, abs=1e-6)
    assert m["dev"]["val/f1"] == pytest.approx(f1, abs=1e-6)

    # resume=auto from the DDP checkpoint: epoch 2 trains on, it does not start over
    p = train(*common, *ddp, "trainer.max_epochs=2", "resume=auto")
    assert "resuming from" in p.stdout + p.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 12


def test_two_process_pretraining_counts_every_rank_and_exports_once(train, tmp_path, superglue_root):
    # the pre-training stage starts its workers through the same Stage; rank 0 alone exports and writes
    from bortlab.pretrain.make_corpus import documents

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(list(documents(superglue_root, exclude={"sst2", "cola"}))[:600]) + "\n")
    run_dir = tmp_path / "pre"
    train("task=pretrain/mlm", "arch=tiny", "arch.depth=1", "arch.hidden=32", "arch.heads=2", "arch.intermediate=64",
          f"data.corpus={corpus}", f"data.cache_dir={tmp_path / 'cache'}", "task.eval_every=4", "trainer.max_steps=8",
          "data.batch_size=8", "task.max_length=64", "data.heldout_max_blocks=16", "trainer.enable_progress_bar=false",
          "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.run.dir={run_dir}")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["steps"] == 8 and [s for s, _ in m["curve"]] == [0, 4, 8]
    # blocks of at most 64 tokens, 8 per batch, 8 steps, on each of 2 ranks: more than one rank can see
    assert 8 * 8 * 64 < m["tokens"] <= 2 * 8 * 8 * 64
    assert (run_dir / "export" / "config.json").exists() and (run_dir / "ddp_rank_1.log").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".hydra"]   # no temporaries
