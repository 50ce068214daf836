"""A fine-tuning run as a model anyone can deploy: a transformers directory (and optionally ONNX).

    python -m bortlab.export RUN_DIR OUT_DIR [--onnx]

OUT_DIR gets `config.json` (the architecture, `id2label`/`label2id` from the task table, the problem type),
`model.safetensors` (encoder and the trained head), the tokenizer and a model card (`README.md`: task, dev
scores, shape, parameters). `AutoModelForSequenceClassification` (classification, regression) or
`AutoModelForMultipleChoice` (COPA, RACE) loads it with bortlab's logits, and `transformers.pipeline` serves
it. BERT-numbered models become `Bert*` classes, RoBERTa-numbered ones (Bort) `Roberta*`. `--onnx` adds
`model.onnx` (dynamic batch and length) that onnxruntime runs with the same logits.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bortlab.models.hf import ExportError

log = logging.getLogger(__name__)


def hf_classifier(run):
    """(transformers config, state dict) of a `FineTuned` run's model in its transformers head class."""
    from bortlab.models.hf import hf_config_from_arch, hf_state_from_encoder

    model, task = run.model, run.task
    arch = model.encoder.arch
    if model.pooling != "cls":
        raise ExportError(
            f"{run.run_dir} reads its sentence vector by model.pooling={model.pooling}: no transformers head class "
            "averages the tokens, so this model cannot be written as a transformers classifier. Fine-tune with "
            "model.pooling=cls to export, or serve the run with bortlab itself.")
    if not arch.pooler:
        raise ExportError(
            f"{run.run_dir}'s encoder has no pooler (its arch says pooler: false; pre-trained students have none): "
            "transformers' classifier heads always read the tanh pooler, so the exported logits would differ. "
            "Fine-tune from a checkpoint with a pooler, or serve the run with bortlab itself.")
    config = hf_config_from_arch(arch)
    roberta = arch.position_offset > 0
    base = "roberta" if roberta else "bert"
    choice = task.kind == "multiple_choice"
    cls = ("Roberta" if roberta else "Bert") + ("ForMultipleChoice" if choice else "ForSequenceClassification")
    config.architectures = [cls]
    if not choice:
        config.num_labels = task.num_labels
        config.problem_type = "regression" if task.is_regression else "single_label_classification"
        names = [str(x) for x in task.labels] if task.kind == "classification" else ["score"]
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
    state = {f"{base}.{k}": v for k, v in hf_state_from_encoder(model.encoder).items()}
    weight, bias = model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()
    if roberta and not choice:      # RobertaClassificationHead: dense + tanh on <s> (our pooler), then out_proj
        state["classifier.dense.weight"] = state.pop("roberta.pooler.dense.weight")
        state["classifier.dense.bias"] = state.pop("roberta.pooler.dense.bias")
        state["classifier.out_proj.weight"], state["classifier.out_proj.bias"] = weight, bias
    else:
        state["classifier.weight"], state["classifier.bias"] = weight, bias
    return config, {k: v.contiguous() for k, v in state.items()}


def model_card(run, cls: str) -> str:
    m, task, arch = run.metrics, run.task, run.model.encoder.arch
    dev = m.get("dev") or {}
    rows = "\n".join(f"| {k.split('/', 1)[-1]} | {v:.4f} |" for k, v in dev.items() if not k.endswith("loss"))
    params = m.get("params") or {}
    pipeline_tag = "multiple-choice" if task.kind == "multiple_choice" else "text-classification"
    inputs = "one (context, choice) pair per choice" if task.kind == "multiple_choice" else "a text or a text pair"
    return f"""---
library_name: transformers
pipeline_tag: {pipeline_tag}
tags: [bortlab, {task.benchmark}, {task.name.split('/')[-1]}]
---
# {task.name}: bortlab {arch}

Fine-tuned with bortlab on `{task.name}` ({task.kind}); exported from the run
`{run.run_dir.name}`, checkpoint `{run.checkpoint.name}`. Class `{cls}`; inputs {inputs}, at most
{run.max_length} tokens as trained.

| dev metric | value |
|---|---|
{rows or '| (none recorded) | |'}

- shape ⟨D, A, H, I⟩ = {tuple(arch.tuple)}; {params.get('net', arch.num_params()):,} parameters
  ({params.get('effective', arch.num_params(non_embedding=True)):,} without embeddings)
- initialised by `model.init={run.cfg.model.init}`; {m.get('steps', '?')} training steps
- labels: {', '.join(str(x) for x in task.labels) or 'a score (regression)'}

```python
from transformers import pipeline
clf = pipeline("text-classification", model="<this directory>")
```
"""


def export_run(run_dir, out_dir, onnx: bool = False) -> Path:
    """Write the run's model as a transformers directory at `out_dir` (atomically); returns its path."""
    from bortlab.finetune.checkpoint import load_finetuned
    from bortlab.models.hf import check_vocab, write_hf_dir

    run = load_finetuned(run_dir, what="RUN_DIR")
    config, state = hf_classifier(run)
    check_vocab(run.model.encoder, run.tokenizer)
    out = write_hf_dir(out_dir, config, state, run.tokenizer,
                       files={"README.md": model_card(run, config.architectures[0])})
    if onnx:
        from bortlab.onnx_export import export_onnx

        export_onnx(out, run.task)
    log.info("exported %s (%s) to %s", run.run_dir, config.architectures[0], out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bortlab.export", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a fine-tuning run directory (or one of its .ckpt files)")
    ap.add_argument("out_dir", help="where the transformers directory goes (replaced if it exists)")
    ap.add_argument("--onnx", action="store_true", help="also write model.onnx (needs onnx, onnxscript, onnxruntime)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from bortlab.errors import USER_ERRORS

    try:
        out = export_run(args.run_dir, args.out_dir, onnx=args.onnx)
    except (*USER_ERRORS, ExportError) as e:
        print(f"bortlab.export: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
