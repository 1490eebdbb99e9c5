"""The workspace tier: on-disk base shard(s) plus an in-memory delta that shadows changed files.

A save does not rebuild the base: the changed file's new tokens go into a small delta shard
(rebuilt in memory, milliseconds), and its old document in the base is marked dead, so it stops
being returned at once.  Deleted files are only marked dead; renamed files reuse their tokens
through the content-hash cache.  Queries read one immutable tuple of shard views that a refresh
replaces in one assignment: they never see a half-built index.  When the delta grows past
``compact_tokens`` a background thread rebuilds the base from the cached tokens (no
re-tokenizing), writes it atomically and swaps it in; changes made meanwhile stay in the delta.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from indexer.building import shards as build
from indexer.storage import indexdir
from indexer.building import sources
from indexer.storage.shard import Doc, Shard
from indexer.search.suffix import ShardView
from indexer.tokens import IndexTokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh changed."""

    changed: int  # files (re)indexed into the delta
    removed: int  # files no longer indexed
    reused: int  # changed files whose tokens came from the cache
    seconds: float


class WorkspaceTier:
    """The workspace's shards, kept current with the files on disk."""

    def __init__(self, root: str | os.PathLike, index_dir: str | os.PathLike, base: Sequence[Shard],
                 tokenizer: IndexTokenizer, config, pointer: dict | None = None) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.index_dir = Path(index_dir)
        self.tokenizer = tokenizer
        self.config = config
        self.rules = sources.Rules.from_config(config)
        self.pointer = dict(pointer or {})
        self._lock = threading.RLock()  # serializes refreshes; queries never take it
        self._compact_lock = threading.Lock()  # one compaction at a time
        self._compactor: threading.Thread | None = None
        self._set_base(list(base))
        self.delta: dict[str, Doc] = {}
        self.removed: set[str] = set()  # base paths that no longer count
        self.views: tuple[ShardView, ...] = tuple(ShardView(s) for s in self.base)
        self.generation = 0  # bumped by every swap (tests and stats)
        self._recent: dict[bytes, np.ndarray] = {}  # tokens of delta docs removed in this refresh

    # -- state ---------------------------------------------------------------------------
    def _set_base(self, base: list[Shard]) -> None:
        self.base = base
        self._where: dict[str, tuple[int, int]] | None = None  # built on first use: opening
        self._by_digest: dict[bytes, tuple[int, int]] | None = None  # stays O(1) in documents

    @property
    def where(self) -> dict[str, tuple[int, int]]:
        """Base document of each path: path -> (shard, doc)."""
        if self._where is None:
            self._where = {path: (si, di) for si, shard in enumerate(self.base)
                           for di, path in enumerate(shard.paths)}
        return self._where

    @property
    def by_digest(self) -> dict[bytes, tuple[int, int]]:
        """Base document of each content hash (the token cache): digest -> (shard, doc)."""
        if self._by_digest is None:
            table = {}
            for si, shard in enumerate(self.base):
                digests = shard.manifest.get("digests", b"")
                for di in range(shard.n_docs):
                    table[digests[16 * di:16 * di + 16]] = (si, di)
            self._by_digest = table
        return self._by_digest

    def paths(self) -> set[str]:
        """Every document path that currently counts."""
        with self._lock:
            return (set(self.where) - self.removed) | set(self.delta)

    def _cached_tokens(self, digest: bytes) -> np.ndarray | None:
        hit = self.by_digest.get(digest)
        if hit is not None:
            return self.base[hit[0]].doc_tokens(hit[1]).astype(np.int64)
        for doc in self.delta.values():
            if doc.digest == digest:
                return doc.tokens
        return self._recent.get(digest)

    def _swap(self) -> None:
        """Publish new views: base shards with dead masks, then the delta shard."""
        views = []
        previous = {v.shard.serial: v for v in self.views}
        shadowed = [self.where[p] for p in self.removed | set(self.delta) if p in self.where]
        for si, shard in enumerate(self.base):
            dead = np.zeros(shard.n_docs, dtype=bool)
            dead[[di for sj, di in shadowed if sj == si]] = True
            old = previous.get(shard.serial)
            if old is not None and np.array_equal(dead, old.dead if old.dead is not None else dead & False):
                views.append(old)  # same mask: keep its epoch, and with it its cached results
            else:
                views.append(ShardView(shard).with_dead(dead))
        if self.delta:
            docs = [self.delta[p] for p in sorted(self.delta)]
            views.append(ShardView(build.docs_to_shard(docs, self.tokenizer, "workspace-delta")))
        self.views = tuple(views)  # one assignment: readers see old or new
        self.generation += 1

    # -- refresh -------------------------------------------------------------------------
    def refresh(self, paths: Iterable[str | os.PathLike]) -> RefreshResult:
        """Re-read the given files (or directories) and publish the result atomically."""
        t0 = time.perf_counter()
        with self._lock:
            changed = removed = reused = 0
            self._recent: dict[bytes, np.ndarray] = {}
            for path in self._expand(paths):
                outcome = self._refresh_one(path)
                changed += outcome in ("changed", "reused")
                reused += outcome == "reused"
                removed += outcome == "removed"
            self._recent = {}
            if changed or removed:
                self._swap()
                if self._delta_tokens() > self.config.compact_tokens:
                    self._compact_in_background()
        return RefreshResult(changed, removed, reused, time.perf_counter() - t0)

    def _delta_tokens(self) -> int:
        return sum(int(d.tokens.shape[0]) + 1 for d in self.delta.values())

    def _expand(self, paths: Iterable[str | os.PathLike]) -> list[str]:
        """Absolute file paths to refresh: directories become what they held and hold now."""
        out: list[str] = []
        for p in paths:
            p = os.path.abspath(os.fspath(p))
            rel = sources.relpath(p, self.root)
            is_dir = os.path.isdir(p)
            if is_dir:
                out.extend(f.path for f in sources.walk(p, sources.Rules(max_file_bytes=self.rules.max_file_bytes)))
            if is_dir or not (os.path.exists(p) or rel in self.where or rel in self.delta):
                # a directory, or a deleted one: every file known under it
                prefix = rel + "/"
                known = [k for k in (set(self.where) | set(self.delta)) if k.startswith(prefix)]
                out.extend(os.path.join(self.root, k) for k in known)
            if not is_dir:
                out.append(p)
        return list(dict.fromkeys(out))

    def _refresh_one(self, path: str) -> str:
        """Bring one file's entry up to date: "changed", "reused", "removed" or "same"."""
        rel = sources.relpath(path, self.root)
        if rel.startswith("../"):
            return "same"
        skip = sources.is_indexable(path, self.root, self.rules)
        data = text = None
        if skip is None:
            data, skip = sources.read_bytes(path)
            if skip is None:
                text, skip = sources.decode_text(path, data)
        if skip is not None:
            log.debug("workspace: %s not indexed (%s)", rel, skip.reason)
            return self._remove(rel)
        digest = build.content_digest(data)
        hit = self.where.get(rel)
        if hit is not None and self.base[hit[0]].doc_digest(hit[1]) == digest:
            was_shadowed = rel in self.delta or rel in self.removed
            self.delta.pop(rel, None)
            self.removed.discard(rel)
            return "changed" if was_shadowed else "same"
        if rel in self.delta and self.delta[rel].digest == digest:
            return "same"
        tokens = self._cached_tokens(digest)
        outcome = "reused" if tokens is not None else "changed"
        if tokens is None:
            tokens = self.tokenizer.encode_many([text])[0]
        st_mtime = _mtime_ns(path)
        self.delta[rel] = Doc(rel, tokens, digest, len(data), st_mtime)
        self.removed.discard(rel)
        return outcome

    def _remove(self, rel: str) -> str:
        gone = self.delta.pop(rel, None)
        in_delta = gone is not None
        if in_delta:  # a rename's new name may come later in the same refresh
            self._recent[gone.digest] = gone.tokens
        in_base = rel in self.where and rel not in self.removed
        if in_base:
            self.removed.add(rel)
        return "removed" if (in_delta or in_base) else "same"

    # -- startup scan and compaction -------------------------------------------------------
    def scan(self) -> RefreshResult:
        """Compare the files on disk with the index; refresh only what changed (after a restart)."""
        t0 = time.perf_counter()
        stats = sources.WalkStats()
        seen: set[str] = set()
        todo: list[str] = []
        for f in sources.walk(self.root, self.rules, stats):
            rel = sources.relpath(f.path, self.root)
            seen.add(rel)
            hit = self.where.get(rel)
            if hit is not None:
                m = self.base[hit[0]].manifest
                if m["sizes"][hit[1]] == f.size and m["mtimes"][hit[1]] == f.mtime_ns:
                    continue  # same size and mtime: trust the cached tokens without reading
            todo.append(f.path)
        gone = [os.path.join(self.root, p) for p in self.where if p not in seen]
        result = self.refresh(todo + gone) if (todo or gone) else RefreshResult(0, 0, 0, 0.0)
        log.info("workspace scan: %d files, %d re-read, %d changed, %d removed in %.2f s",
                 len(seen), len(todo), result.changed, result.removed, time.perf_counter() - t0)
        return RefreshResult(result.changed, result.removed, result.reused, time.perf_counter() - t0)

    def current_docs(self) -> list[Doc]:
        """Every document that counts now, tokens from the base or the delta (no tokenizing)."""
        docs = []
        for path in sorted(self.paths()):
            if path in self.delta:
                docs.append(self.delta[path])
                continue
            si, di = self.where[path]
            shard = self.base[si]
            m = shard.manifest
            docs.append(Doc(path, shard.doc_tokens(di), shard.doc_digest(di), m["sizes"][di], m["mtimes"][di]))
        return docs

    def compact(self, sync: bool = True) -> None:
        """Rebuild the base from every current document and publish it; the delta empties.

        Refreshes may run while the new base is built (only the snapshot and the final swap
        hold the lock): files changed after the snapshot stay in the delta, files removed after
        it are masked dead in the new base.
        """
        with self._compact_lock:
            t0 = time.perf_counter()
            with self._lock:
                docs = self.current_docs()
                snapshot = dict(self.delta)  # path -> Doc object, compared by identity below
            with indexdir.build_lock(self.index_dir):
                shard_names = write_workspace_shards(self.index_dir, docs, self.tokenizer,
                                                     self.config.corpus_shard_tokens, sync=sync)
                pointer = {**self.pointer, "shards": shard_names}
                indexdir.write_current(self.index_dir, pointer, sync=sync)
            new_base = [Shard.open(self.index_dir / n, tokenizer_identity=self.tokenizer.identity)
                        for n in shard_names]
            with self._lock:
                current = self.paths()
                built = {d.path for d in docs}
                self.pointer = pointer
                self._set_base(new_base)
                self.delta = {p: d for p, d in self.delta.items()
                              if p not in built or snapshot.get(p) is not d}
                self.removed = {p for p in built if p not in current}
                self._swap()
                indexdir.collect_garbage(self.index_dir, set(shard_names))
            log.info("workspace compacted: %d docs in %.2f s", len(docs), time.perf_counter() - t0)

    def _compact_in_background(self) -> None:
        """Start a compaction thread unless one is running."""
        thread = self._compactor
        if thread is not None and thread.is_alive():
            return
        self._compactor = threading.Thread(target=self._compact_logged, name="index-compact", daemon=True)
        self._compactor.start()

    def _compact_logged(self) -> None:
        try:
            self.compact()
        except Exception:  # the delta keeps serving; the next refresh tries again
            log.exception("workspace compaction failed")

    def wait_compaction(self, timeout: float | None = None) -> bool:
        """Wait for a running background compaction; True when none is running any more."""
        thread = self._compactor
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True


def write_workspace_shards(index_dir: Path, docs: Sequence[Doc], tokenizer: IndexTokenizer,
                           shard_tokens: int, sync: bool = True) -> list[str]:
    """Write documents (already tokenized) as workspace shards; returns their names."""
    from indexer.storage.shard import build_arrays, write_shard

    names, batch, size = [], [], 0
    for doc in list(docs) + [None]:
        if doc is not None:
            batch.append(doc)
            size += int(doc.tokens.shape[0]) + 1
        if batch and (doc is None or size >= shard_tokens):
            arrays = build_arrays(batch, tokenizer.token_dtype, tokenizer.separator_id, tokenizer.vocab_size)
            path = write_shard(index_dir, arrays, batch, tokenizer_identity=tokenizer.identity,
                               separator_id=tokenizer.separator_id, vocab_size=tokenizer.vocab_size,
                               tier="workspace", sync=sync)
            names.append(path.name)
            batch, size = [], 0
    return names


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0
