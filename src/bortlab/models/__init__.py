"""Parametric encoder, heads, Hugging Face interop and the LightningModules."""
from bortlab.models.arch import PRESETS, Arch, ArchError

__all__ = ["Arch", "ArchError", "PRESETS"]
from bortlab.models.encoder import Encoder  # noqa: E402  (the parametric encoder)
from bortlab.models.heads import MultipleChoice, SequenceClassifier  # noqa: E402
from bortlab.models.hf import (  # noqa: E402  (Hugging Face interop)
    CheckpointNotFoundError, ExportError, VocabMismatchError, arch_from_hf_config, check_vocab,
    encoder_state_from_hf, export_pretrained, hf_state_from_encoder, load_pretrained)

__all__ += ["Encoder", "SequenceClassifier", "MultipleChoice", "load_pretrained", "export_pretrained",
            "check_vocab", "arch_from_hf_config", "encoder_state_from_hf", "hf_state_from_encoder",
            "CheckpointNotFoundError", "VocabMismatchError", "ExportError"]
from bortlab.models.extract import extract  # noqa: E402  (sub-architecture extraction)

__all__ += ["extract"]
