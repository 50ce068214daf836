"""Building bortlab's C++ CPU kernels (`int8_fused.cpp`, `bf16_cpu.cpp`) for this machine, on first use.

Each source is compiled with `torch.utils.cpp_extension` (a C++ compiler and ninja are needed; about a minute here,
once per machine and PyTorch version) and cached under torch's extension root, one build per source text, flags,
PyTorch version and CPU, because `-march=native` code must not run on another CPU. Callers decide what to do when a
build fails: every kernel has a PyTorch path that computes the same thing.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from bortlab.models.cpu import cpu_flags, cpu_model

log = logging.getLogger(__name__)

# -O3 and this CPU's vector width (the loops are written to vectorize); no FMA contraction, so x / s + 128.5
# rounds exactly as eager PyTorch's separate multiply and add do (int8_fused's bit-identity)
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"]


def switched_on(variable: str) -> bool:
    """Whether the environment variable that can turn a kernel off (`0`, `false`, `no`, `off`) leaves it on."""
    return os.environ.get(variable, "1").strip().lower() not in ("0", "false", "no", "off")


def build_name(source: Path) -> str:
    key = "\n".join([source.read_text(), " ".join(CFLAGS), torch.__version__, cpu_model(),
                     " ".join(sorted(cpu_flags()))])
    return f"bortlab_{source.stem}_" + hashlib.sha1(key.encode()).hexdigest()[:12]


def load(source: Path, what: str):
    """The compiled module of `source`; raises what the build raised (no compiler, no ninja, a compile error)."""
    from torch.utils import cpp_extension

    name = build_name(source)
    if not list((Path(cpp_extension.get_default_build_root()) / name).glob(f"{name}*.so")):
        log.info("building %s for this CPU (first use on this machine, about a minute)", what)
    return cpp_extension.load(name=name, sources=[str(source)], extra_cflags=CFLAGS, verbose=False)


def reason(e: Exception) -> str:
    """The last line of a build error, for a one-line warning."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[-1][:200] if text else ''}"
