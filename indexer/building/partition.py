"""The partitioned corpus build: files cut into shards of a target size, one task per shard.

``build_corpus_sharded`` walks the corpus roots, cuts the file list into shards
(``plan_shards``), runs ``indexer.building.shards.build_shard`` once per shard (in this process, or as Ray
tasks on a cluster: ``indexer.remote.cluster``), then writes the index's ``CURRENT`` pointer naming every
shard, last, and removes what it no longer names.  A reader sees the previous index or the new
one, never a half-built one.

Shards are content-addressed: a shard's name is the hash of its inputs (tokenizer identity,
format, every file's stored name and content hash), so a re-run reuses each shard whose files
did not change, and a retried task finds what its first try published.

The cut points depend only on each file's own name and size (content-defined chunking over the
file list): a file ends a shard when the hash of its name falls below ``size / (0.75 * target)``
once the shard holds a quarter of the target, or when the shard reached twice the target.  An
edit, an insertion or a deletion therefore changes the shard around it, not every later one.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from indexer.building import shards as build
from indexer.storage import indexdir
from indexer.building import sources
from indexer.tokens import IndexTokenizer
from indexer.workspace_index import corpus_files, corpus_pointer
from indexer.settings import IndexConfig
from indexer.errors import DatastoreError

log = logging.getLogger(__name__)

#: source bytes per token assumed when a token target is turned into bytes: measured on the
#: standard library with the embedded tokenizer; fixed, so that a plan never depends on a build
BYTES_PER_TOKEN = 3.6
#: default shard target of a partitioned build (tokens); small enough to spread over workers
DEFAULT_SHARD_TOKENS = 16_000_000

FileItem = tuple[sources.SourceFile, str]
#: progress callback: (shards done, shards total, message)
Progress = Callable[[int, int, str], None]
#: runs the plan: (plans, out_dir, tokenizer, on_done(index, ShardResult)) -> None
Executor = Callable[[list[list[FileItem]], Path, IndexTokenizer, Callable[[int, build.ShardResult], None]], None]


def _name_hash(name: str) -> float:
    """A file name's hash as a number in [0, 1)."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def plan_shards(files: Sequence[FileItem], shard_tokens: int) -> list[list[FileItem]]:
    """Cut ``(file, stored name)`` pairs, in order, into shards of about ``shard_tokens`` tokens."""
    target = max(1, int(shard_tokens * BYTES_PER_TOKEN))
    low, high, spacing = target // 4, 2 * target, 0.75 * target
    plans: list[list[FileItem]] = []
    current: list[FileItem] = []
    size = 0
    for item in files:
        current.append(item)
        size += item[0].size
        anchor = _name_hash(item[1]) < item[0].size / spacing
        if size >= high or (size >= low and anchor):
            plans.append(current)
            current, size = [], 0
    if current:
        plans.append(current)
    return plans


@dataclass
class ShardedBuild:
    """What a partitioned build did."""

    shards: list[str] = field(default_factory=list)
    files: int = 0
    tokens: int = 0
    bytes: int = 0
    reused_shards: int = 0
    seconds: float = 0.0
    executor: str = "in-process"
    walk: sources.WalkStats = field(default_factory=sources.WalkStats)
    #: per shard: name, files, tokens, bytes, reused, stage seconds
    per_shard: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"shards": list(self.shards), "files": self.files, "tokens": self.tokens, "bytes": self.bytes,
                "reused_shards": self.reused_shards, "seconds": self.seconds, "executor": self.executor,
                "mtok_per_s": self.tokens / self.seconds / 1e6 if self.seconds else 0.0,
                "skipped": dict(self.walk.skipped), "per_shard": list(self.per_shard)}


def run_in_process(plans: list[list[FileItem]], out_dir: Path, tokenizer: IndexTokenizer,
                   on_done: Callable[[int, build.ShardResult], None], *, sync: bool = True) -> None:
    """Build the shards one after the other here (the tokenizer and the suffix sort use every core)."""
    for i, plan in enumerate(plans):
        try:
            result = build.build_shard(plan, out_dir, tokenizer, sync=sync)
        except Exception as exc:
            raise shard_failed(i, len(plans), plan, exc) from exc
        on_done(i, result)


def shard_failed(index: int, total: int, plan: Sequence[FileItem], reason: object) -> DatastoreError:
    """The error that stops a build when one shard cannot be built: which shard, which files, why."""
    path = getattr(reason, "path", None)
    first, last = plan[0][0].path if plan else "", plan[-1][0].path if plan else ""
    where = f"file {path}" if path else f"files {first} .. {last} ({len(plan)} files)"
    return DatastoreError(f"shard {index + 1}/{total} failed ({where}): {reason}; the previous index "
                          "is unchanged", shard=index, file=path, first=first, last=last, reason=str(reason))


def build_corpus_sharded(config: IndexConfig, tokenizer: IndexTokenizer, out_dir: str | Path, *,
                         shard_tokens: int = DEFAULT_SHARD_TOKENS, executor: Executor | None = None,
                         executor_name: str = "in-process", progress: Progress | None = None,
                         sync: bool = True) -> ShardedBuild:
    """Build (or bring up to date) the corpus index of ``config``'s roots at ``out_dir``.

    executor: runs ``build_shard`` over the plans (default: in this process; ``indexer.remote.cluster.
    ray_executor`` for a Ray cluster).  progress(done, total, message) after each shard.  Raises
    ``DatastoreError`` naming the shard and its files when one cannot be built; ``CURRENT`` then
    still names the previous index.
    """
    out_dir = Path(out_dir)
    out = ShardedBuild(executor=executor_name)
    t0 = time.perf_counter()
    with indexdir.build_lock(out_dir):
        files, _, roots = corpus_files(config, out.walk)
        plans = plan_shards(files, shard_tokens)
        results: list[build.ShardResult | None] = [None] * len(plans)
        done = 0

        def on_done(i: int, result: build.ShardResult) -> None:
            nonlocal done
            results[i] = result
            done += 1
            built = sum(r.tokens for r in results if r is not None and not r.reused)
            if progress is not None:
                rate = built / max(time.perf_counter() - t0, 1e-9) / 1e6
                progress(done, len(plans), f"corpus: {done}/{len(plans)} shards, {rate:.2f} M tokens/s")

        if progress is not None:
            progress(0, len(plans), f"corpus: 0/{len(plans)} shards")
        if executor is None:
            run_in_process(plans, out_dir, tokenizer, on_done, sync=sync)
        else:
            executor(plans, out_dir, tokenizer, on_done)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # an executor must raise instead; never publish an index with a hole
            raise shard_failed(missing[0], len(plans), plans[missing[0]], "no result came back")
        for r in results:
            out.shards.append(r.name)
            out.files += r.files
            out.tokens += r.tokens
            out.bytes += r.bytes
            out.reused_shards += r.reused
            for reason, n in r.skipped.items():
                out.walk.skipped[reason] += n
            out.per_shard.append({"name": r.name, "files": r.files, "tokens": r.tokens, "bytes": r.bytes,
                                  "reused": r.reused, "seconds": r.seconds})
        indexdir.write_current(out_dir, corpus_pointer(tokenizer, roots, out.shards,
                                                       shard_tokens=shard_tokens, built_with=executor_name),
                               sync=sync)
        indexdir.collect_garbage(out_dir, set(out.shards))
    out.seconds = time.perf_counter() - t0
    log.info("built %d corpus shard(s) (%d reused) with %s: %d files, %d tokens in %.1f s", len(out.shards),
             out.reused_shards, executor_name, out.files, out.tokens, out.seconds)
    return out
