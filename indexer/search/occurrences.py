"""Occurrences of token strings in shards: the document a match lies in and its token offset.

Retrieval (``indexer.search.retrieval``) needs only what follows a match; a prompt's context block
(``rest_lsp.completion.context_sources``) needs where the match is, to cut a window of lines out
of that document.  A suffix-array row is a token position in the shard; the document table
(``doc_starts``) turns it into (document, offset).  Dead documents of a ``ShardView`` never
count, so masking a document (``without_paths``) hides it from every search here.  Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Sequence

import numpy as np

from indexer.search.suffix import ShardView, live_rows, longest_suffix, match_range

#: SA rows of one match range looked at, at most (spread evenly over a larger range)
SCAN_ROWS = 256


@dataclass(frozen=True)
class Occurrence:
    """One match of a token string: in which view and document, at which token offset."""

    view: int  # index of the view in the list searched
    doc: int  # document index inside that view's shard
    path: str  # the document's path as the shard names it (a relative path; a buffer's URI)
    start: int  # token offset of the match inside its document
    length: int  # tokens matched


def pattern_of(view: ShardView, ids: Sequence[int]) -> bytes:
    """The search pattern of token ids at the view's token width (big-endian bytes)."""
    return np.asarray(list(ids), dtype=view.shard.arrays.tokens.dtype).tobytes()


def locate(view: ShardView, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(documents, offsets inside them) of shard token positions."""
    starts = view.shard.arrays.doc_starts
    docs = np.searchsorted(starts, positions, side="right") - 1
    return docs, positions - starts[docs].astype(np.int64)


def occurrences(views: Sequence[ShardView], ids: Sequence[int], limit: int,
                followed_by: Callable[[int], bool] | None = None) -> tuple[list[Occurrence], int]:
    """(up to ``limit`` occurrences of ``ids``, at most one per document, the matches counted).

    ``followed_by(token)``: only matches whose next token passes count (the end of a document
    always does): ``def get`` is also the start of ``def get_text``, which a token string cannot
    tell apart.  Deterministic: documents in suffix-array order of their first match, views in
    the given order.  The count is of the rows looked at (at most ``SCAN_ROWS`` per view), dead
    documents left out; a range larger than that is counted as its size.
    """
    found: list[Occurrence] = []
    total = 0
    if not ids or limit <= 0:
        return found, total
    for v, view in enumerate(views):
        lo, hi = match_range(view.shard, pattern_of(view, ids))
        if not live_rows(view, lo, hi):
            continue
        if hi - lo > SCAN_ROWS:
            rows = lo + (np.arange(SCAN_ROWS, dtype=np.int64) * (hi - lo)) // SCAN_ROWS
        else:
            rows = np.arange(lo, hi, dtype=np.int64)
        positions = np.asarray(view.shard.arrays.sa[rows], dtype=np.int64)
        docs, offsets = locate(view, positions)
        if view.dead is not None:
            alive = ~view.dead[docs]
            docs, offsets, positions = docs[alive], offsets[alive], positions[alive]
        if followed_by is not None:
            shard = view.shard
            after = shard.arrays.tokens[np.minimum(positions + len(ids), shard.n_tokens - 1)].astype(np.int64)
            keep = np.array([t == shard.separator_id or followed_by(t) for t in after.tolist()], dtype=bool)
            docs, offsets = docs[keep], offsets[keep]
        total += (hi - lo) if hi - lo > SCAN_ROWS and followed_by is None else int(docs.shape[0])
        seen: set[int] = set()
        for doc, offset in zip(docs.tolist(), offsets.tolist()):
            if doc in seen or len(found) >= limit:
                continue
            seen.add(doc)
            found.append(Occurrence(v, doc, view.shard.paths[doc], offset, len(ids)))
    return found, total


def longest_runs(views: Sequence[ShardView], ids: Sequence[int], min_len: int, max_len: int) -> list[tuple[int, int]]:
    """The maximal runs of ``ids`` that occur in the views: (start in ``ids``, length), longest
    first, each at least ``min_len`` and at most ``max_len`` tokens.

    For every end position the longest suffix ending there that occurs (the suffix array's
    longest-match search, as retrieval runs it); a run is kept where the next position does not
    extend it.  The search at one end is bounded by the previous end's length plus one (a
    suffix that occurs implies its own shorter suffixes occur), so most ends cost a few lookups.
    """
    if not views or min_len < 1 or max_len < min_len:
        return []
    dtype = views[0].shard.arrays.tokens.dtype
    seq = np.asarray(list(ids), dtype=dtype)
    lengths = [0] * (len(seq) + 1)  # lengths[e]: longest run ending before index e (0: < min_len)
    for end in range(min_len, len(seq) + 1):
        # below min_len the previous length is unknown but smaller: this one is at most min_len
        high = min(max_len, end, max(lengths[end - 1] + 1, min_len))
        context = seq[max(0, end - max_len):end].tobytes()
        best = 0
        for view in views:
            best = max(best, longest_suffix(view, context, max(min_len, best), high))
            if best == high:
                break
        lengths[end] = best
    runs = []
    for end in range(1, len(seq) + 1):
        n = lengths[end]
        if not n:
            continue
        after = lengths[end + 1] if end < len(seq) else 0
        extended = after == n + 1 or (n == max_len and after == max_len)
        if not extended:
            runs.append((end - n, n))
    runs.sort(key=lambda r: (-r[1], -r[0]))  # longest first; nearer the end (the cursor) first
    return runs


def without_paths(view: ShardView, paths: Collection[str]) -> ShardView:
    """The view with the documents named in ``paths`` masked dead (as well as its own dead ones)."""
    shard = view.shard
    docs = [i for i, p in enumerate(shard.paths) if p in paths] if paths else []
    if not docs:
        return view
    dead = np.zeros(shard.n_docs, dtype=bool) if view.dead is None else view.dead.copy()
    dead[docs] = True
    return view.with_dead(dead)


def document_window(view: ShardView, doc: int, start: int, end: int) -> tuple[list[int], int, int]:
    """(token ids of document ``doc`` in [start, end), clamped to it, the clamped start and end)."""
    tokens = view.shard.doc_tokens(doc)
    start, end = max(0, start), min(int(tokens.shape[0]), end)
    return tokens[start:end].astype(np.int64).tolist(), start, end


def document_length(view: ShardView, doc: int) -> int:
    """Tokens in document ``doc`` (its separator not counted)."""
    starts = view.shard.arrays.doc_starts
    return int(starts[doc + 1]) - int(starts[doc]) - 1
