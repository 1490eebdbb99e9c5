"""Retrieval: continuation candidates with counts for a context, from a stack of tiers.

Modes (``retrieve(mode=...)``):

- ``"longest"``: each tier contributes the continuations of its own longest matching context
  suffix (``min_suffix``..``max_suffix``); ``Retrieval.suffix_len`` is the longest over tiers.
- ``"all_lengths"``: each tier contributes every suffix length from its longest down to
  ``min_suffix``, longest first, until it holds ``max_nodes`` candidates (DESIGN 5b: +18-21 % tau);
  each candidate carries its ``suffix_len`` so the engine can weight it.
- ``"rest_paper"``: the REST paper's rule, for benchmarks: the first suffix length from
  ``max_suffix`` down to ``min_suffix`` that matches anywhere, and in every shard the first
  ``max_candidates`` matches in suffix-array order.

Counts: the matches of one suffix are one contiguous suffix-array range, sorted by what follows
the suffix, so equal continuations are adjacent and counting them is a run-length pass.  A range
larger than ``max_candidates`` is sampled at evenly spaced rows (with a seeded offset): an
unbiased sample, never the lexicographically first rows.  Continuations stop at the document
separator (which is not part of them); empty continuations are dropped.

Prefix merging (``max_nodes``): a list of thousands of distinct continuations costs the engine
more to turn into a draft tree than it is worth.  The draft tree's node weight is the number of
continuations through the node; when the continuations of a suffix form more than ``max_nodes``
tree nodes, each continuation is cut after its last node whose weight is among the
``max_nodes`` heaviest, and equal cut continuations are merged (counts added).  Every node at or
above that weight keeps its exact weight, so a tree of up to ``max_nodes`` nodes chosen by weight
is the same as from the full list.

In "all_lengths" mode the matches of a shorter suffix include those of every longer one, so a
continuation appears once per length it was found at, each time with that length's count.
"""

from __future__ import annotations

import dataclasses
import operator
import struct
from dataclasses import dataclass

import numpy as np

from indexer.candidate import Candidate
from indexer.search.suffix import ShardView, longest_suffix, suffix_range

MODES = ("longest", "all_lengths", "rest_paper")
#: matches the "rest_paper" mode keeps per shard (the paper's first 5,000 in SA order)
REST_PAPER_MATCHES = 5000
#: results of SA ranges at least this large are cached per shard (keyed by the dead-mask epoch)
CACHE_MIN_ROWS = 256
#: cached candidates (and count pairs) per shard before its cache is emptied (~200 bytes each)
CACHE_ITEMS = 300_000
#: at most this many matches are counted in Python (no merging needed: below max_nodes)
SMALL_RANGE = 24


@dataclass
class Retrieval:
    """Everything one ``retrieve`` call found."""

    candidates: list[Candidate]
    suffix_len: int  # longest matched length over all tiers (0 = none)
    seconds: float


@dataclass(frozen=True)
class Query:
    """One retrieval request, resolved against the configuration."""

    context: bytes  # last max_suffix context tokens, big-endian at the shards' width
    usable: int  # how many trailing context tokens may be matched (stops at an id out of range)
    min_suffix: int
    max_suffix: int
    span: int
    max_candidates: int
    max_nodes: int
    offset: float  # sampling offset in [0, 1), from the seed
    mode: str


def sample_offset(seed: int) -> float:
    """The sampling offset in [0, 1) of a seed (``RetrievalConfig.sample_seed``)."""
    return ((seed * 2654435761 + 12345) % 2**32) / 2**32


def encode_context(context_ids, max_suffix: int, dtype: np.dtype, vocab_size: int) -> tuple[bytes, int]:
    """(big-endian bytes of the last max_suffix ids, how many trailing ids are valid)."""
    tail = [int(t) for t in context_ids[-max_suffix:]] if max_suffix else []
    usable = len(tail)
    for i in range(len(tail) - 1, -1, -1):
        if not 0 <= tail[i] < vocab_size:  # nothing before an out-of-vocabulary id can match
            usable = len(tail) - 1 - i
            break
    clean = [t if 0 <= t < vocab_size else 0 for t in tail]
    return np.array(clean, dtype=dtype).tobytes(), usable


def sample_rows(lo: int, hi: int, k: int, offset: float, first_k: bool) -> slice | np.ndarray:
    """Which SA rows of [lo, hi) to gather: all, the first k, or k evenly spaced."""
    n = hi - lo
    if n <= k:
        return slice(lo, hi)
    if first_k:
        return slice(lo, lo + k)
    return lo + ((np.arange(k, dtype=np.float64) + offset) * (n / k)).astype(np.int64)


def continuations(view: ShardView, lo: int, hi: int, length: int, q: Query,
                  first_k: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Continuations of the matches in SA rows [lo, hi), column-major: (cols, lengths).

    cols: (span, m) int32, column i = match i in SA order, -1 after the cut; lengths: (m,).
    (Column-major because every later step works depth by depth: each depth is then one
    contiguous row, and numpy is slow along a short last axis.)
    """
    shard = view.shard
    arrays = shard.arrays
    starts = arrays.sa[sample_rows(lo, hi, q.max_candidates, q.offset, first_k)]  # int64
    if view.dead is not None:
        docs = np.searchsorted(arrays.doc_starts, starts, side="right") - 1
        starts = starts[~view.dead[docs]]
    window = (length + np.arange(q.span, dtype=np.int64))[:, None] + starts[None, :]  # (span, m)
    np.minimum(window, shard.n_tokens - 1, out=window)  # the last token is a separator
    cols = arrays.tokens[window].astype(np.int32)
    cut = cols == shard.separator_id
    _or_down(cut)  # at or after a separator
    cols[cut] = -1
    return cols, q.span - cut.sum(axis=0)


def _or_down(mask: np.ndarray) -> None:
    """In place, mask[j] |= mask[j-1] down the rows (a row loop: ``logical_or.accumulate`` along
    axis 0 is an order of magnitude slower on these shapes)."""
    for j in range(1, mask.shape[0]):
        np.logical_or(mask[j], mask[j - 1], out=mask[j])


def count_runs(cols: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct adjacent continuations with their counts (SA order keeps equal ones adjacent).

    cols (span, m); returns (distinct cols (span, d), lengths (d,), counts (d,)), empty
    continuations dropped.
    """
    m = cols.shape[1]
    if m == 0:
        return cols, lengths, np.zeros(0, dtype=np.int64)
    differs = cols[:, 1:] != cols[:, :-1]  # (span, m-1)
    _or_down(differs)
    change = np.empty(m, dtype=bool)
    change[0] = True
    change[1:] = differs[-1]
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, m))
    keep = lengths[starts] > 0
    starts = starts[keep]
    return cols[:, starts], lengths[starts], counts[keep]


def merge_prefixes(cols: np.ndarray, lengths: np.ndarray, counts: np.ndarray,
                   max_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut sorted distinct continuations below the ``max_nodes`` heaviest tree nodes, merge equals.

    cols (span, d): distinct continuations in lexicographic order, -1 padded; lengths (d,),
    counts (d,).  Returns the same three arrays for the merged list (ordered by depth, then
    lexicographically).  Vectorised over all depths at once: a few dozen numpy calls in all.
    """
    span, d = cols.shape
    if max_nodes <= 0 or d <= max_nodes:
        return cols, lengths, counts
    # boundary[j, i]: continuation i starts a new tree node at depth j+1 (its first j+1 tokens
    # differ from the previous one's); column d is a sentinel closing each depth's last node
    boundary = np.ones((span, d + 1), dtype=bool)
    np.not_equal(cols[:, 1:], cols[:, :-1], out=boundary[:, 1:d])
    _or_down(boundary)
    flat = np.flatnonzero(boundary)  # row-major: by depth, then by start
    depth = np.repeat(np.arange(span), boundary.sum(axis=1))
    start = flat - depth * (d + 1)
    end = start[1:]  # the next boundary in the same depth (the sentinel ends each depth)
    depth, start = depth[:-1], start[:-1]
    is_node = start < d
    depth, start, end = depth[is_node], start[is_node], end[is_node]
    real = cols[depth, start] >= 0  # a run of -1 padding is no node
    depth, start, end = depth[real], start[real], end[real]
    cum = np.concatenate(([0], np.cumsum(counts)))
    weight = cum[end] - cum[start]
    if weight.size <= max_nodes:
        return cols, lengths, counts
    keep = weight >= _kth_largest(weight, max_nodes)  # prefix-closed: weights fall with depth
    depth, start, weight = depth[keep], start[keep], weight[keep]
    # continuations ending at a kept node: its weight minus its kept children's weights
    key = depth * (d + 1) + start  # sorted
    child = depth > 0
    parent = np.searchsorted(key, (depth[child] - 1) * (d + 1) + start[child], side="right") - 1
    ending = weight - np.bincount(parent, weights=weight[child], minlength=weight.size).astype(np.int64)
    stop = ending > 0
    depth, start, ending = depth[stop], start[stop], ending[stop]
    out = cols[:, start]  # (span, k) copy
    out[np.arange(span)[:, None] > depth[None, :]] = -1
    return out, depth + 1, ending


def _kth_largest(weights: np.ndarray, k: int) -> int:
    """The k-th largest of small non-negative ints, raised by one when a wide tie sits there.

    (A counting pass: ``np.partition`` degrades badly on arrays made mostly of 1s.)
    """
    at_least = np.cumsum(np.bincount(weights)[::-1])[::-1]  # at_least[w] = #(weights >= w)
    threshold = int(np.searchsorted(-at_least, -k, side="right")) - 1  # at_least falls with w
    if at_least[threshold] > 2 * k and threshold + 1 < at_least.shape[0]:
        threshold += 1  # keep the list near k instead of admitting the whole tie
    return threshold


def gather_level(views: list[ShardView], ranges: list[tuple[int, int]], length: int, q: Query,
                 first_k: bool = False, total: int | None = None,
                 n_shards: int | None = None) -> dict[tuple[int, ...], int]:
    """Counted continuations of one suffix length over a tier's shards: {tokens: count}.

    total, n_shards: the matches and shards of the whole tier when ``views`` are only some of
    its shards (a replica of a served index, ``indexer.search.fanout``): the samples are shared by them.
    """
    out: dict[tuple[int, ...], int] = {}
    total = sum(hi - lo for lo, hi in ranges) if total is None else total
    n_shards = len(ranges) if n_shards is None else n_shards
    for view, (lo, hi) in zip(views, ranges):
        if hi <= lo:
            continue
        shard_q = q
        if not first_k and total > q.max_candidates and n_shards > 1:
            # one sample per tier: each shard gets its share of max_candidates
            share = max(1, round(q.max_candidates * (hi - lo) / total))
            shard_q = dataclasses.replace(q, max_candidates=share)
        for key, c in _shard_level(view, lo, hi, length, shard_q, first_k):
            out[key] = out.get(key, 0) + c
    return out


def _shard_level(view: ShardView, lo: int, hi: int, length: int, q: Query,
                 first_k: bool) -> list[tuple[tuple[int, ...], int]]:
    """Counted continuations of SA rows [lo, hi) of one shard, cached for large ranges.

    A range of an immutable shard names one pattern, and with the view's dead-document mask
    (its epoch) one result, so it can be kept: large ranges are the frequent short suffixes,
    asked again and again, and the costly ones (thousands of rows to gather, count and merge).
    """
    cacheable = hi - lo >= CACHE_MIN_ROWS
    if cacheable:
        key = (view.epoch, lo, hi, length, q.span, q.max_candidates, q.max_nodes, first_k, q.offset)
        hit = view.shard.cache.get(key)
        if hit is not None:
            return hit
    if hi - lo <= SMALL_RANGE and view.dead is None and hi - lo <= min(q.max_candidates, q.max_nodes or hi):
        return _few_continuations(view.shard, lo, hi, length, q.span)
    cols, lengths = continuations(view, lo, hi, length, q, first_k)
    if cols.shape[1] <= min(SMALL_RANGE, q.max_nodes or SMALL_RANGE):
        # a few matches: Python counts them faster than numpy
        found: dict[tuple[int, ...], int] = {}
        for row, n in zip(cols.T.tolist(), lengths.tolist()):
            if n:
                key = tuple(row[:n])
                found[key] = found.get(key, 0) + 1
        return list(found.items())
    m = cols.shape[1]
    merged = None
    if q.max_nodes and m > q.max_nodes:  # merge the sampled rows directly (each counts 1)
        merged = merge_prefixes(cols, lengths, np.ones(m, dtype=np.int64), q.max_nodes)
        if merged[0] is cols:  # few enough tree nodes: nothing was merged
            merged = None
    cols, lengths, counts = merged if merged is not None else count_runs(cols, lengths)
    result = [(tuple(row[:n]), c) for row, n, c in zip(cols.T.tolist(), lengths.tolist(), counts.tolist())]
    if cacheable:
        _remember(view.shard, key, result)
    return result


def _remember(shard, key: tuple, value: list) -> None:
    """Keep a result in the shard's cache, emptying the cache when it holds too many items."""
    cache = shard.cache
    size = cache.get("#items", 0) + len(value) + 1
    if size > CACHE_ITEMS:  # crude but lock-free; refilled by the next frequent queries
        cache.clear()
        size = len(value) + 1
    cache[key] = value
    cache["#items"] = size


def _few_continuations(shard, lo: int, hi: int, length: int, span: int) -> list[tuple[tuple[int, ...], int]]:
    """Counted continuations of a handful of SA rows, read straight from the token bytes."""
    tok, sa, w, n, sep = shard.token_bytes, shard.arrays.sa.at, shard.width, shard.n_tokens, shard.separator_id
    code = "H" if w == 2 else "I"
    found: dict[tuple[int, ...], int] = {}
    for row in range(lo, hi):
        start = sa(row) + length
        end = min(start + span, n)
        ids = struct.unpack(f">{end - start}{code}", tok[start * w:end * w])
        if sep in ids:
            ids = ids[:ids.index(sep)]
        if ids:
            found[ids] = found.get(ids, 0) + 1
    return list(found.items())


def to_candidates(found: dict[tuple[int, ...], int], source: str, length: int) -> list[Candidate]:
    """Candidates by count, descending; ties keep their (deterministic) order of discovery."""
    items = sorted(found.items(), key=_count_of, reverse=True)
    return [Candidate(tokens, count, source, length) for tokens, count in items]


_count_of = operator.itemgetter(1)


def level_candidates(source: str, views: list[ShardView], ranges: list[tuple[int, int]], length: int,
                     q: Query, first_k: bool = False) -> list[Candidate]:
    """Candidates of one suffix length over a tier's shards.

    The finished list is cached with the ranges it came from (shard serials, dead-mask epochs,
    SA rows): a frequent suffix then costs one dictionary lookup.
    """
    hit = [(v, r) for v, r in zip(views, ranges) if r[1] > r[0]]
    if not hit:
        return []
    owner = hit[0][0].shard  # whose cache holds the result
    cacheable = sum(hi - lo for _, (lo, hi) in hit) >= CACHE_MIN_ROWS
    if cacheable:
        where = tuple((v.shard.serial, v.epoch, lo, hi) for v, (lo, hi) in hit)
        key = (source, where, length, q.span, q.max_candidates, q.max_nodes, first_k, q.offset)
        found = owner.cache.get(key)
        if found is not None:
            return found
    if len(hit) == 1:
        view, (lo, hi) = hit[0]
        found = to_candidates(dict(_shard_level(view, lo, hi, length, q, first_k)), source, length)
    else:
        found = to_candidates(gather_level(views, ranges, length, q, first_k), source, length)
    if cacheable:
        _remember(owner, key, found)
    return found


def tier_longest(views: list[ShardView], q: Query, floor: int = 0) -> int:
    """The longest matching suffix length over a tier's shards (0 = none)."""
    best = 0
    high = min(q.max_suffix, q.usable)
    for view in views:
        low = max(q.min_suffix, best)
        found = longest_suffix(view, q.context, low, high)
        if found:
            best = max(best, found)
            if best == high:
                break
    return best if best >= max(floor, q.min_suffix) else 0


def tier_candidates(source: str, views: list[ShardView], q: Query) -> tuple[list[Candidate], int]:
    """Candidates one tier contributes under ``q.mode`` (not "rest_paper"); (list, longest)."""
    longest = tier_longest(views, q)
    if not longest:
        return [], 0
    out: list[Candidate] = []
    lengths = [longest] if q.mode == "longest" else range(longest, q.min_suffix - 1, -1)
    for length in lengths:
        ranges = [suffix_range(v, q.context, length) for v in views]
        out.extend(level_candidates(source, views, ranges, length, q))
        if q.max_nodes and len(out) >= q.max_nodes:
            break
    return out, longest


def rest_paper_candidates(tiers: list[tuple[str, list[ShardView]]], q: Query) -> tuple[list[Candidate], int]:
    """The REST rule over all tiers: first matching length 16..2, first k matches in SA order."""
    high = min(q.max_suffix, q.usable)
    for length in range(high, q.min_suffix - 1, -1):
        per_tier = [(source, views, [suffix_range(v, q.context, length) for v in views])
                    for source, views in tiers]
        if not any(hi > lo for _, _, ranges in per_tier for lo, hi in ranges):
            continue
        out: list[Candidate] = []
        for source, views, ranges in per_tier:
            out.extend(level_candidates(source, views, ranges, length, q, first_k=True))
        return out, length
    return [], 0
