"""Suffix-array searches over one shard: match ranges, the longest matching context suffix.

A pattern is a ``bytes`` string of big-endian token ids (the shard's width), so every comparison
in the binary search is one slice of the memory-mapped token bytes against the pattern: a C
memcmp instead of a Python loop over ids.  The first-token table narrows each search to the rows
that start with the pattern's first token before bisecting.

A ``ShardView`` is a shard plus an optional set of dead documents (workspace files changed or
deleted since the shard was written): matches inside dead documents do not count, neither for
"does this suffix match" nor for the continuations gathered.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from indexer.storage.shard import Shard


_epochs = itertools.count(1)
#: rows of a large SA range probed for a live match before the whole range is checked
PROBE_ROWS = 32


@dataclass(frozen=True)
class ShardView:
    """A shard as one tier sees it: with the documents that no longer count masked out."""

    shard: Shard
    dead: np.ndarray | None = None  # (n_docs,) bool, True = document no longer counts
    dead_tokens: int = 0  # tokens in dead documents (an SA range larger than this has a live row)
    epoch: int = 0  # names the dead mask (0: none) in cache keys; unique per mask

    def with_dead(self, dead: np.ndarray | None) -> "ShardView":
        """The same shard with another dead-document mask."""
        if dead is None or not dead.any():
            return ShardView(self.shard)
        starts = self.shard.arrays.doc_starts.astype(np.int64)
        dead_tokens = int((np.diff(starts) * dead).sum())
        return ShardView(self.shard, dead, dead_tokens, next(_epochs))


def _first_not_below(shard: Shard, key: bytes, m: int, lo: int, hi: int) -> int:
    """First SA row in [lo, hi) whose suffix's first ``m`` bytes are not below ``key``.

    Two phases: a bisection over the plain sampled rows (every ``sample_every``-th row) narrows
    the range to one stride, then a few probes decode bit-packed rows inline (PackedInts.at
    without the call): this is the inner loop of every query.
    """
    tok, w, every, sample = shard.token_bytes, shard.width, shard.sample_every, shard.sample_view
    a, b = -(-lo // every), (hi - 1) // every + 1  # sampled rows j * every inside [lo, hi)
    a0, b0 = a, b
    while a < b:
        mid = (a + b) >> 1
        p = sample[mid] * w
        if tok[p:p + m] < key:
            a = mid + 1
        else:
            b = mid
    if a > a0:  # row (a - 1) * every is below: the answer is after it
        lo = max(lo, (a - 1) * every + 1)
    if a < b0:  # row a * every is not below: the answer is at most it
        hi = a * every
    sa, bits, mask, from_bytes = shard.sa_bytes, shard.sa_bits, shard.sa_mask, int.from_bytes
    while lo < hi:
        mid = (lo + hi) >> 1
        bit = mid * bits
        b = bit >> 3
        p = ((from_bytes(sa[b:b + 8], "little") >> (bit & 7)) & mask) * w
        if tok[p:p + m] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def lower_bound(shard: Shard, pattern: bytes, lo: int, hi: int) -> int:
    """First SA row in [lo, hi) whose suffix is >= pattern (byte order = token order)."""
    return _first_not_below(shard, pattern, len(pattern), lo, hi)


def upper_bound(shard: Shard, pattern: bytes, lo: int, hi: int) -> int:
    """First SA row in [lo, hi) whose suffix's prefix is > pattern.

    A prefix of at most len(pattern) bytes is <= pattern exactly when it is < pattern + NUL.
    """
    return _first_not_below(shard, pattern + b"\0", len(pattern), lo, hi)


def _bucket(shard: Shard, pattern: bytes) -> tuple[int, int]:
    """SA rows whose suffix starts with the pattern's first token."""
    w = shard.width
    t0 = int.from_bytes(pattern[:w], "big")
    first = shard.first_view
    if t0 + 1 >= len(first):
        return 0, 0
    return first[t0], first[t0 + 1]


def match_range(shard: Shard, pattern: bytes) -> tuple[int, int]:
    """SA rows [lo, hi) whose suffixes start with ``pattern`` (empty range when none)."""
    b0, b1 = _bucket(shard, pattern)
    if b0 >= b1:
        return b0, b0
    lo = lower_bound(shard, pattern, b0, b1)
    if lo == b1 or not _starts_with(shard, lo, pattern):
        return lo, lo
    return lo, upper_bound(shard, pattern, lo + 1, b1)


def _starts_with(shard: Shard, row: int, pattern: bytes) -> bool:
    p = shard.arrays.sa.at(row) * shard.width
    return shard.token_bytes[p:p + len(pattern)] == pattern


def live_rows(view: ShardView, lo: int, hi: int) -> bool:
    """Whether SA rows [lo, hi) hold at least one match outside the dead documents."""
    if hi <= lo:
        return False
    if view.dead is None or hi - lo > view.dead_tokens:
        return True
    arrays = view.shard.arrays
    if hi - lo > PROBE_ROWS:  # a few spread rows usually settle it without reading the range
        rows = lo + (np.arange(PROBE_ROWS) * (hi - lo)) // PROBE_ROWS
        docs = np.searchsorted(arrays.doc_starts, arrays.sa[rows], side="right") - 1
        if not view.dead[docs].all():
            return True
    docs = np.searchsorted(arrays.doc_starts, arrays.sa[lo:hi], side="right") - 1
    return not bool(view.dead[docs].all())


def suffix_range(view: ShardView, context: bytes, length: int) -> tuple[int, int]:
    """SA rows matching the last ``length`` tokens of ``context``; empty when none is live."""
    w = view.shard.width
    lo, hi = match_range(view.shard, context[len(context) - length * w:])
    return (lo, hi) if live_rows(view, lo, hi) else (lo, lo)


def _exists(view: ShardView, context: bytes, length: int) -> bool:
    """Whether the last ``length`` tokens of ``context`` occur (live) in the shard."""
    shard = view.shard
    pattern = context[len(context) - length * shard.width:]
    if view.dead is not None:
        lo, hi = match_range(shard, pattern)
        return live_rows(view, lo, hi)
    b0, b1 = _bucket(shard, pattern)
    if b0 >= b1:
        return False
    lo = lower_bound(shard, pattern, b0, b1)
    return lo < b1 and _starts_with(shard, lo, pattern)


def longest_suffix(view: ShardView, context: bytes, low: int, high: int) -> int:
    """The longest L in [low, high] whose context suffix occurs; 0 when even ``low`` does not.

    Binary search over L: a suffix that occurs implies every shorter one occurs.
    """
    if high < low or not _exists(view, context, low):
        return 0
    while low < high:
        mid = (low + high + 1) >> 1
        if _exists(view, context, mid):
            low = mid
        else:
            high = mid - 1
    return low
