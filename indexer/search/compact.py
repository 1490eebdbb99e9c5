"""The compact corpus tier (CREST): frequent n-grams, each with its draft tree precomputed.

A full suffix array costs ~6 bytes per corpus token, and most of it never drafts anything.
CREST (arXiv 2408.04678) keeps only the most frequent short n-grams, each mapped to the tree of
its most frequent continuations.  Built here from a corpus index without re-tokenizing: in a
suffix array the occurrences of an n-gram are one contiguous range of rows, so its count is the
range's length and its continuations are the tokens after each row's n-gram, already sorted.

On disk (a directory written atomically, like a shard):

    keys.bin      entries sorted by key: the n-gram's tokens big-endian at the token width,
                  right-padded with 0xFF bytes to ``max_n`` tokens (0xFF..FF is never a token id)
    offsets.bin   little-endian u4 (u8 past 4 GiB), entries + 1 offsets into trees.bin
    trees.bin     per entry: u2 number of continuations k, then k x (u1 length, u4 count), then
                  the continuations' tokens (big-endian, the token width)
    manifest.msgpack  format version, tokenizer identity, source index checksum, settings,
                  counts, file sizes and checksums

Built by ``indexer.building.compact`` (``rest-lsp index compact``).  Lookup: the padded keys of the
context's last max_n, ..., 1 tokens go through one vectorised binary search of the sorted keys (a
numpy ``S`` view of the mmap); the longest kept one wins.  Its tree is read by two ``struct`` calls
straight from the mmap and its continuations come back as the datastore's candidates, source
``corpus-compact`` (the decoded trees of hot n-grams are kept).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import msgpack
import numpy as np

from indexer.search.retrieval import Candidate
from indexer.errors import IndexCorruptError, IndexVersionError, TokenizerMismatchError

FORMAT_VERSION = 1
FILES = ("keys.bin", "offsets.bin", "trees.bin")
MANIFEST = "manifest.msgpack"
SOURCE = "corpus-compact"
#: decoded trees kept in memory per open tier
TREE_CACHE = 8192


@dataclass(frozen=True)
class CompactSettings:
    """What a compact tier keeps."""

    max_n: int = 4  # longest n-gram kept
    depth: int = 10  # tokens per stored continuation
    tree_nodes: int = 64  # nodes of each stored tree (prefix-closed, heaviest first)
    max_bytes: int = 0  # budget for the whole directory (0: no budget, see top_ngrams)
    top_ngrams: int = 0  # keep at most this many n-grams (0: as many as the budget allows)
    min_count: int = 2  # an n-gram seen once drafts nothing better than the full index would
    rank: str = "count"  # "count" (CREST) or "next" (occurrences followed by the top next token)


def tree_columns(buf, start: int, end: int, width: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """One trees.bin entry at ``buf[start:end]`` as (lengths, counts, all tokens) tuples.

    Two ``struct`` reads straight from the buffer (the mmap), no copy: a tuple comes back from
    C, and slicing the tokens tuple yields each continuation's tuple with no per-node loop.
    """
    (k,) = struct.unpack_from("<H", buf, start)
    heads = _heads_struct(k).unpack_from(buf, start + 2)  # (n0, c0, n1, c1, ...)
    tokens = _tokens_struct((end - start - 2 - 5 * k) // width, width).unpack_from(buf, start + 2 + 5 * k)
    return heads[0::2], heads[1::2], tokens


def unpack_tree(blob: bytes, width: int) -> list[tuple[tuple[int, ...], int]]:
    """The (continuation, count) pairs of one trees.bin entry."""
    lengths, counts, tokens = tree_columns(blob, 0, len(blob), width)
    return list(zip(_split(tokens, lengths), counts))


@functools.lru_cache(maxsize=1024)
def _heads_struct(k: int) -> struct.Struct:
    """The reader of k packed (u1 length, u4 count) heads (cached: k is at most a few hundred)."""
    return struct.Struct("<" + "BI" * k)


@functools.lru_cache(maxsize=4096)
def _tokens_struct(count: int, width: int) -> struct.Struct:
    """The reader of ``count`` big-endian tokens (cached: ``struct``'s own cache holds 100 formats)."""
    return struct.Struct(">%d%s" % (count, "H" if width == 2 else "I"))


def _split(tokens: tuple[int, ...], lengths: Sequence[int]) -> map:
    """The consecutive slices of ``tokens`` of the given lengths (tuples, cut in C)."""
    ends = list(itertools.accumulate(lengths))
    return map(tokens.__getitem__, map(slice, [0, *ends[:-1]], ends))


# -- reading ---------------------------------------------------------------------------------

class CompactIndex:
    """A memory-mapped compact tier: ``lookup(context_ids)`` -> candidates of the longest kept n-gram."""

    def __init__(self, directory: Path, manifest: dict, buffers: dict[str, bytes]) -> None:
        self.directory = directory
        self.manifest = manifest
        self.width = int(manifest["width"])
        self.settings = CompactSettings(**manifest["settings"])
        self.entries = int(manifest["entries"])
        self.key_bytes = self.settings.max_n * self.width
        self.keys = buffers["keys.bin"]
        self.offsets = np.frombuffer(buffers["offsets.bin"], dtype=np.dtype(manifest["offset_dtype"]))
        self.trees = buffers["trees.bin"]
        self._maps = buffers
        self._key_view = np.frombuffer(self.keys, dtype=f"S{self.key_bytes}")  # no copy
        self._trees: dict[tuple, tuple[Candidate, ...]] = {}  # decoded trees of the hot n-grams


    @classmethod
    def open(cls, directory: str | os.PathLike, *, tokenizer_identity: str | None = None,
             source: str | None = None, verify: bool = True) -> "CompactIndex":
        """Open and check a compact directory (sizes and checksums; O(size) with ``verify``)."""
        import mmap

        directory = Path(directory)
        try:
            outer = msgpack.unpackb((directory / MANIFEST).read_bytes(), raw=False)
            packed = outer["body"]
            if hashlib.blake2b(packed, digest_size=16).digest() != outer["blake2b"]:
                raise ValueError("manifest checksum mismatch")
            m = msgpack.unpackb(packed, raw=False)
        except (OSError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise IndexCorruptError(f"compact index {directory}: unreadable manifest ({exc})",
                                    path=str(directory)) from exc
        if m.get("format_version") != FORMAT_VERSION:
            raise IndexVersionError(f"compact index {directory} has format version {m.get('format_version')}, "
                                    f"expected {FORMAT_VERSION}", path=str(directory),
                                    found=m.get("format_version"), expected=FORMAT_VERSION)
        if tokenizer_identity is not None and m["tokenizer"] != tokenizer_identity:
            raise TokenizerMismatchError(f"compact index {directory} was built with tokenizer {m['tokenizer'][:12]}, "
                                         f"not {tokenizer_identity[:12]}", path=str(directory),
                                         found=m["tokenizer"], expected=tokenizer_identity)
        if source is not None and m["source"] != source:
            raise IndexCorruptError(f"compact index {directory} is stale: its source index was rebuilt since",
                                    path=str(directory))
        buffers = {}
        for name in FILES:
            info = m["files"][name]
            path = directory / name
            try:
                size = path.stat().st_size
                if size != info["size"]:
                    raise IndexCorruptError(f"compact index file {path} has {size} bytes, expected {info['size']}",
                                            path=str(path))
                if size == 0:
                    buf = b""
                else:
                    with open(path, "rb") as f:
                        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as exc:
                raise IndexCorruptError(f"compact index file {path}: {exc}", path=str(path)) from exc
            if verify and hashlib.blake2b(buf, digest_size=16).digest() != info["blake2b"]:
                raise IndexCorruptError(f"compact index file {path} fails its checksum", path=str(path))
            buffers[name] = buf
        return cls(directory, m, buffers)

    @property
    def nbytes(self) -> int:
        """Bytes on disk."""
        return sum(f.stat().st_size for f in self.directory.iterdir())

    def find(self, key: bytes) -> int:
        """The entry index of a padded key, or -1."""
        return self._first_kept(key)[1]

    def lookup(self, context_ids: Sequence[int], span: int | None = None) -> tuple[list[Candidate], int]:
        """Candidates of the longest kept n-gram ending the context: (candidates, n); ([], 0) if none."""
        keys, usable = self._suffix_keys(context_ids)
        if not usable:
            return [], 0
        hit, i = self._first_kept(keys)
        if i < 0:
            return [], 0
        n = usable - hit
        return list(self._candidates(i, n, span)), n

    def _suffix_keys(self, context_ids: Sequence[int]) -> tuple[bytes, int]:
        """The padded keys of the context's last usable, usable - 1, ..., 1 tokens, joined; and usable.

        Ids the index cannot hold (negative, or 0xFF..FF and beyond) end the usable suffix.
        """
        w, max_n = self.width, self.settings.max_n
        tail = [int(t) for t in context_ids[-max_n:]]
        limit = (1 << (8 * w)) - 1
        usable = 0
        for t in reversed(tail):
            if not 0 <= t < limit:
                break
            usable += 1
        if not usable:
            return b"", 0
        packed = struct.pack(">%d%s" % (usable, "H" if w == 2 else "I"), *tail[len(tail) - usable:])
        pad = b"\xff" * (max_n * w)
        return b"".join(packed[(usable - n) * w:] + pad[:(max_n - n) * w] for n in range(usable, 0, -1)), usable

    def _first_kept(self, keys: bytes) -> tuple[int, int]:
        """The first of the joined padded keys that is kept: (its position among them, its entry).

        (-1, -1) if none is.  One vectorised binary search for all of them: the sorted
        fixed-width keys are a numpy ``S`` view of the mmap, and ``S`` compares like memcmp at
        equal widths.
        """
        if not self.entries:
            return -1, -1
        query = np.frombuffer(keys, dtype=self._key_view.dtype)
        rows = np.searchsorted(self._key_view, query)
        kept = self._key_view[np.minimum(rows, self.entries - 1)] == query
        first = int(kept.argmax())
        return (first, int(rows[first])) if kept[first] else (-1, -1)

    def _candidates(self, i: int, n: int, span: int | None) -> tuple[Candidate, ...]:
        """The candidates of entry ``i`` (kept: the same frequent n-grams come back every step)."""
        key = (i, span)
        found = self._trees.get(key)
        if found is None:
            if len(self._trees) >= TREE_CACHE:
                self._trees = {}
            found = self._decode(i, n, span)
            self._trees[key] = found
        return found

    def _decode(self, i: int, n: int, span: int | None) -> tuple[Candidate, ...]:
        """Entry ``i``'s stored tree as candidates, continuations cut to ``span`` tokens."""
        start, end = self.offsets[i:i + 2].tolist()
        lengths, counts, tokens = tree_columns(self.trees, start, end, self.width)
        continuations = _split(tokens, lengths)
        if span is not None and span < self.settings.depth:
            pairs = _cut_to_span(zip(continuations, counts), span)
            continuations, counts = [t for t, _ in pairs], [c for _, c in pairs]
        return make_candidates(tuple(continuations), counts, n)

    def stats(self) -> dict:
        """Kind, entries and bytes (JSON-ready)."""
        return {"kind": "compact", "entries": self.entries, "bytes": self.nbytes,
                "source_tokens": self.manifest.get("source_tokens", 0), "settings": dict(self.settings.__dict__)}


def make_candidates(continuations: Sequence[tuple[int, ...]], counts: Sequence[int], n: int
                    ) -> tuple[Candidate, ...]:
    """``Candidate(tokens, count, SOURCE, n)`` for each continuation, with every field set in C.

    ``Candidate`` is a frozen dataclass with slots: its generated ``__init__`` runs four Python-level
    ``object.__setattr__`` calls per object, half of a cold lookup (a tree has ~50 continuations).
    Setting the slots through their descriptors under ``map`` builds equal objects in half the
    time; a ``Candidate`` with other fields or a ``__post_init__`` falls back to its ``__init__``.
    """
    if not _slots_settable():
        return tuple(map(Candidate, continuations, counts, itertools.repeat(SOURCE), itertools.repeat(n)))
    k = len(continuations)
    made = tuple(map(object.__new__, itertools.repeat(Candidate, k)))
    for field, values in zip(_CANDIDATE_FIELDS, (continuations, counts, itertools.repeat(SOURCE, k),
                                                 itertools.repeat(n, k))):
        _exhaust(map(getattr(Candidate, field).__set__, made, values))
    return made


_CANDIDATE_FIELDS = ("tokens", "count", "source", "suffix_len")
_exhaust = collections.deque(maxlen=0).extend  # runs an iterator to its end in C


@functools.cache
def _slots_settable() -> bool:
    """Whether ``Candidate`` is exactly its four slots, so that setting them makes a whole one."""
    import dataclasses

    return (tuple(f.name for f in dataclasses.fields(Candidate)) == _CANDIDATE_FIELDS
            and getattr(Candidate, "__slots__", None) == _CANDIDATE_FIELDS
            and not hasattr(Candidate, "__post_init__"))


def _cut_to_span(pairs: Iterable[tuple[tuple[int, ...], int]], span: int) -> list[tuple[tuple[int, ...], int]]:
    """Continuations cut to ``span`` tokens, equal ones merged (counts summed)."""
    merged: dict[tuple[int, ...], int] = {}
    for tokens, count in pairs:
        key = tokens[:span]
        if key:
            merged[key] = merged.get(key, 0) + count
    return sorted(merged.items(), key=lambda kv: -kv[1])
