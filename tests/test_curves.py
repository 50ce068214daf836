"""bortlab.curves.Curves under a real (tiny) Lightning fit: the steps it records, resume, the files it writes."""
import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bortlab.curves import Curves, plot_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Tiny(L.LightningModule):
    """A linear classifier that logs what FineTuneModule logs: train/loss, val/loss and scores, a 2nd split."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val/loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val/accuracy", (logits.argmax(-1) == y).float().mean())
        self.log("val_mm/accuracy", (logits.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=4)


def fit(curves, max_epochs, ckpt_path=None, **kw):
    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=max_epochs, limit_train_batches=3, limit_val_batches=2, log_every_n_steps=2,
                        callbacks=[curves], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", **kw)
    module = Tiny()
    trainer.fit(module, train_dataloaders=loader(), val_dataloaders=loader(), ckpt_path=ckpt_path)
    return trainer, module


def test_records_train_loss_every_log_step_and_dev_metrics_every_validation(tmp_path):
    curves = Curves(dirpath=tmp_path, title="tiny")
    trainer, module = fit(curves, max_epochs=2)
    # 3 steps an epoch: train loss at step 1 and every 2nd step; dev metrics at each epoch's end, no sanity check
    assert [s for s, _ in curves.train] == [1, 2, 4, 6]
    assert all(loss > 0 for _, loss in curves.train)
    assert [s for s, _ in curves.val] == [3, 6]
    assert all(set(m) == {"val/loss", "val/accuracy", "val_mm/accuracy"} for _, m in curves.val)
    assert curves.val[-1][1]["val/accuracy"] == pytest.approx(float(trainer.callback_metrics["val/accuracy"]))
    assert curves.fit_seconds > 0 and curves.fit_tokens == 0      # no tokens_seen on this module
    # dirpath: history.json (the same keys as pretrain/report.py's LossHistory.save) and a PNG
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved == {"train": [list(p) for p in curves.train], "val": [list(p) for p in curves.val]}
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "history.json"]   # no temporary left

    # a validation after fit replaces the point of its step; fit_only ignores it (a best-checkpoint score)
    before = list(curves.val)
    module.net.weight.data.zero_()
    trainer.validate(module, dataloaders=loader(), verbose=False)
    assert [s for s, _ in curves.val] == [3, 6] and curves.val[-1] != before[-1]
    only = Curves(fit_only=True)
    trainer2, module2 = fit(only, max_epochs=2)
    module2.net.weight.data.zero_()
    trainer2.validate(module2, dataloaders=loader(), verbose=False)
    assert only.val == before


def test_resumed_run_continues_its_curve(tmp_path):
    first = Curves()
    trainer, _ = fit(first, max_epochs=1)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    resumed = Curves()
    fit(resumed, max_epochs=2, ckpt_path=tmp_path / "last.ckpt")
    assert [s for s, _ in resumed.train] == [1, 2, 4, 6] and [s for s, _ in resumed.val] == [3, 6]
    assert resumed.train[:2] == first.train and resumed.val[0] == first.val[0]

    # a checkpoint from before pre-training switched over keeps the curve under LossHistory's state key
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    ckpt["callbacks"] = {"LossHistory": ckpt["callbacks"].pop("Curves")}
    torch.save(ckpt, tmp_path / "old.ckpt")
    from_old = Curves()
    fit(from_old, max_epochs=2, ckpt_path=tmp_path / "old.ckpt")
    assert from_old.train == resumed.train and [s for s, _ in from_old.val] == [3, 6]


def test_plot_curve_takes_the_pretraining_history(tmp_path):
    """pretrain/run.py calls plot_curve(history, path, title=...) on held-out loss, ce and perplexity points."""
    curves = Curves()
    curves.train = [(1, 9.0), (2, 8.0)]
    curves.val = [(0, {"val/loss": 9.5, "val/ce": 9.5, "val/ppl": 13360.0}), (2, {"val/loss": 8.1, "val/ce": 8.1,
                                                                                  "val/ppl": 3294.0})]
    assert plot_curve(curves, tmp_path / "loss_curve.png", title="pretrain/kd") == tmp_path / "loss_curve.png"
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == PNG_MAGIC
    Curves().plot(tmp_path / "empty.png")       # a run with no points yet still gets a (blank) figure
    assert (tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC
