"""The fused C++ kernels behind `Int8Linear`'s elementwise work (`int8_fused.cpp`), built for this CPU on first use.

Eager PyTorch spends about fifteen memory passes per int8 Linear around the integer matmul (abs, maxima, scale,
offset, two casts, then the row scales, bias, outlier columns and the cast back); on short real sequences (SST-2,
~200 token rows per batch) they cost about as much as the matmul itself. The two kernels here do that work in two
passes, with the same arithmetic: the uint8 activations and row scales are bit-identical to the eager path's, the
outputs equal to fp32 rounding (tests/test_int8.py).

They are compiled on first use (`extensions`: a C++ compiler and ninja are needed; ~50 s here, once per machine).
Where that fails, int8 runs the eager path and says so once. `BORTLAB_FUSED_INT8=0` chooses the eager path.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from bortlab.models import extensions

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("int8_fused.cpp")


@functools.lru_cache(maxsize=None)
def kernels():
    """The compiled module (`col_absmax`, `quantize`, `epilogue`), or None: disabled, or it could not be built."""
    if not extensions.switched_on("BORTLAB_FUSED_INT8"):
        return None
    try:
        return extensions.load(SOURCE, "bortlab's fused int8 kernels")
    except Exception as e:          # no compiler, no ninja, a compile error: the eager path computes the same
        log.warning("precision=int8: bortlab's fused int8 kernels could not be built (%s), so int8 runs its "
                    "elementwise work in eager PyTorch: the same numbers, slower on short sequences. Fix: install a "
                    "C++ compiler (g++) and ninja (pip install ninja); or set BORTLAB_FUSED_INT8=0 to choose the eager "
                    "path and silence this.", extensions.reason(e))
        return None
