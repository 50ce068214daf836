"""Every task fine-tunes for a few steps and is scored by its official metrics: the real files in
../shared/data, and format-exact small files for what is missing there (RACE, ReCoRD)."""
import json
import math

import lightning as L
import pytest
import torch

from bortlab.data.datamodule import TaskDataModule
from bortlab.data.tasks import get_task
from bortlab.models.arch import Arch
from bortlab.models.encoder import Encoder
from bortlab.models.finetune import FineTuneModule
from bortlab.models.heads import MultipleChoice, SequenceClassifier

REAL = {  # task -> (train split, dev split): BoolQ has no train here, so it trains on a slice of val
    "glue/cola": ("train", "dev"), "glue/sst2": ("train", "dev"), "glue/mrpc": ("train", "dev"),
    "glue/stsb": ("train", "dev"), "glue/rte": ("train", "dev"), "glue/wnli": ("train", "dev"),
    "superglue/boolq": ("dev", "dev"), "superglue/cb": ("train", "dev"), "superglue/copa": ("train", "dev"),
    "superglue/multirc": ("train", "dev"), "superglue/rte": ("train", "dev"), "superglue/wic": ("train", "dev"),
    "superglue/wsc": ("train", "dev"),
}


class SlicedData(TaskDataModule):
    """The real reader, then the first `n` rows: a few steps need a few rows, not the tokenised split."""

    def __init__(self, *a, n=48, **kw):
        super().__init__(*a, **kw)
        self.n = n

    def load_split(self, split):
        if split in self.features:
            return
        from bortlab.data.tasks import read_split

        rows = read_split(self.task, split, root=self.root)
        assert rows, f"{self.task.name}/{split} read no rows"
        self.rows[split] = rows[: self.n]
        self.features[split] = self.encode_rows(self.rows[split])


def finetune_few_steps(task_name, tokenizer, root, train_split="train", dev_split="dev"):
    torch.manual_seed(0)
    task = get_task(task_name)
    dm = SlicedData(task, tokenizer, root=root, max_length=64, batch_size=8, eval_batch_size=16,
                    train_split=train_split, dev_splits=(dev_split,), test_splits=())
    enc = Encoder(Arch(2, 2, 64, 128, vocab_size=len(tokenizer)))
    model = MultipleChoice(enc) if task.kind == "multiple_choice" else SequenceClassifier(enc, task.num_labels)
    module = FineTuneModule(model, task, lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(max_steps=3, limit_val_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    trainer.validate(module, datamodule=dm, verbose=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "no parameter moved"
    return module.last_metrics, task


@pytest.mark.parametrize("task_name", sorted(REAL))
def test_real_task_finetunes_and_is_scored(task_name, tokenizer, data_root):
    train, dev = REAL[task_name]
    task = get_task(task_name)
    if not (data_root / task.benchmark).exists():
        pytest.skip(f"no {task.benchmark} data under {data_root}")
    metrics, task = finetune_few_steps(task_name, tokenizer, data_root, train, dev)
    assert {f"val/{m}" for m in task.metrics} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())


def _race(tmp_path):
    for split in ("train", "dev"):
        d = tmp_path / "RACE" / split / "middle"
        d.mkdir(parents=True)
        for pid in range(1, 7):
            obj = {"answers": ["ABCD"[(pid + i) % 4] for i in range(3)],
                   "options": [[f"the {w} option" for w in ("red", "green", "blue", "black")] for _ in range(3)],
                   "questions": ["Where did he walk?", "He went to the _ .", "Why?"],
                   "article": "The old man lived by the sea. Every morning he walked to the harbour. " * 3,
                   "id": f"middle{pid}.txt"}
            (d / f"{pid}.txt").write_text(json.dumps(obj))
    return tmp_path


def _record(tmp_path):
    text = ("Paris (CNN) -- Emmanuel Macron met Angela Merkel in Paris on Monday.\n@highlight\n"
            "Macron and Merkel met in Paris\n@highlight\nThe talks were about Europe")
    ents = []
    for e in ("Paris", "CNN", "Emmanuel Macron", "Angela Merkel", "Europe"):
        s = text.index(e)
        ents.append({"start": s, "end": s + len(e) - 1})          # inclusive end, as the release
    d = tmp_path / "ReCoRD"
    d.mkdir()
    for split in ("train", "val"):
        lines = []
        for i in range(8):
            qas = [{"query": "@placeholder said the talks about Europe went well.", "idx": i,
                    "answers": [{"start": ents[2]["start"], "end": ents[2]["end"], "text": "Emmanuel Macron"}]}]
            lines.append(json.dumps({"source": "Daily mail", "passage": {"text": text, "entities": ents},
                                     "qas": qas, "idx": i}))
        (d / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("task_name, make", [("race/middle", _race), ("superglue/record", _record)])
def test_format_exact_small_files_finetune(task_name, make, tmp_path, tokenizer):
    metrics, task = finetune_few_steps(task_name, tokenizer, make(tmp_path))
    assert {f"val/{m}" for m in task.metrics} <= set(metrics)


@pytest.mark.slow          # 41-69 s alone on the shared 2-core box (by load); the bar for the mark is ~20 s
def test_real_minilm_fits_a_few_multirc_answers(tokenizer, minilm_dir, superglue_root):
    """The learnability check behind docs/tasks.md's MultiRC note: through the same module, collator and
    Lightning loop as train.py, the real MiniLM fits 32 real MultiRC answers (the first passage's, so
    near-identical inputs with different labels) and scores them above the all-false and all-true answers.
    A label, truncation or grouping bug specific to MultiRC would keep it at the prior."""
    from bortlab.models.hf import load_pretrained

    torch.manual_seed(0)
    task = get_task("superglue/multirc")
    dm = SlicedData(task, tokenizer, root=superglue_root, n=32, max_length=96, batch_size=8, eval_batch_size=32,
                    train_split="train", dev_splits=("train",), test_splits=())
    model = SequenceClassifier(load_pretrained(minilm_dir), task.num_labels)
    module = FineTuneModule(model, task, lr=1.5e-4, warmup_ratio=0.0)
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(max_epochs=16, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, check_val_every_n_epoch=100,
                        callbacks=[Losses()])
    trainer.fit(module, datamodule=dm)
    trainer.validate(module, datamodule=dm, verbose=False)
    labels = [r["label"] for r in dm.rows["train"]]
    assert 0 < sum(labels) < len(labels), "the slice should hold both true and false answers"
    assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4, losses
    all_true_f1 = 2 * sum(labels) / (sum(labels) + len(labels))
    assert module.last_metrics["val/f1a"] > max(0.8, all_true_f1), module.last_metrics
