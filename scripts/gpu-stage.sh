#!/usr/bin/env bash
# Cut a GGUF model into chunks that each fit one device call, under .gpu-stage/LABEL/NN/, with a
# manifest (docs/gpu.md, "Running the GPU checks"): a call copies at most 64 MiB, working tree
# included, and the 0.5B model alone is 491 MB.  Prints the calls that carry the chunks.
#   scripts/gpu-stage.sh qwen2.5-coder-0.5b            # a packaged model (assembled if needed)
#   scripts/gpu-stage.sh path/to/model.gguf [--label NAME] [--chunk-bytes N]
# GPU_STAGE_CHUNK_BYTES (or --chunk-bytes) overrides the chunk size, which by default is what a
# call leaves beside the working tree and .whl/, at most 60 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
# the source tree, not an installed copy: this checkout's staging format is the one the device reads
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m rest_lsp.bench.gpu_stage split "$@"
