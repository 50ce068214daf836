"""Parametric encoder, heads, Hugging Face interop and the LightningModules."""
from bortlab.models.arch import PRESETS, Arch, ArchError

__all__ = ["Arch", "ArchError", "PRESETS"]
