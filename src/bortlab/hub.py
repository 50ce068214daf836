"""Is the Hugging Face hub reachable? Asked once per process, in a few seconds.

Without this, `from_pretrained("amazon/bort")` on a machine with no route to the hub spends close to a
minute in retries before failing. When the hub cannot be reached we pass `local_files_only=True`, which
still finds hub ids already in the local cache, and fails at once otherwise.
"""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    port = urlparse(endpoint).port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_local(name_or_path: str | os.PathLike) -> bool:
    return Path(os.fspath(name_or_path)).expanduser().exists()


def hub_kwargs(name_or_path: str | os.PathLike) -> dict:
    """Extra from_pretrained kwargs: `local_files_only=True` for a hub id while the hub is unreachable."""
    if is_local(name_or_path) or hub_reachable():
        return {}
    return {"local_files_only": True}
