"""The fused C++ kernels behind `Int8Linear`'s elementwise work (`int8_fused.cpp`), built for this CPU on first use.

Eager PyTorch spends about fifteen memory passes per int8 Linear around the integer matmul (abs, maxima, scale,
offset, two casts, then the row scales, bias, outlier columns and the cast back); on short real sequences (SST-2,
~200 token rows per batch) they cost about as much as the matmul itself. The two kernels here do that work in two
passes, with the same arithmetic: the uint8 activations and row scales are bit-identical to the eager path's, the
outputs equal to fp32 rounding (tests/test_int8.py).

They are compiled with `torch.utils.cpp_extension` (a C++ compiler and ninja are needed; ~50 s here, once per machine
and PyTorch version, cached under torch's extension root). Where that fails, int8 runs the eager path and says so
once. `BORTLAB_FUSED_INT8=0` chooses the eager path.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import torch

from bortlab.models.cpu import cpu_flags, cpu_model

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("int8_fused.cpp")
# -O3 and this CPU's vector width (the loops are written to vectorize); no FMA contraction, so x / s + 128.5
# rounds exactly as eager PyTorch's separate multiply and add do
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"]


def enabled() -> bool:
    return os.environ.get("BORTLAB_FUSED_INT8", "1").strip().lower() not in ("0", "false", "no", "off")


def build_name() -> str:
    """One build per source, flags, PyTorch version and CPU: -march=native code must not run on another CPU."""
    key = "\n".join([SOURCE.read_text(), " ".join(CFLAGS), torch.__version__, cpu_model(), " ".join(sorted(cpu_flags()))])
    return "bortlab_int8_fused_" + hashlib.sha1(key.encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def kernels():
    """The compiled module (`col_absmax`, `quantize`, `epilogue`), or None: disabled, or it could not be built."""
    if not enabled():
        return None
    try:
        from torch.utils import cpp_extension

        name = build_name()
        if not list((Path(cpp_extension.get_default_build_root()) / name).glob(f"{name}*.so")):
            log.info("building bortlab's fused int8 kernels for this CPU (first use on this machine, about a minute)")
        return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=CFLAGS, verbose=False)
    except Exception as e:          # no compiler, no ninja, a compile error: the eager path computes the same
        log.warning("precision=int8: bortlab's fused int8 kernels could not be built (%s: %s), so int8 runs its "
                    "elementwise work in eager PyTorch: the same numbers, slower on short sequences. Fix: install a "
                    "C++ compiler (g++) and ninja (pip install ninja); or set BORTLAB_FUSED_INT8=0 to choose the eager "
                    "path and silence this.", type(e).__name__, str(e).strip().splitlines()[-1][:200] if str(e).strip() else "")
        return None
