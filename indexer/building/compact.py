"""Building the compact corpus tier (CREST) from a corpus index: count, rank, precompute trees.

See ``indexer.search.compact`` for the format and the lookup.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import msgpack
import numpy as np

from indexer.storage import atomic
from indexer.storage import indexdir
from indexer.search.compact import FILES, FORMAT_VERSION, MANIFEST, CompactSettings
from indexer.search.retrieval import count_runs, merge_prefixes
from indexer.storage.shard import Shard
from indexer.errors import IndexCorruptError

#: rows gathered at once while counting n-grams (bounds the temporary arrays)
CHUNK_ROWS = 1 << 22
#: rank "next" scores this many times the entries that can be kept, taken by count first
RANK_POOL = 4


# -- counting --------------------------------------------------------------------------------

def ngram_groups(shard: Shard, max_n: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """For n = 1..max_n: (n, group start rows, group end rows) of equal n-grams in SA order.

    Rows whose first n tokens reach a document separator (or the end) belong to no group.
    """
    sa = shard.arrays.sa
    tokens = shard.arrays.tokens
    n_rows, n_tokens, sep = sa.shape[0], shard.n_tokens, shard.separator_id
    starts: list[list[np.ndarray]] = [[] for _ in range(max_n)]
    valid: list[list[np.ndarray]] = [[] for _ in range(max_n)]
    prev = None  # the last row's first max_n tokens, (max_n, 1)
    for lo in range(0, n_rows, CHUNK_ROWS):
        pos = sa[lo:lo + CHUNK_ROWS].astype(np.int64)
        window = np.minimum(pos[None, :] + np.arange(max_n)[:, None], n_tokens - 1)  # (max_n, m)
        cols = tokens[window].astype(np.int64)
        cut = (cols == sep) | (pos[None, :] + np.arange(max_n)[:, None] >= n_tokens)
        np.logical_or.accumulate(cut, axis=0, out=cut)
        cols[cut] = -1
        both = cols if prev is None else np.concatenate([prev, cols], axis=1)
        differs = both[:, 1:] != both[:, :-1]  # (max_n, m or m-1)
        np.logical_or.accumulate(differs, axis=0, out=differs)
        for n in range(max_n):
            change = differs[n] if prev is not None else np.concatenate([[True], differs[n]])
            starts[n].append(lo + np.flatnonzero(change))
            valid[n].append(~cut[n])
        prev = cols[:, -1:]
    out = []
    for n in range(max_n):
        s = np.concatenate(starts[n]) if starts[n] else np.zeros(0, dtype=np.int64)
        ok = np.concatenate(valid[n]) if valid[n] else np.zeros(0, dtype=bool)
        e = np.append(s[1:], n_rows)
        keep = ok[s] if len(s) else np.zeros(0, dtype=bool)
        out.append((n + 1, s[keep], e[keep]))
    return out


def continuation_tree(shard: Shard, lo: int, hi: int, n: int, depth: int, tree_nodes: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored tree of the n-gram at SA rows [lo, hi): (cols (depth, k), lengths, counts).

    Every occurrence counts (no sampling); the heaviest ``tree_nodes`` nodes are kept with
    their exact weights (``merge_prefixes``, the live datastore's rule).
    """
    pos = shard.arrays.sa[lo:hi] + n
    window = np.minimum(pos[None, :] + np.arange(depth)[:, None], shard.n_tokens - 1)
    cols = shard.arrays.tokens[window].astype(np.int32)
    cut = (cols == shard.separator_id) | (pos[None, :] + np.arange(depth)[:, None] >= shard.n_tokens)
    np.logical_or.accumulate(cut, axis=0, out=cut)
    cols[cut] = -1
    lengths = depth - cut.sum(axis=0)
    cols, lengths, counts = count_runs(cols, lengths)
    return merge_prefixes(cols, lengths, counts, tree_nodes)


def pack_tree(cols: np.ndarray, lengths: np.ndarray, counts: np.ndarray, width: int) -> bytes:
    """One entry of trees.bin."""
    k = int(lengths.shape[0])
    head = struct.pack("<H", k) + b"".join(struct.pack("<BI", int(n), int(c)) for n, c in zip(lengths, counts))
    dtype = np.dtype(">u2") if width == 2 else np.dtype(">u4")
    body = b"".join(cols[: int(n), i].astype(dtype).tobytes() for i, n in enumerate(lengths))
    return head + body


# -- building --------------------------------------------------------------------------------

@dataclass
class BuildReport:
    """What ``build_compact`` did."""

    entries: int
    per_n: dict[int, int]
    bytes: int
    seconds: float
    candidates: int
    source_tokens: int


def source_checksum(index_dir: Path) -> str:
    """A hash of the source index's pointer and shard manifests (changes with any rebuild)."""
    h = hashlib.sha256()
    pointer = indexdir.read_current(index_dir)
    h.update(repr(sorted(pointer.items())).encode())
    for name in pointer.get("shards", []):
        h.update((index_dir / name / "manifest.msgpack").read_bytes())
    return h.hexdigest()


def build_compact(index_dir: str | os.PathLike, out_dir: str | os.PathLike, settings: CompactSettings,
                  tokenizer_identity: str | None = None, progress: Callable[[str], None] | None = None,
                  sync: bool = True) -> BuildReport:
    """Build a compact tier at ``out_dir`` from the corpus index at ``index_dir``."""
    t0 = time.perf_counter()
    index_dir, out_dir = Path(index_dir), Path(out_dir)
    pointer = indexdir.read_current(index_dir)
    identity = tokenizer_identity or pointer["tokenizer"]
    shards = [Shard.open(index_dir / name, tokenizer_identity=identity) for name in pointer.get("shards", [])]
    if not shards:
        raise IndexCorruptError(f"index {index_dir} has no shards to compact", path=str(index_dir))
    width = shards[0].width
    pad = settings.max_n * width
    entries, ranked = compact_entries(shards, settings, progress)
    source, source_tokens = source_checksum(index_dir), sum(s.n_tokens for s in shards)
    while True:
        final = write_compact(out_dir, entries, settings, width=width, tokenizer_identity=identity,
                              source=source, source_tokens=source_tokens, sync=sync,
                              source_dir=str(index_dir.resolve()))
        total = sum(f.stat().st_size for f in final.iterdir())
        if not settings.max_bytes or total <= settings.max_bytes or not entries:
            break
        # over by the manifest's share: drop the least frequent entries and write again
        entries = entries[: max(0, len(entries) - 1 - (total - settings.max_bytes) // (pad + 16))]
    per_n: dict[int, int] = {}
    for key, _ in entries:
        n = _key_len(key, width)
        per_n[n] = per_n.get(n, 0) + 1
    return BuildReport(len(entries), dict(sorted(per_n.items())), total, time.perf_counter() - t0, ranked,
                       source_tokens)


def compact_entries(shards: Sequence[Shard], settings: CompactSettings,
                    progress: Callable[[str], None] | None = None) -> tuple[list[tuple[bytes, bytes]], int]:
    """The kept (padded key, packed tree) entries, most frequent first, and how many qualified.

    N-grams are ranked by count ("count", CREST's rule) or by the count of their most frequent
    next token ("next"); ties: shorter first, then key order.  Entries are added in that order
    while they fit ``max_bytes`` (less a reserve for the manifest).  A multi-shard corpus
    counts each shard separately and keeps, for an n-gram, the tree of the shard where it is
    most frequent with the count summed over shards (exact for a single shard, the default).
    """
    width = shards[0].width
    say = progress or (lambda message: None)
    pad = settings.max_n * width
    # an upper bound on the entries that can be kept: every entry costs at least its key, offset
    # and tree header
    limit = settings.top_ngrams or (settings.max_bytes // (pad + 10) if settings.max_bytes else 0)
    # key -> [count summed over shards, best shard, lo, hi, n]
    found: dict[bytes, list] = {}
    for si, shard in enumerate(shards):
        say(f"counting n-grams of shard {si + 1}/{len(shards)} ({shard.n_tokens:,} tokens)")
        groups = ngram_groups(shard, settings.max_n)
        ns = np.concatenate([np.full(len(s), n) for n, s, _ in groups])
        los = np.concatenate([s for _, s, _ in groups])
        his = np.concatenate([e for _, _, e in groups])
        counts = his - los
        keep = np.flatnonzero(counts >= settings.min_count)
        order = keep[np.lexsort((los[keep], ns[keep], -counts[keep]))]  # count desc, then n, then key
        if limit:
            order = order[:limit * (RANK_POOL if settings.rank == "next" else 1)]
        for n, lo, hi in zip(ns[order].tolist(), los[order].tolist(), his[order].tolist()):
            p = int(shard.arrays.sa[lo]) * width
            key = bytes(shard.token_bytes[p:p + n * width])
            entry = found.get(key)
            if entry is None:
                found[key] = [hi - lo, si, lo, hi, n]
            else:
                entry[0] += hi - lo
                if hi - lo > entry[3] - entry[2]:
                    entry[1:4] = [si, lo, hi]
    ranked = sorted(((v[0], v[4], k) for k, v in found.items()), key=lambda t: (-t[0], t[1], t[2]))
    if settings.top_ngrams:
        ranked = ranked[: settings.top_ngrams * (RANK_POOL if settings.rank == "next" else 1)]
    say(f"{len(ranked):,} n-grams seen at least {settings.min_count} times; building trees")

    def tree_of(n: int, key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, si, lo, hi, _ = found[key]
        return continuation_tree(shards[si], lo, hi, n, settings.depth, settings.tree_nodes)

    if settings.rank == "next":
        # rank by how often the n-gram is followed by its most frequent next token (the draft
        # mass a one-token acceptance can take) rather than by how often it occurs; scored over
        # a pool of the most frequent n-grams
        pool = ranked[: (limit or len(ranked)) * RANK_POOL]
        trees = {key: tree_of(n, key) for _, n, key in pool}
        scored = [(_top_next(trees[key]), n, key) for _, n, key in pool]
        ranked = sorted(scored, key=lambda t: (-t[0], t[1], t[2]))
        if settings.top_ngrams:
            ranked = ranked[: settings.top_ngrams]
    else:
        trees = {}
    entries: list[tuple[bytes, bytes]] = []
    used, reserve = 0, 4096  # the manifest's share of the budget (checked exactly after writing)
    for _, n, key in ranked:
        tree = pack_tree(*(trees.get(key) or tree_of(n, key)), width)
        size = pad + 8 + len(tree)
        if settings.max_bytes and used + size + reserve > settings.max_bytes:
            break
        entries.append((key + b"\xff" * (pad - len(key)), tree))
        used += size
    return entries, len(found)


def _top_next(tree: tuple[np.ndarray, np.ndarray, np.ndarray]) -> int:
    """How many occurrences continue with the most frequent next token."""
    cols, _, counts = tree
    if cols.shape[1] == 0:
        return 0
    firsts = cols[0]
    return int(max(counts[firsts == t].sum() for t in np.unique(firsts)))


def _key_len(key: bytes, width: int) -> int:
    """Tokens in a padded key (padding is whole 0xFF..FF tokens)."""
    n = len(key) // width
    while n and key[(n - 1) * width:n * width] == b"\xff" * width:
        n -= 1
    return n


def write_compact(out_dir: Path, entries: Sequence[tuple[bytes, bytes]], settings: CompactSettings, *,
                  width: int, tokenizer_identity: str, source: str, source_tokens: int, sync: bool = True,
                  source_dir: str = "") -> Path:
    """Write the directory atomically (entries need not be sorted); returns its path."""
    entries = sorted(entries)
    keys = b"".join(k for k, _ in entries)
    lengths = np.fromiter((len(t) for _, t in entries), dtype=np.int64, count=len(entries))
    offsets = np.concatenate([[0], np.cumsum(lengths)]) if len(entries) else np.zeros(1, dtype=np.int64)
    off_dtype = np.dtype("<u4") if offsets[-1] < 2**32 else np.dtype("<u8")
    data = {"keys.bin": keys, "offsets.bin": offsets.astype(off_dtype).tobytes(),
            "trees.bin": b"".join(t for _, t in entries)}
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temp_name(out_dir)
    tmp.mkdir()
    try:
        files = {}
        for name in FILES:
            (tmp / name).write_bytes(data[name])
            files[name] = {"size": len(data[name]), "blake2b": hashlib.blake2b(data[name], digest_size=16).digest()}
        body = {"format_version": FORMAT_VERSION, "kind": "compact", "tokenizer": tokenizer_identity,
                "source": source, "source_dir": source_dir, "source_tokens": source_tokens, "width": width, "entries": len(entries),
                "offset_dtype": off_dtype.str, "settings": dict(settings.__dict__), "files": files,
                "created": time.time()}
        packed = msgpack.packb(body, use_bin_type=True)
        (tmp / MANIFEST).write_bytes(msgpack.packb(
            {"body": packed, "blake2b": hashlib.blake2b(packed, digest_size=16).digest()}, use_bin_type=True))
        if out_dir.exists():
            atomic.remove_tree(out_dir)
        atomic.publish_dir(tmp, out_dir, sync=sync)
    except BaseException:
        atomic.remove_tree(tmp)
        raise
    return out_dir


