"""What a llama.cpp build and a runner setting allow: whether llama-cpp-python loads, whether
weights may be repacked for the CPU, and how many rows a verification batch may hold and still
match one-row steps bit for bit (the measurements: docs/cpu.md).  No llama.cpp import at module
level: ``available`` is how the rest of rest-lsp asks.
"""

from __future__ import annotations

import os
from typing import Any

#: ggml's type ids of K/V cache types (``ggml.h``)
GGML_TYPE_F16 = 1
GGML_TYPE_Q8_0 = 8
GGML_TYPE_BF16 = 30
#: the K/V cache types by name
CACHE_TYPES = {"f16": GGML_TYPE_F16, "q8_0": GGML_TYPE_Q8_0, "bf16": GGML_TYPE_BF16}

#: rows of a verification batch with repacked weights (their 4-row kernel starts at 4 rows)
REPACKED_ROWS = 3
#: rows of a verification batch while ggml's tiled K-quant matmul is on (it starts at 8 rows)
TILED_FREE_ROWS = 7
#: rows of a verification batch when that matmul is off (GGML_CPU_TILED_MM=0)
MAX_BATCH_ROWS = 64
#: the environment variable ggml reads, once per process, to turn its tiled K-quant matmul off
TILED_ENV = "GGML_CPU_TILED_MM"


def max_verification_rows(repack: bool, environ: Any = None) -> int:
    """The most rows one verification batch may hold and still match one-row steps bit for bit."""
    if repack:
        return REPACKED_ROWS
    environ = os.environ if environ is None else environ
    value = environ.get(TILED_ENV, "").strip()
    off = value != "" and value.lstrip("-").isdigit() and int(value) == 0
    return MAX_BATCH_ROWS if off else TILED_FREE_ROWS


#: what llama.cpp's system info says when its CPU backend holds AMX kernels
AMX_FEATURE = "AMX_INT8 = 1"


def repack_choice(system_info: str) -> tuple[bool, str]:
    """Whether llama.cpp's extra weight buffers (repacked weights, and AMX ones where built) may be
    used with this build (``llama_print_system_info``), and why.

    Why: with AMX kernels compiled in, those buffers put the Q4_K weights of the packaged models
    into AMX tiles, and the first ``llama_decode`` crashes the process on Sapphire Rapids machines
    (a segmentation fault, seen here with llama-cpp-python 0.3.36; ggml-org/llama.cpp#20824).  A
    crash cannot be caught, so such a build loads the weights as they are in the file: ~25% slower
    a step on the EPYC where that was measured, no slower on the Xeon where the crash was seen,
    and never a dead daemon.  ``scripts/install.sh`` builds
    llama.cpp without AMX, which keeps the repacked weights.
    """
    if AMX_FEATURE in system_info:
        return False, ("weights not repacked: this llama.cpp build has AMX kernels, whose weight buffers "
                       "crash on Q4_K models (ggml-org/llama.cpp#20824); rebuild it without AMX "
                       "(scripts/install.sh does) to repack")
    return True, "weights repacked for this CPU"


def available() -> tuple[bool, str]:
    """Whether llama-cpp-python can be imported here, and why not."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # ImportError, or a shared library that fails to load
        return False, f"llama-cpp-python is not installed ({exc}); pip install 'rest-lsp[llama]'"
    return True, ""
