"""Length-grouped batching and dynamic padding."""
import random

import pytest

from bortlab.data.datamodule import LengthGroupedBatchSampler


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_per_epoch(shuffle):
    lengths = [random.Random(i).randint(5, 300) for i in range(1037)]
    s = LengthGroupedBatchSampler(lengths, 32, shuffle=shuffle, seed=3)
    for _ in range(2):
        batches = list(s)
        assert len(batches) == len(s) == 33
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(1037))


def test_grouping_cuts_padding_and_epochs_differ():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(3200)]

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    grouped = LengthGroupedBatchSampler(lengths, 32, shuffle=True, seed=0)
    plain = LengthGroupedBatchSampler(lengths, 32, shuffle=True, group=False, seed=0)
    e1, e2 = list(grouped), list(grouped)
    assert e1 != e2  # a new order each epoch
    assert padded(e1) < 0.6 * padded(list(plain))
    # the longest batch comes first: out-of-memory shows at step 1
    assert max(lengths[i] for i in e1[0]) == max(lengths)


def test_feature_cache_returns_what_the_tokenizer_gives(tmp_path, monkeypatch, tokenizer):
    from bortlab.data.datamodule import TaskDataModule
    from bortlab.data.tasks import get_task

    monkeypatch.setenv("BORTLAB_CACHE", str(tmp_path))
    tok = tokenizer
    task = get_task("glue/rte")
    rows = [{"idx": i, "sentence1": f"A man number {i} walks.", "sentence2": "Someone is walking " * (i % 7),
             "label": "entailment"} for i in range(40)]
    first = TaskDataModule(task, tok, max_length=24).encode_rows(rows, cache_split="x")
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second = TaskDataModule(task, tok, max_length=24).encode_rows(rows, cache_split="x")
    direct = tok([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], truncation=True, max_length=24)
    assert [f["input_ids"] for f in second] == [f["input_ids"] for f in first] == direct["input_ids"]
    assert [f["token_type_ids"] for f in second] == direct["token_type_ids"]
    # another max length is another cache entry, not a stale hit
    third = TaskDataModule(task, tok, max_length=12).encode_rows(rows, cache_split="x")
    assert max(len(f["input_ids"]) for f in third) == 12 and len(list(tmp_path.glob("*.npz"))) == 2


def test_mid_epoch_resume_continues_the_epoch_where_it_stopped(tmp_path, tokenizer):
    """A run stopped mid-epoch and resumed from its step checkpoint trains each row of that epoch once, in the
    uninterrupted order: Lightning restarts a plain DataLoader at its first batch, the sampler skips ahead."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from bortlab.data.datamodule import TaskDataModule
    from bortlab.data.tasks import get_task
    from bortlab.models.arch import Arch
    from bortlab.models.encoder import Encoder
    from bortlab.models.finetune import FineTuneModule
    from bortlab.models.heads import SequenceClassifier

    tok = tokenizer
    task = get_task("glue/rte")

    class Rows(TaskDataModule):
        def load_split(self, split):
            if split not in self.features:
                n = 40 if split == "train" else 4
                self.rows[split] = [{"idx": i, "sentence1": "A man walks " + "far " * (i % 9),
                                     "sentence2": f"Person {i} walks.", "label": "entailment"} for i in range(n)]
                self.features[split] = self.encode_rows(self.rows[split])

    seen = []

    class Recording(FineTuneModule):
        def training_step(self, batch, batch_idx):
            seen.append(batch["index"].tolist())
            return super().training_step(batch, batch_idx)

    class Stop(Exception):
        pass

    class StopAt6(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 6:
                raise Stop

    def fit(callbacks, ckpt_path=None):
        torch.manual_seed(0)
        dm = Rows(task, tok, max_length=24, batch_size=4, seed=1)
        module = Recording(SequenceClassifier(Encoder(Arch(1, 2, 32, 64, vocab_size=len(tok))), 3), task)
        trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, num_sanity_val_steps=0, callbacks=callbacks,
                            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks))
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
        return trainer

    fit([])
    whole, seen[:] = list(seen), []
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_last=True)
    with pytest.raises(Stop):
        fit([ckpt, StopAt6()])
    assert seen == whole[:6]           # stopped after 6 batches; the checkpoint holds the first 4
    seen[:] = []
    trainer = fit([ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_last=True)],
                  ckpt_path=str(tmp_path / "last.ckpt"))
    assert seen == whole[4:] and trainer.global_step == len(whole) == 10
