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
echo "rest-lsp: installing rest-lsp (editable) with its dev extra" >&2
.venv/bin/python -m pip install -q -e '.[dev]'
