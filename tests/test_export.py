"""A fine-tuning run exported for deployment: transformers' own classes and onnxruntime compute bortlab's
logits on real dev rows, for classification, regression and multiple choice, BERT- and RoBERTa-numbered."""
from __future__ import annotations

import json

from pathlib import Path

import pytest
import torch

from zygote import python


REPO = Path(__file__).resolve().parents[1]

TASKS = ("glue/rte", "glue/stsb", "superglue/copa")
TINY = ["arch=tiny", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
        "data.batch_size=8", "data.eval_batch_size=16", "trainer.enable_progress_bar=false", "task.max_length=48",
        "predict=false", "logger=none", "model.init=scratch"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    """Six tiny runs in one multirun: three task kinds x BERT (positions from 0) and RoBERTa numbering."""
    import os

    sweep = tmp_path_factory.mktemp("export_runs")
    p = python(str(REPO / "train.py"), "-m", f"task={','.join(TASKS)}", "arch.position_offset=0,1",
               f"data.root={data_root}", *TINY, f"hydra.sweep.dir={sweep}", cwd=sweep, timeout=900,
               env={**os.environ, "BORTLAB_DATA": str(data_root), "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-4000:]
    out = {}
    for m in sorted(sweep.glob("*/metrics.json")):
        d = json.loads(m.read_text())
        out[(d["task"], d["arch"]["position_offset"])] = m.parent
    assert len(out) == 6
    return out


def _dev_batch(run, data_root):
    from bortlab.data.datamodule import TaskDataModule

    arch = run.model.encoder.arch
    dm = TaskDataModule(run.task, run.tokenizer, root=data_root, max_length=48, eval_batch_size=12,
                        use_token_types=arch.uses_token_types)
    batch = next(iter(dm.eval_loader(dm.dev_splits[0])))
    with torch.no_grad():
        ours = run.model(batch["input_ids"], attention_mask=batch["attention_mask"],
                         token_type_ids=batch.get("token_type_ids"))
    return batch, ours


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("task_name", TASKS)
def test_export_loads_in_transformers_and_onnxruntime_with_bortlabs_logits(runs, tmp_path, data_root, task_name,
                                                                           offset):
    from transformers import AutoConfig, AutoModelForMultipleChoice, AutoModelForSequenceClassification

    from bortlab.export import export_run
    from bortlab.finetune.checkpoint import load_finetuned

    run = load_finetuned(runs[(task_name, offset)])
    out = export_run(run.run_dir, tmp_path / "hf", onnx=True)
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == ("roberta" if offset else "bert")
    choice = run.task.kind == "multiple_choice"
    cls = AutoModelForMultipleChoice if choice else AutoModelForSequenceClassification
    hf, info = cls.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]      # the trained head, not a random one
    if run.task.kind == "classification":
        assert [config.id2label[i] for i in range(config.num_labels)] == list(run.task.labels)
    if run.task.is_regression:
        assert config.num_labels == 1 and config.problem_type == "regression"

    batch, ours = _dev_batch(run, data_root)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in batch else [])
    with torch.no_grad():
        theirs = hf.eval()(**{k: batch[k] for k in names}).logits
    assert theirs.shape == ours.shape
    assert torch.allclose(theirs, ours, atol=1e-4), (theirs - ours).abs().max()

    # and back: bortlab's inference loader reads the export (head included) with the same logits
    from bortlab.inference import load_classifier

    clf = load_classifier(out)
    back = clf(batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch.get("token_type_ids"))
    assert torch.allclose(back, theirs, atol=1e-4), (back - theirs).abs().max()
    assert clf.labels == ([config.id2label[i] for i in range(config.num_labels)] if not choice else [])

    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    onnx_logits = torch.from_numpy(session.run(None, feed)[0])
    assert torch.allclose(onnx_logits, ours, atol=1e-3), (onnx_logits - ours).abs().max()
    card = (out / "README.md").read_text()
    assert run.task.name in card and str(tuple(run.model.encoder.arch.tuple)) in card


def test_pipeline_serves_the_export_with_the_task_labels(runs, tmp_path, data_root):
    from transformers import pipeline

    from bortlab.data.tasks import read_split
    from bortlab.export import export_run
    from bortlab.finetune.checkpoint import load_finetuned

    run = load_finetuned(runs[("glue/rte", 0)])
    out = export_run(run.run_dir, tmp_path / "hf")
    row = read_split("glue/rte", "dev", root=data_root)[0]
    clf = pipeline("text-classification", model=str(out), device="cpu")
    got = clf({"text": row["sentence1"], "text_pair": row["sentence2"]})
    enc = run.tokenizer(row["sentence1"], row["sentence2"], return_tensors="pt")
    with torch.no_grad():
        probs = run.model(enc["input_ids"], attention_mask=enc["attention_mask"],
                          token_type_ids=enc["token_type_ids"]).softmax(-1)[0]
    got = got[0] if isinstance(got, list) else got
    assert got["label"] == run.task.labels[int(probs.argmax())]
    assert got["score"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_what_cannot_be_exported_says_why(runs, tmp_path):
    from bortlab.export import hf_classifier
    from bortlab.finetune.checkpoint import load_finetuned
    from bortlab.models.hf import ExportError

    run = load_finetuned(runs[("glue/rte", 0)])
    run.model.pooling = "mean"
    with pytest.raises(ExportError, match="no transformers head class averages"):
        hf_classifier(run)

    def cli(*args):
        return python("-m", "bortlab.export", *args, cwd=tmp_path, timeout=300)

    p = cli(tmp_path / "nothing", tmp_path / "out")
    assert p.returncode == 2 and "no such run directory" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "empty").mkdir()
    p = cli(tmp_path / "empty", tmp_path / "out")
    assert p.returncode == 2 and "checkpoints/best.ckpt" in p.stderr
    p = cli(runs[("superglue/copa", 1)], tmp_path / "out")
    assert p.returncode == 0 and (tmp_path / "out" / "config.json").exists()
