"""`model.onnx` beside an exported transformers classifier: batch and length dynamic, checked with onnxruntime.

The graph is traced from the transformers model the directory holds (eager attention: the plainest graph),
through torch's dynamo exporter, then run once by onnxruntime on a shape other than the traced one; logits
that differ from transformers' by more than 1e-3 fail the export instead of shipping a wrong file.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch

from bortlab.models.hf import ExportError

log = logging.getLogger(__name__)

TOLERANCE = 1e-3


def _inputs(task, batch: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Random token ids with some padding and a second segment; (batch, choices, length) for multiple choice."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, task.num_choices, length) if task.kind == "multiple_choice" else (batch, length)
    ids = torch.randint(1000, 2000, shape, generator=g)
    mask = torch.ones(shape, dtype=torch.long)
    mask[0, ..., length - length // 4:] = 0            # the first example padded at its end
    types = torch.zeros(shape, dtype=torch.long)
    types[..., length // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def export_onnx(hf_dir, task, opset: int = 18) -> Path:
    """Write `<hf_dir>/model.onnx` atomically and check it against transformers; returns its path."""
    try:
        import onnxruntime as ort
        from torch.export import Dim
    except ImportError as e:
        raise ExportError(f"--onnx needs onnx, onnxscript and onnxruntime ({e}); pip install 'bortlab[export]'.") from e
    from transformers import AutoModelForMultipleChoice, AutoModelForSequenceClassification

    from bortlab.files import atomic_path

    hf_dir = Path(hf_dir)
    cls = AutoModelForMultipleChoice if task.kind == "multiple_choice" else AutoModelForSequenceClassification
    model = cls.from_pretrained(hf_dir, attn_implementation="eager").eval()
    if model.config.type_vocab_size < 2:    # one segment (RoBERTa, Bort): the ids carry no second type
        names = ["input_ids", "attention_mask"]
    else:
        names = ["input_ids", "attention_mask", "token_type_ids"]
    example = {k: v for k, v in _inputs(task, 2, 16, seed=0).items() if k in names}
    batch, length = Dim("batch"), Dim("length")
    axes = {0: batch, 2: length} if task.kind == "multiple_choice" else {0: batch, 1: length}
    out = hf_dir / "model.onnx"
    # the exporter's graph optimiser prints a line per merged constant: keep them off the user's console
    with atomic_path(out) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (), str(tmp), kwargs=example, dynamo=True, opset_version=opset, verbose=False,
                          dynamic_shapes={k: axes for k in names}, input_names=names, output_names=["logits"],
                          external_data=False)
        check = {k: v for k, v in _inputs(task, 3, 23, seed=1).items() if k in names}
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {k: v.numpy() for k, v in check.items()})[0])
        with torch.no_grad():
            want = model(**check).logits
        diff = float((got - want).abs().max())
        if diff > TOLERANCE:
            raise ExportError(f"The ONNX graph's logits differ from transformers' by {diff:.2e} (> {TOLERANCE}) on "
                              "a (3 x 23) batch; model.onnx was not written.")
    log.info("wrote %s (onnxruntime logits within %.1e of transformers)", out, diff)
    return out
