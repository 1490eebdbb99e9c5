#!/usr/bin/env bash
# On the device: move the chunks this call carried (.gpu-stage/) into the spool outside the
# working tree (GPU_STAGE_SPOOL, default /tmp/rest-lsp-gpu-stage), checking each one's sha256,
# and join every file whose chunks are all there into SPOOL/models/, checking the whole file's
# sha256 (docs/gpu.md).  Exit 0, or 1 on a corrupted chunk; with --require-complete, 10 while
# a staged file still misses chunks.  The next call's copy of the tree replaces carried folders,
# which is why the chunks must leave it in the same call.
set -euo pipefail
cd "$(dirname "$0")/.."
# python3 alone: it runs before any wheel is installed, and needs only the standard library
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m rest_lsp.bench.gpu_stage collect "$@"
