#!/usr/bin/env bash
# Install rest-lsp and its dev tools into ./.venv (idempotent).
# On a machine without an NVIDIA GPU the CPU build of torch is installed first, so that pip
# does not pull a multi-GB CUDA build; with a GPU, pip picks the CUDA build itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "rest-lsp: creating .venv with $($PY --version)" >&2
    $PY -m venv .venv
fi
if ! command -v nvidia-smi >/dev/null 2>&1 && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    echo "rest-lsp: installing the CPU build of torch" >&2
    .venv/bin/python -m pip install -q torch==2.13.0
fi
# llama.cpp's AMX kernels crash on the packaged Q4_K_M models on some Intel Xeons
# (ggml-org/llama.cpp#20824): pip builds llama-cpp-python for this CPU without them, so that
# rest-lsp can keep llama.cpp's repacked weights (a build with AMX loads them as in the file;
# docs/cpu.md).  A CMAKE_ARGS of your own wins; a wheel pip cached earlier is reused as it is.
if [ "$(uname -m)" = x86_64 ] && [ -z "${CMAKE_ARGS:-}" ]; then
    NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    export CMAKE_ARGS="-DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
fi
echo "rest-lsp: installing rest-lsp (editable) with its dev extra" >&2
.venv/bin/python -m pip install -q -e '.[dev]'
