"""What CPU this is, from /proc/cpuinfo: for choosing fast paths, naming builds and labelling benchmark records.
(Its own module so that low-level modules such as `int8_fused` can ask without importing `precision`.)"""
from __future__ import annotations

from pathlib import Path


def _cpuinfo(field: str) -> str | None:
    """The first `field` line of /proc/cpuinfo (Linux), or None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo; empty where there is none."""
    return set((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. "AMD EPYC"), or the platform's answer elsewhere."""
    import platform

    return _cpuinfo("model name") or platform.processor() or platform.machine()
