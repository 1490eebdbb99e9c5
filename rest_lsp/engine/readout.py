"""What a decoding step reads out of the verification logits: each row's argmax, some rows' top-k.

On the CPU these run in numpy over the logits' own memory: torch's ``argmax`` and ``topk`` walk a
16k-token row with scalar code (152 vs 23 microseconds for 19 rows of the embedded model's
vocabulary, 2 threads), which is a tenth of a small model's step.  numpy's ``argmax`` returns the
first maximal index like torch's, so greedy decoding reads the same tokens either way.  On an
accelerator the tensor stays where it is and torch does the work.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _cpu_rows(logits: torch.Tensor) -> np.ndarray | None:
    """[n, vocab] float32 numpy view of CPU logits (a copy only for other float dtypes)."""
    if logits.device.type != "cpu":
        return None
    if logits.dtype != torch.float32:
        logits = logits.float()  # bf16/fp16 on the CPU: numpy has no bfloat16
    return logits.numpy()


def argmax_rows(logits: torch.Tensor) -> np.ndarray:
    """[n] int64: the first maximal token of each row of ``logits`` [n, vocab]."""
    rows = _cpu_rows(logits)
    if rows is None:
        return logits.argmax(dim=-1).cpu().numpy()
    return rows.argmax(axis=1)


def argmax_among(logits: torch.Tensor, row: int, allowed: np.ndarray) -> int:
    """The first maximal token of row ``row`` of ``logits`` [n, vocab] among ``allowed`` (sorted ids)."""
    rows = _cpu_rows(logits)
    if rows is None:
        index = torch.as_tensor(allowed, dtype=torch.long, device=logits.device)
        return int(allowed[int(logits[row].index_select(0, index).argmax())])
    return int(allowed[int(rows[row, allowed].argmax())])


def top_k_rows(logits: torch.Tensor, rows: Sequence[int], k: int,
               first: np.ndarray | None = None) -> np.ndarray:
    """[len(rows), k] int64: the ``k`` largest tokens of the given rows, best first.

    Ties go to the smaller token id.  ``first``: each row's argmax if already known (the greedy
    readout's ``argmax_rows``, indexed by row), saving one pass.  CPU: ``k - 1`` more argmax passes
    per row, each after blanking the token found last in place; the blanked values are put back
    before returning, so ``logits`` is left as it came.  Blanking in place rather than in a copy
    of the rows: the copy was half the cost (~150 -> ~90 us a step in the decoding loop).
    """
    data = _cpu_rows(logits)
    if data is None:
        index = torch.as_tensor(list(rows), dtype=torch.long, device=logits.device)
        return logits.index_select(0, index).topk(k, dim=-1).indices.cpu().numpy()
    k = min(k, data.shape[1])
    if k <= 0:
        return np.empty((len(rows), 0), dtype=np.int64)
    out = [_top_k_row(data[row], k, None if first is None else int(first[row])) for row in rows]
    return np.array(out, dtype=np.int64).reshape(len(out), k)


def _top_k_row(row: np.ndarray, k: int, best: int | None) -> list[int]:
    """The ``k`` largest tokens of one row [vocab], best first; the row is restored afterwards."""
    found = [int(row.argmax()) if best is None else best]
    saved = []
    for _ in range(1, k):
        token = found[-1]
        saved.append(row[token])
        row[token] = -np.inf
        found.append(int(row.argmax()))
    # last blanked first: a token found twice (a row of -inf) gets its first value back last
    for token, value in zip(reversed(found[:-1]), reversed(saved)):
        row[token] = value
    return found
