"""A shard: an immutable token array with its suffix array, document table and manifest.

Layout of a shard directory (every array file raw, memory-mapped on open)::

    tokens.bin     n tokens, big-endian u16 (vocab <= 65,536) or u32: doc0 SEP doc1 SEP ... SEP
    sa.bin         suffix array over tokens, bit-packed: ceil(log2 n) bits per row (26 for 65 M
                   tokens; see indexer.storage.packed); suffixes that start at a separator are left out
                   (no query starts with one)
    first.bin      first.bin[t] = first SA row whose suffix starts with token t (vocab+1 rows),
                   little-endian i32 (i64 past 2**31 tokens)
    sample.bin     every SAMPLE_EVERY-th SA row, plain (first.bin's dtype): the searches bisect it
                   first, then decode only a few packed rows (1/16 byte per token)
    docs.bin       document start offsets, little-endian u32 (u64 past 2**32), n_docs + 1 rows
    manifest.msgpack   format version, tokenizer identity, counts, dtypes, per-file size and
                   BLAKE2b checksums (full and sampled), document paths / content hashes / stats

Big-endian tokens make a byte comparison of two token strings equal their id order, so searches
compare ``bytes`` slices (a C memcmp) instead of Python ints.  The suffix array is built by
libdivsufsort on those bytes (pydivsufsort's own wrapper does the same for u16/u32 input): the
byte-level order restricted to token-aligned positions is the token-level order, so aligned rows
are kept and divided by the token width.  Bit-packing the rows is what keeps a u16 shard under
6 bytes per token (2 of tokens + 3.25 of suffix array at 65 M tokens) instead of just over it.

Integrity: ``open`` costs O(1): it checks the manifest's own checksum, every file's size and a
sampled checksum (16 blocks of 4 KiB at fixed offsets).  The full checksums are computed when a
shard is written and checked by ``verify(full=True)`` (``rest-lsp index verify``).
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import mmap
import os
import secrets
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import msgpack
import numpy as np

from indexer.storage import atomic
from indexer.storage.packed import PackedInts, bits_for
from indexer.errors import IndexCorruptError, IndexVersionError, TokenizerMismatchError

#: bump when the on-disk layout changes; older shards are rebuilt
FORMAT_VERSION = 2  # 2: bit-packed suffix array
MANIFEST = "manifest.msgpack"
ARRAY_FILES = ("tokens.bin", "sa.bin", "first.bin", "docs.bin", "sample.bin")
SAMPLE_EVERY = 64
SAMPLE_BLOCKS = 16
SAMPLE_BLOCK_BYTES = 4096
_serials = itertools.count(1)


@dataclass
class Doc:
    """One document going into a shard: its name, tokens and what identifies its content."""

    path: str
    tokens: np.ndarray  # (len,) any integer dtype, no separator inside
    digest: bytes = b""  # content hash of the source bytes (16 bytes); keys the token cache
    size: int = 0
    mtime_ns: int = 0


@dataclass
class ShardArrays:
    """The arrays of a shard, in memory (a live buffer) or memory-mapped (on disk)."""

    tokens: np.ndarray  # (n,) >u2 / >u4
    sa: PackedInts  # (n - n_docs,) positions, bits_for(n) bits each
    first: np.ndarray  # (vocab + 1,) <i4 / <i8
    doc_starts: np.ndarray  # (n_docs + 1,) <u4 / <u8
    sample: np.ndarray  # (ceil(len(sa) / SAMPLE_EVERY),) sa[::SAMPLE_EVERY], first's dtype


def suffix_array(tokens: np.ndarray, separator_id: int) -> np.ndarray:
    """Suffix array of a big-endian token array, rows starting at the separator left out.

    tokens: (n,) >u2 or >u4.  Returns (n - count(separator),) int32 (int64 for huge inputs).
    """
    width = tokens.dtype.itemsize
    data = np.ascontiguousarray(tokens).view(np.uint8)
    nbytes = data.shape[0]
    if nbytes == 0:
        return np.zeros(0, dtype=np.int32)
    from pydivsufsort.dll import libdivsufsort, libdivsufsort64

    if nbytes < 2**31 - 1:
        out = np.empty(nbytes, dtype=np.int32)
        rc = libdivsufsort.divsufsort(data.ctypes.data_as(ctypes.c_void_p),
                                      out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int32(nbytes))
    else:
        out = np.empty(nbytes, dtype=np.int64)
        rc = libdivsufsort64.divsufsort64(data.ctypes.data_as(ctypes.c_void_p),
                                          out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(nbytes))
    if rc:
        raise RuntimeError(f"libdivsufsort failed with status {rc} on {nbytes} bytes")
    return _aligned_rows(out, tokens, width, separator_id)


def _aligned_rows(byte_sa: np.ndarray, tokens: np.ndarray, width: int, separator_id: int,
                  chunk: int = 1 << 22) -> np.ndarray:
    """Token positions of the aligned byte-SA rows, without the rows starting at a separator.

    The rows starting with the separator are one block of the token-level SA: after the rows
    starting with a smaller token, so they are cut by position, without reading any token.
    """
    shift = width.bit_length() - 1
    n = tokens.shape[0]
    below = int(np.count_nonzero(tokens < tokens.dtype.type(separator_id)))
    seps = int(np.count_nonzero(tokens == tokens.dtype.type(separator_id)))
    out = np.empty(n - seps, dtype=byte_sa.dtype)
    row = 0  # token-level SA rows produced so far
    filled = 0
    for start in range(0, byte_sa.shape[0], chunk):  # chunks keep the temporaries in cache
        block = byte_sa[start:start + chunk]
        pos = block[(block & (width - 1)) == 0]
        pos >>= shift
        # keep the parts of [row, row + len(pos)) outside the separator block [below, below + seps)
        a, b = row, row + pos.shape[0]
        for lo, hi in ((a, min(b, below)), (max(a, below + seps), b)):
            if hi > lo:
                out[filled:filled + hi - lo] = pos[lo - a:hi - a]
                filled += hi - lo
        row = b
    assert filled == out.shape[0], (filled, out.shape[0])
    return out


def first_table(tokens: np.ndarray, separator_id: int, vocab_size: int, dtype: np.dtype) -> np.ndarray:
    """first[t] = the first SA row whose suffix starts with token t; (vocab_size + 1,).

    The SA is sorted by first token, so first[t] = how many SA rows start with a smaller token:
    a cumulative count of the tokens (the separator's rows are not in the SA).
    """
    counts = np.bincount(tokens.astype(np.int64) if tokens.dtype.byteorder == ">" else tokens,
                         minlength=vocab_size)[:vocab_size]
    counts[separator_id] = 0
    first = np.zeros(vocab_size + 1, dtype=dtype)
    np.cumsum(counts, out=first[1:])
    return first


def build_arrays(docs: Sequence[Doc], token_dtype: np.dtype, separator_id: int,
                 vocab_size: int) -> ShardArrays:
    """Concatenate documents (each followed by the separator) and index them."""
    lengths = np.fromiter((d.tokens.shape[0] for d in docs), dtype=np.int64, count=len(docs))
    n = int(lengths.sum()) + len(docs)
    tokens = np.empty(n, dtype=token_dtype)
    starts = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=starts[1:])
    for doc, start, length in zip(docs, starts[:-1], lengths):
        tokens[start:start + length] = doc.tokens
        tokens[start + length] = separator_id
    sa = suffix_array(tokens, separator_id)
    first = first_table(tokens, separator_id, vocab_size, sa.dtype)
    doc_dtype = np.dtype("<u4") if n < 2**32 else np.dtype("<u8")
    return ShardArrays(tokens, PackedInts.from_values(sa, bits_for(n)), first, starts.astype(doc_dtype),
                       sa[::SAMPLE_EVERY].astype(first.dtype))


def _digest(data) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _sample_digest(buf, size: int) -> bytes:
    """BLAKE2b over SAMPLE_BLOCKS fixed blocks of a file (all of it when small)."""
    h = hashlib.blake2b(digest_size=16)
    if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
        h.update(buf[:size])
        return h.digest()
    step = (size - SAMPLE_BLOCK_BYTES) // (SAMPLE_BLOCKS - 1)
    for i in range(SAMPLE_BLOCKS):
        off = i * step
        h.update(buf[off:off + SAMPLE_BLOCK_BYTES])
    return h.digest()


def write_shard(directory: str | os.PathLike, arrays: ShardArrays, docs: Sequence[Doc], *,
                tokenizer_identity: str, separator_id: int, vocab_size: int, tier: str,
                name: str | None = None, sync: bool = True, extra: dict | None = None) -> Path:
    """Write a shard directory atomically under ``directory``; returns its final path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = name or f"{tier}-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}"
    final = directory / name
    tmp = atomic.temp_name(final)
    tmp.mkdir()
    try:
        files = {}
        for fname, array in zip(ARRAY_FILES, (arrays.tokens, arrays.sa.buffer, arrays.first, arrays.doc_starts,
                                              arrays.sample)):
            data = memoryview(np.ascontiguousarray(array)).cast("B")
            with open(tmp / fname, "wb") as f:
                f.write(data)
            files[fname] = {"size": data.nbytes, "blake2b": _digest(data),
                            "sample": _sample_digest(data, data.nbytes)}
        body = {
            "format_version": FORMAT_VERSION,
            "tokenizer": tokenizer_identity,
            "separator_id": separator_id,
            "vocab_size": vocab_size,
            "tier": tier,
            "token_dtype": arrays.tokens.dtype.str,
            "sa_bits": arrays.sa.bits,
            "first_dtype": arrays.first.dtype.str,
            "sample_every": SAMPLE_EVERY,
            "doc_dtype": arrays.doc_starts.dtype.str,
            "n_tokens": int(arrays.tokens.shape[0]),
            "n_suffixes": int(arrays.sa.shape[0]),
            "n_docs": len(docs),
            "files": files,
            "paths": [d.path for d in docs],
            # content hash, size and mtime key the workspace's incremental refresh; a corpus
            # shard is never refreshed, so it does not pay for them (~30 bytes per document)
            "digests": b"" if tier == "corpus" else b"".join(d.digest.ljust(16, b"\0")[:16] for d in docs),
            "sizes": [] if tier == "corpus" else [int(d.size) for d in docs],
            "mtimes": [] if tier == "corpus" else [int(d.mtime_ns) for d in docs],
            "created": time.time(),
            "extra": extra or {},
        }
        _write_manifest(tmp / MANIFEST, body)
        atomic.publish_dir(tmp, final, sync=sync)
    except BaseException:
        atomic.remove_tree(tmp)
        raise
    return final


def _write_manifest(path: Path, body: dict) -> None:
    # zlib: document paths repeat their directories; the manifest is read whole on every open
    packed = zlib.compress(msgpack.packb(body, use_bin_type=True), 6)
    with open(path, "wb") as f:
        f.write(msgpack.packb({"body": packed, "zlib": True, "blake2b": _digest(packed)}, use_bin_type=True))


def read_manifest(path: str | os.PathLike) -> dict:
    """The checked body of a manifest file; IndexCorruptError when it does not verify."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        outer = msgpack.unpackb(raw, raw=False)
        packed = outer["body"]
        if _digest(packed) != outer["blake2b"]:
            raise IndexCorruptError(f"manifest {path} fails its checksum", path=str(path))
        if outer.get("zlib"):
            packed = zlib.decompress(packed)
        return msgpack.unpackb(packed, raw=False, strict_map_key=False)
    except IndexCorruptError:
        raise
    except FileNotFoundError as exc:
        raise IndexCorruptError(f"manifest {path} is missing", path=str(path)) from exc
    except (OSError, ValueError, KeyError, TypeError, zlib.error, msgpack.UnpackException) as exc:
        raise IndexCorruptError(f"manifest {path} cannot be read: {exc}", path=str(path)) from exc


@dataclass
class Shard:
    """A searchable shard: arrays, document table and the byte views searches use."""

    arrays: ShardArrays
    paths: list[str]
    separator_id: int
    name: str = "<memory>"
    directory: Path | None = None
    manifest: dict = field(default_factory=dict)
    _maps: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        tokens = self.arrays.tokens
        self.width = tokens.dtype.itemsize
        self.n_tokens = int(tokens.shape[0])
        self.n_docs = len(self.paths)
        # byte views: slicing gives ``bytes`` (memcmp compares), indexing gives Python ints
        self.token_bytes = self._maps[0] if self._maps else tokens.tobytes()
        # the searches decode suffix-array rows inline from these (see PackedInts.at)
        sa = self.arrays.sa
        self.sa_bytes = self._maps[1] if self._maps else sa.buffer.tobytes()
        self.sa_bits, self.sa_mask = sa.bits, sa.mask
        self.first_view = _int_view(self.arrays.first)
        self.sample_view = _int_view(self.arrays.sample)
        self.sample_every = int(self.manifest.get("sample_every", SAMPLE_EVERY))
        self.cache: dict = {}  # retrieval results of large SA ranges (see indexer.search.retrieval)
        self.serial = next(_serials)  # names this object in cache keys (never reused)

    @classmethod
    def from_docs(cls, docs: Sequence[Doc], *, token_dtype: np.dtype, separator_id: int,
                  vocab_size: int, name: str = "<memory>") -> "Shard":
        """An in-memory shard (live buffers, the workspace's delta)."""
        arrays = build_arrays(docs, token_dtype, separator_id, vocab_size)
        shard = cls(arrays, [d.path for d in docs], separator_id, name=name)
        shard.manifest = {"digests": b"".join(d.digest.ljust(16, b"\0")[:16] for d in docs),
                          "sizes": [d.size for d in docs], "mtimes": [d.mtime_ns for d in docs]}
        return shard

    @classmethod
    def open(cls, directory: str | os.PathLike, *, tokenizer_identity: str | None = None,
             verify: str = "sampled") -> "Shard":
        """Memory-map a shard directory, checking manifest, sizes and (sampled) checksums.

        verify: "none", "sampled" (default, O(1)) or "full" (reads every byte).
        """
        directory = Path(directory)
        m = read_manifest(directory / MANIFEST)
        if m.get("format_version") != FORMAT_VERSION:
            raise IndexVersionError(
                f"shard {directory} has format version {m.get('format_version')}, expected {FORMAT_VERSION}",
                path=str(directory), found=m.get("format_version"), expected=FORMAT_VERSION)
        if tokenizer_identity is not None and m["tokenizer"] != tokenizer_identity:
            raise TokenizerMismatchError(
                f"shard {directory} was built with tokenizer {m['tokenizer'][:12]}, "
                f"not {tokenizer_identity[:12]}", path=str(directory),
                found=m["tokenizer"], expected=tokenizer_identity)
        maps, arrays = [], []
        dtypes = (m["token_dtype"], None, m["first_dtype"], m["doc_dtype"], m["first_dtype"])
        for fname, dtype in zip(ARRAY_FILES, dtypes):
            buf = _map_file(directory / fname, m["files"][fname], verify)
            maps.append(buf)
            if dtype is None:
                arrays.append(_packed(buf, m, directory / fname))
            else:
                arrays.append(np.frombuffer(buf, dtype=np.dtype(dtype)))
        shard = cls(ShardArrays(*arrays), list(m["paths"]), int(m["separator_id"]),
                    name=directory.name, directory=directory, manifest=m, _maps=maps)
        return shard

    def verify(self) -> None:
        """Check every file's full checksum (reads the whole shard); IndexCorruptError if bad."""
        if self.directory is None:
            return
        for fname in ARRAY_FILES:
            _map_file(self.directory / fname, self.manifest["files"][fname], "full")

    @property
    def nbytes(self) -> int:
        """Bytes on disk (array files and manifest)."""
        if self.directory is None:
            a = self.arrays
            return int(a.tokens.nbytes + a.sa.nbytes + a.first.nbytes + a.doc_starts.nbytes + a.sample.nbytes)
        return sum(f.stat().st_size for f in self.directory.iterdir())

    def doc_tokens(self, i: int) -> np.ndarray:
        """Tokens of document i (without its separator); (len,) big-endian view."""
        s = self.arrays.doc_starts
        return self.arrays.tokens[int(s[i]):int(s[i + 1]) - 1]

    def doc_digest(self, i: int) -> bytes:
        return bytes(self.manifest.get("digests", b"")[16 * i:16 * i + 16])


def _packed(buf, manifest: dict, path: Path) -> PackedInts:
    """The suffix array over its mapped file; IndexCorruptError when the sizes disagree."""
    try:
        return PackedInts(buf, int(manifest["n_suffixes"]), int(manifest["sa_bits"]))
    except ValueError as exc:
        raise IndexCorruptError(f"shard file {path}: {exc}", path=str(path)) from exc


def _int_view(array: np.ndarray) -> memoryview:
    """A memoryview of a little-endian int array whose items index as Python ints."""
    code = "q" if array.dtype.itemsize == 8 else "i"
    if array.shape[0] == 0:
        return memoryview(b"").cast(code)
    return memoryview(np.ascontiguousarray(array).view(np.uint8)).cast(code)


def _map_file(path: Path, info: dict, verify: str):
    """Memory-map one array file read-only after the checks ``verify`` asks for."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise IndexCorruptError(f"shard file {path} is missing", path=str(path)) from exc
    try:
        size = os.fstat(fd).st_size
        if size != info["size"]:
            raise IndexCorruptError(f"shard file {path} has {size} bytes, manifest says {info['size']}",
                                    path=str(path), size=size, expected=info["size"])
        if size == 0:
            return b""
        buf = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    if verify == "sampled" and _sample_digest(buf, size) != info["sample"]:
        raise IndexCorruptError(f"shard file {path} fails its sampled checksum", path=str(path))
    if verify == "full" and _digest(buf) != info["blake2b"]:
        raise IndexCorruptError(f"shard file {path} fails its checksum", path=str(path))
    return buf
