"""Fixed row counts for verification forwards, and the one host buffer a padded step sends.

Why fixed counts: on an accelerator the GEMM library picks its algorithm by the row count, so a
one-row greedy step and an n-row tree step can round differently and flip near-ties; padding every
verification to the same count makes each row's arithmetic independent of the tree around it.
Pure numpy: the padded inputs are packed into one int64 vector so that a step needs one host-to-
device copy (tokens, positions, the cache length, the ancestor mask).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rest_lsp.engine.tree_inputs import TreeInputs


def bucket_for(rows: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``rows`` rows; ``ValueError`` when none does."""
    for b in sorted(buckets):
        if rows <= b:
            return int(b)
    raise ValueError(f"a tree of {rows} rows exceeds the largest row bucket {max(buckets)}")


def packed_size(bucket: int) -> int:
    """Length of the int64 vector ``pack_step`` writes for ``bucket`` rows."""
    return 2 * bucket + 1 + bucket * bucket


def pack_step(inputs: TreeInputs, past: int, bucket: int, out: np.ndarray | None = None) -> np.ndarray:
    """[packed_size(bucket)] int64: tokens [B], positions [B], past [1], ancestor mask [B*B].

    Rows past the tree's ``n`` are padding: token 0 at position ``past``, attending to themselves
    only (a row that attends to nothing would give NaN).  Real rows never attend to padding, so
    their values do not depend on it.  ``out``: a buffer to fill (a pinned host tensor's numpy
    view) instead of a new array.
    """
    n, b = len(inputs), bucket
    if n > b:
        raise ValueError(f"{n} rows do not fit a bucket of {b}")
    buf = np.empty(packed_size(b), dtype=np.int64) if out is None else out
    buf[: 2 * b + 1] = 0
    buf[:n] = inputs.tokens
    buf[b : b + n] = past + inputs.depths
    buf[b + n : 2 * b] = past
    buf[2 * b] = past
    mask = buf[2 * b + 1 :].reshape(b, b)
    mask[:] = 0
    mask[:n, :n] = inputs.ancestor_mask
    pad = np.arange(n, b)
    mask[pad, pad] = 1
    return buf


def unpack_step(buf: np.ndarray, bucket: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """The inverse of ``pack_step``: tokens [B], positions [B], past, ancestor mask [B, B] bool."""
    b = bucket
    return buf[:b], buf[b : 2 * b], int(buf[2 * b]), buf[2 * b + 1 :].reshape(b, b).astype(bool)
