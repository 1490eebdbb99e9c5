"""Building shards from source files: read, tokenize in batches, cut into shards, write.

Reading and tokenizing run in the calling thread (``encode_batch`` spreads each batch over every
core); each full shard's suffix array is built and written in a worker thread (libdivsufsort and
file writes release the GIL), so tokenizing the next shard overlaps indexing the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from indexer.storage import atomic
from indexer.building import sources
from indexer.storage.shard import FORMAT_VERSION, MANIFEST, Doc, Shard, build_arrays, write_shard
from indexer.tokens import ENCODE_BATCH_BYTES, ENCODE_BATCH_FILES, IndexTokenizer
from indexer.errors import DatastoreError

log = logging.getLogger(__name__)

#: progress callback: (done, total, message); total 0 when unknown
Progress = Callable[[int, int, str], None]


@dataclass
class BuildStats:
    """What a build did and how long each stage took."""

    files: int = 0
    tokens: int = 0
    bytes: int = 0
    reused: int = 0  # documents whose tokens came from the cache, not the tokenizer
    shards: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "tokenize": 0.0, "index": 0.0, "total": 0.0})
    walk: sources.WalkStats = field(default_factory=sources.WalkStats)

    def as_dict(self) -> dict:
        return {"files": self.files, "tokens": self.tokens, "bytes": self.bytes, "reused": self.reused,
                "shards": list(self.shards), "seconds": dict(self.seconds),
                "skipped": dict(self.walk.skipped)}


def content_digest(data: bytes) -> bytes:
    """The 16-byte content hash that keys the token cache."""
    return hashlib.blake2b(data, digest_size=16).digest()


def read_docs(files: Sequence[sources.SourceFile], names: Sequence[str], stats: BuildStats,
              cache: Callable[[bytes], np.ndarray | None] | None = None,
              tokenizer: IndexTokenizer | None = None) -> list[Doc]:
    """Read files, reuse cached tokens by content hash, tokenize the rest in one batch."""
    docs, todo = read_files(files, names, stats, cache)
    if tokenizer is not None:
        tokenize_docs(docs, todo, tokenizer, stats)
    return docs


def read_files(files: Sequence[sources.SourceFile], names: Sequence[str], stats: BuildStats,
               cache: Callable[[bytes], np.ndarray | None] | None = None) -> tuple[list[Doc], list[tuple[int, str]]]:
    """Read files into documents (tokens from ``cache`` by content hash, else empty); returns
    the documents and ``(index, text)`` of those still to tokenize."""
    t0 = time.perf_counter()
    docs: list[Doc] = []
    todo: list[tuple[int, str]] = []
    for f, name in zip(files, names):
        data, skip = sources.read_bytes(f.path)
        if skip is None:
            text, skip = sources.decode_text(f.path, data)
        if skip is not None:
            stats.walk.add_skip(skip)
            continue
        digest = content_digest(data)
        cached = cache(digest) if cache is not None else None
        docs.append(Doc(name, cached if cached is not None else np.zeros(0, np.int64), digest, len(data), f.mtime_ns))
        if cached is None:
            todo.append((len(docs) - 1, text))
        else:
            stats.reused += 1
        stats.bytes += len(data)
    stats.seconds["read"] += time.perf_counter() - t0
    return docs, todo


def tokenize_docs(docs: list[Doc], todo: list[tuple[int, str]], tokenizer: IndexTokenizer,
                  stats: BuildStats) -> None:
    """Fill in the tokens of ``docs[i]`` for every ``(i, text)`` of ``todo``, in one batch."""
    t0 = time.perf_counter()
    if todo:
        todo = sorted(todo, key=lambda item: -len(item[1]))  # longest first: the cores finish together
        for (i, _), ids in zip(todo, tokenizer.encode_many([t for _, t in todo])):
            docs[i].tokens = ids
    stats.seconds["tokenize"] += time.perf_counter() - t0


def write_docs(docs: Sequence[Doc], out_dir: Path, tokenizer: IndexTokenizer, tier: str, *,
               name: str | None = None, sync: bool = True, extra: dict | None = None) -> Path:
    """Index documents (suffix array, tables) and write them as one shard; returns its path."""
    arrays = build_arrays(docs, tokenizer.token_dtype, tokenizer.separator_id, tokenizer.vocab_size)
    return write_shard(out_dir, arrays, docs, tokenizer_identity=tokenizer.identity,
                       separator_id=tokenizer.separator_id, vocab_size=tokenizer.vocab_size,
                       tier=tier, name=name, sync=sync, extra=extra)


class ShardWriter:
    """Collects documents and writes a shard each time ``shard_tokens`` are reached."""

    def __init__(self, out_dir: Path, tokenizer: IndexTokenizer, tier: str, shard_tokens: int,
                 stats: BuildStats, sync: bool = True, threads: int = 1) -> None:
        self.out_dir, self.tokenizer, self.tier = out_dir, tokenizer, tier
        self.shard_tokens, self.stats, self.sync = shard_tokens, stats, sync
        self.pending: list[Doc] = []
        self.pending_tokens = 0
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shard-build")
        self.futures: list[Future] = []

    def add(self, docs: Iterable[Doc]) -> None:
        for doc in docs:
            self.pending.append(doc)
            self.pending_tokens += int(doc.tokens.shape[0]) + 1
            self.stats.files += 1
            self.stats.tokens += int(doc.tokens.shape[0])
            if self.pending_tokens >= self.shard_tokens:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        docs, self.pending, self.pending_tokens = self.pending, [], 0
        self.futures.append(self.pool.submit(self._write, docs))

    def _write(self, docs: list[Doc]) -> str:
        t0 = time.perf_counter()
        path = write_docs(docs, self.out_dir, self.tokenizer, self.tier, sync=self.sync)
        self.stats.seconds["index"] += time.perf_counter() - t0
        return path.name

    def finish(self) -> list[str]:
        """Write the last shard and wait for all; names in build order."""
        self._flush()
        try:
            names = [f.result() for f in self.futures]
        finally:
            self.pool.shutdown(wait=True)
        self.stats.shards.extend(names)
        return names


def build_from_files(files: Iterable[tuple[sources.SourceFile, str]], out_dir: Path,
                     tokenizer: IndexTokenizer, *, tier: str, shard_tokens: int,
                     stats: BuildStats | None = None, progress: Progress | None = None,
                     total_bytes: int = 0, cache=None, sync: bool = True,
                     threads: int = 1) -> BuildStats:
    """Tokenize ``(file, stored name)`` pairs into shards under ``out_dir``."""
    stats = stats or BuildStats()
    t0 = time.perf_counter()
    if cache is None:  # identical files (vendored copies, empty __init__.py) are tokenized once
        seen: dict[bytes, np.ndarray] = {}
        cache = seen.get
    else:
        seen = None
    writer = ShardWriter(out_dir, tokenizer, tier, shard_tokens, stats, sync=sync, threads=threads)
    batch: list[tuple[sources.SourceFile, str]] = []
    done_bytes = 0

    def flush_batch() -> None:
        nonlocal done_bytes
        docs = read_docs([f for f, _ in batch], [n for _, n in batch], stats, cache, tokenizer)
        if seen is not None:
            for doc in docs:
                seen.setdefault(doc.digest, doc.tokens)
        writer.add(docs)
        done_bytes += sum(f.size for f, _ in batch)
        batch.clear()
        if progress is not None:
            progress(done_bytes, total_bytes, f"{tier}: {stats.files} files, {stats.tokens:,} tokens")

    try:
        batch_bytes = 0
        for item in files:
            batch.append(item)
            batch_bytes += item[0].size
            # large batches: encode_batch waits for its slowest file, leaving cores idle
            if len(batch) >= ENCODE_BATCH_FILES or batch_bytes >= ENCODE_BATCH_BYTES:
                flush_batch()
                batch_bytes = 0
        if batch:
            flush_batch()
    finally:
        writer.finish()
    stats.seconds["total"] = time.perf_counter() - t0
    log.info("built %d %s shard(s): %d files, %d tokens in %.1f s", len(stats.shards), tier,
             stats.files, stats.tokens, stats.seconds["total"])
    return stats


def shard_key(tokenizer_identity: str, tier: str, docs: Sequence[Doc]) -> str:
    """What a shard is made of: format, tier, tokenizer and every document's name and content."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((FORMAT_VERSION, tier, tokenizer_identity, len(docs))).encode("utf-8"))
    for doc in docs:
        h.update(doc.path.encode("utf-8", "surrogateescape") + b"\0" + doc.digest)
    return h.hexdigest()


@dataclass
class ShardResult:
    """What ``build_shard`` did for one shard (plain values: it travels back from a Ray task)."""

    name: str
    files: int
    tokens: int
    bytes: int
    reused: bool
    seconds: dict[str, float]
    skipped: dict[str, int]


def build_shard(files: Sequence[tuple[sources.SourceFile, str]], out_dir: str | os.PathLike,
                tokenizer: IndexTokenizer, *, tier: str = "corpus", sync: bool = True) -> ShardResult:
    """One shard of a partitioned build: read ``(file, stored name)`` pairs, then tokenize,
    index and write them as one shard, unless ``out_dir`` already holds the shard of exactly
    these inputs (its name is their ``shard_key``), which is then reused as it is.

    This is the unit of work of the in-process partitioned build and of a Ray task alike
    (``indexer.building.partition``); it is idempotent, so a retried task finds what its first try wrote.
    """
    out_dir = Path(out_dir)
    stats = BuildStats()
    t0 = time.perf_counter()
    docs, todo = read_files([f for f, _ in files], [n for _, n in files], stats)
    key = shard_key(tokenizer.identity, tier, docs)
    name = f"{tier}-{key}"
    tokens = _reusable_tokens(out_dir / name, key, tokenizer.identity)
    reused = tokens is not None
    if not reused:
        _tokenize_unique(docs, todo, tokenizer, stats)
        t1 = time.perf_counter()
        atomic.remove_tree(out_dir / name)  # an unusable shard of the same inputs (corrupt, old format)
        write_docs(docs, out_dir, tokenizer, tier, name=name, sync=sync, extra={"inputs": key})
        stats.seconds["index"] += time.perf_counter() - t1
        tokens = sum(int(d.tokens.shape[0]) for d in docs)
    stats.seconds["total"] = time.perf_counter() - t0
    return ShardResult(name, len(docs), tokens, stats.bytes, reused, dict(stats.seconds),
                       dict(stats.walk.skipped))


def _reusable_tokens(path: Path, key: str, identity: str) -> int | None:
    """Tokens (separators excluded) of the intact shard at ``path`` built from inputs ``key``; None
    when there is none (missing, corrupt, other format or tokenizer)."""
    if not (path / MANIFEST).exists():
        return None
    try:
        shard = Shard.open(path, tokenizer_identity=identity)
    except DatastoreError as exc:
        log.warning("shard %s is unusable (%s): rebuilding it", path, exc)
        return None
    if shard.manifest.get("extra", {}).get("inputs") != key:
        return None
    return shard.n_tokens - shard.n_docs


def _tokenize_unique(docs: list[Doc], todo: list[tuple[int, str]], tokenizer: IndexTokenizer,
                     stats: BuildStats) -> None:
    """Tokenize every document of ``todo`` in batches, identical contents once."""
    first: dict[bytes, int] = {}
    unique, copies = [], []
    for i, text in todo:
        j = first.setdefault(docs[i].digest, i)
        (unique if j == i else copies).append((i, text))
    batch: list[tuple[int, str]] = []
    size = 0
    for item in unique:
        batch.append(item)
        size += len(item[1])
        if len(batch) >= ENCODE_BATCH_FILES or size >= ENCODE_BATCH_BYTES:
            tokenize_docs(docs, batch, tokenizer, stats)
            batch, size = [], 0
    tokenize_docs(docs, batch, tokenizer, stats)
    for i, _ in copies:
        docs[i].tokens = docs[first[docs[i].digest]].tokens


def docs_to_shard(docs: Sequence[Doc], tokenizer: IndexTokenizer, name: str) -> Shard:
    """An in-memory shard over documents (the workspace delta, a live buffer)."""
    return Shard.from_docs(docs, token_dtype=tokenizer.token_dtype, separator_id=tokenizer.separator_id,
                           vocab_size=tokenizer.vocab_size, name=name)
