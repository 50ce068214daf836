"""A trained classifier for serving, in the precision asked for.

    clf = load_classifier("outputs/glue/rte/<time>", precision="bf16")     # a run dir, a .ckpt, or an export
    logits = clf(input_ids, attention_mask=mask, token_type_ids=types)     # float32 (B, labels) / (B, choices)

Whatever the source, the model is bortlab's own (unpadding, fused projections), so the fast precisions of
`bortlab.models.precision` apply; an exported transformers directory (`python -m bortlab.export`) is read
back into it, head included.
"""
from __future__ import annotations

from pathlib import Path

import torch

from bortlab.config import SetupError


class Classifier(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, tokenizer, labels: list[str], precision: str):
        super().__init__()
        self.model, self.tokenizer, self.labels, self.precision = model, tokenizer, labels, precision

    @torch.inference_mode()
    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).float()


def classifier_from_hf(path: Path):
    """(bortlab model, labels) from an exported *ForSequenceClassification / *ForMultipleChoice directory."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from bortlab.models.encoder import Encoder
    from bortlab.models.heads import MultipleChoice, SequenceClassifier
    from bortlab.models.hf import _ROBERTA_TYPES, arch_from_hf_config, encoder_state_from_hf

    config = AutoConfig.from_pretrained(path)
    kind = (config.architectures or [""])[0]
    if not kind.endswith(("ForSequenceClassification", "ForMultipleChoice")) or not (path / "model.safetensors").exists():
        raise SetupError(f"{path} is not a classifier export (architectures={config.architectures}, with "
                         "model.safetensors): pass a bortlab run directory or a `python -m bortlab.export` output.")
    sd = load_file(str(path / "model.safetensors"))
    roberta, choice = config.model_type in _ROBERTA_TYPES, kind.endswith("ForMultipleChoice")
    arch = arch_from_hf_config(config, pooler=True)
    if roberta and not choice:     # RobertaClassificationHead's dense + tanh is bortlab's pooler
        sd["roberta.pooler.dense.weight"] = sd.pop("classifier.dense.weight")
        sd["roberta.pooler.dense.bias"] = sd.pop("classifier.dense.bias")
        sd["classifier.weight"], sd["classifier.bias"] = sd.pop("classifier.out_proj.weight"), sd.pop("classifier.out_proj.bias")
    encoder = Encoder(arch)
    encoder.load_state_dict(encoder_state_from_hf({k: v for k, v in sd.items() if not k.startswith("classifier.")}, arch))
    model = MultipleChoice(encoder) if choice else SequenceClassifier(encoder, config.num_labels)
    model.classifier.load_state_dict({"weight": sd["classifier.weight"], "bias": sd["classifier.bias"]})
    labels = [] if choice else [config.id2label[i] for i in range(config.num_labels)]
    return model, labels


def load_classifier(path, precision: str = "fp32") -> Classifier:
    """A fine-tuning run (dir or .ckpt) or an exported classifier dir, as a `Classifier` in `precision`."""
    from bortlab.models.precision import apply_precision, check_precision

    precision = check_precision(precision)
    path = Path(path).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        from transformers import AutoTokenizer

        model, labels = classifier_from_hf(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    else:
        from bortlab.finetune.checkpoint import load_finetuned

        run = load_finetuned(path)
        model, tokenizer = run.model, run.tokenizer
        labels = [str(x) for x in run.task.labels] if run.task.kind == "classification" else []
    return Classifier(apply_precision(model, precision), tokenizer, labels, precision).eval()
