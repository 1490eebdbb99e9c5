"""Building shards from source files: read, tokenize in batches, cut into shards, write.

Reading and tokenizing run in the calling thread (``encode_batch`` spreads each batch over every
core); each full shard's suffix array is built and written in a worker thread (libdivsufsort and
file writes release the GIL), so tokenizing the next shard overlaps indexing the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from indexer import sources
from indexer.shard import Doc, Shard, build_arrays, write_shard
from indexer.tokens import ENCODE_BATCH_BYTES, ENCODE_BATCH_FILES, IndexTokenizer

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
    t1 = time.perf_counter()
    stats.seconds["read"] += t1 - t0
    if todo and tokenizer is not None:
        todo.sort(key=lambda item: -len(item[1]))  # longest first: the cores finish together
        for (i, _), ids in zip(todo, tokenizer.encode_many([t for _, t in todo])):
            docs[i].tokens = ids
    stats.seconds["tokenize"] += time.perf_counter() - t1
    return docs


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
        tok = self.tokenizer
        arrays = build_arrays(docs, tok.token_dtype, tok.separator_id, tok.vocab_size)
        path = write_shard(self.out_dir, arrays, docs, tokenizer_identity=tok.identity,
                           separator_id=tok.separator_id, vocab_size=tok.vocab_size,
                           tier=self.tier, sync=self.sync)
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


def docs_to_shard(docs: Sequence[Doc], tokenizer: IndexTokenizer, name: str) -> Shard:
    """An in-memory shard over documents (the workspace delta, a live buffer)."""
    return Shard.from_docs(docs, token_dtype=tokenizer.token_dtype, separator_id=tokenizer.separator_id,
                           vocab_size=tokenizer.vocab_size, name=name)
