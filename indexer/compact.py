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

Built by ``indexer.compact_build`` (``rest-lsp index compact``).  Lookup: the longest kept n-gram that ends the context (a binary search of the sorted keys per
length, ``memcmp`` compares); its continuations come back as the datastore's candidates, source
``corpus-compact``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import msgpack
import numpy as np

from indexer.retrieval import Candidate
from rest_lsp.errors import IndexCorruptError, IndexVersionError, TokenizerMismatchError

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


_HEAD = np.dtype([("n", "u1"), ("count", "<u4")])  # packed: 5 bytes


def unpack_tree(blob: bytes, width: int) -> list[tuple[tuple[int, ...], int]]:
    """The (continuation, count) pairs of one trees.bin entry (two numpy reads, then slicing)."""
    (k,) = struct.unpack_from("<H", blob, 0)
    heads = np.frombuffer(blob, dtype=_HEAD, count=k, offset=2)
    tokens = np.frombuffer(blob, dtype=">u2" if width == 2 else ">u4", offset=2 + 5 * k).tolist()
    out, pos = [], 0
    for n, c in zip(heads["n"].tolist(), heads["count"].tolist()):
        out.append((tuple(tokens[pos:pos + n]), c))
        pos += n
    return out


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
        keys, kb = self.keys, self.key_bytes
        lo, hi = 0, self.entries
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[mid * kb:(mid + 1) * kb] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < self.entries and keys[lo * kb:(lo + 1) * kb] == key else -1

    def lookup(self, context_ids: Sequence[int], span: int | None = None) -> tuple[list[Candidate], int]:
        """Candidates of the longest kept n-gram ending the context: (candidates, n); ([], 0) if none."""
        w, max_n = self.width, self.settings.max_n
        tail = [int(t) for t in context_ids[-max_n:]]
        limit = (1 << (8 * w)) - 1
        usable = 0
        for t in reversed(tail):  # ids the index cannot hold (or negative) end the usable suffix
            if not 0 <= t < limit:
                break
            usable += 1
        if not usable:
            return [], 0
        code = ">%d" + ("H" if w == 2 else "I")
        packed = struct.pack(code % usable, *tail[len(tail) - usable:])
        for n in range(usable, 0, -1):
            key = packed[(usable - n) * w:] + b"\xff" * ((max_n - n) * w)
            i = self.find(key)
            if i >= 0:
                return list(self._candidates(i, n, span)), n
        return [], 0

    def _candidates(self, i: int, n: int, span: int | None) -> tuple[Candidate, ...]:
        """The candidates of entry ``i`` (kept: the same frequent n-grams come back every step)."""
        key = (i, span)
        found = self._trees.get(key)
        if found is None:
            if len(self._trees) >= TREE_CACHE:
                self._trees = {}
            pairs = unpack_tree(bytes(self.trees[int(self.offsets[i]):int(self.offsets[i + 1])]), self.width)
            if span is not None and span < self.settings.depth:
                pairs = _cut_to_span(pairs, span)
            found = tuple(Candidate(tokens, count, SOURCE, n) for tokens, count in pairs)
            self._trees[key] = found
        return found

    def stats(self) -> dict:
        """Kind, entries and bytes (JSON-ready)."""
        return {"kind": "compact", "entries": self.entries, "bytes": self.nbytes,
                "source_tokens": self.manifest.get("source_tokens", 0), "settings": dict(self.settings.__dict__)}


def _cut_to_span(pairs: list[tuple[tuple[int, ...], int]], span: int) -> list[tuple[tuple[int, ...], int]]:
    """Continuations cut to ``span`` tokens, equal ones merged (counts summed)."""
    merged: dict[tuple[int, ...], int] = {}
    for tokens, count in pairs:
        key = tokens[:span]
        if key:
            merged[key] = merged.get(key, 0) + count
    return sorted(merged.items(), key=lambda kv: -kv[1])
