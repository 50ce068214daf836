"""Parametric encoder, heads, Hugging Face interop and the LightningModules."""
from bortlab.models.arch import PRESETS, Arch, ArchError

__all__ = ["Arch", "ArchError", "PRESETS"]
from bortlab.models.extract import extract  # noqa: E402  (sub-architecture extraction)

__all__ += ["extract"]
