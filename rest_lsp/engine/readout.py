"""What a decoding step reads out of the verification logits: each row's argmax, some rows' top-k.

On the CPU these run in numpy over the logits' own memory: torch's ``argmax`` and ``topk`` walk a
16k-token row with scalar code (152 vs 23 microseconds for 19 rows of the embedded model's
vocabulary, 2 threads), which is a tenth of a small model's step.  numpy's ``argmax`` returns the
first maximal index like torch's, so greedy decoding reads the same tokens either way.  On an
accelerator the tensor stays where it is and torch does the work, and a step's readout is one
device-to-host copy (``greedy_readout``: each row's argmax, and its top-k where a drafter
observes them, from one ``topk`` over tie-free keys).
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
        return top_tokens(logits.index_select(0, index), k)
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


def readout_keys(logits: torch.Tensor) -> torch.Tensor:
    """[n, vocab] int64 keys ordering each row's tokens by value, ties toward the smaller id.

    float32 bits mapped to an order-preserving int32 (negative values' magnitude bits flipped;
    -0.0 folded into +0.0 first), shifted up 32 bits, plus ``vocab - 1 - id``: distinct keys, so
    ``topk`` over them is deterministic on any device (CUDA's ``topk`` leaves ties in no set order)
    and its first column is ``argmax``'s first maximal index.
    """
    values = logits.float() + 0.0  # [n, vocab]; + 0.0 turns -0.0 into +0.0
    bits = values.view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    vocab = logits.shape[-1]
    ids = torch.arange(vocab, device=logits.device, dtype=torch.int64)
    return (ordered << 32) + (vocab - 1 - ids)


def top_tokens(logits: torch.Tensor, k: int) -> np.ndarray:
    """[n, k] int64 on the host: each row's k best tokens, best first (ties: smaller id), in one
    device-to-host copy; column 0 is the row's argmax."""
    vocab = logits.shape[-1]
    keys = readout_keys(logits).topk(min(k, vocab), dim=-1).values  # [n, k], sorted descending
    return (vocab - 1 - (keys & 0xFFFFFFFF)).cpu().numpy()


def greedy_readout(logits: torch.Tensor, k: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """([n] argmax ids, [n, k] top-k ids or None) of logits [n, vocab] for a greedy step.

    CPU: numpy's argmax; the top-k is left to ``top_k_rows`` on the accepted rows only.  An
    accelerator: one ``topk`` over all rows (``k`` > 0) or an argmax, then one copy to the host.
    """
    if logits.device.type == "cpu":
        return argmax_rows(logits), None
    if k > 0:
        top = top_tokens(logits, k)
        return top[:, 0].copy(), top
    return logits.argmax(dim=-1).cpu().numpy(), None
