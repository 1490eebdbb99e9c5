"""The datastore: corpus shards, the workspace tier and live editor buffers behind one ``retrieve``.

Opening is O(1) in the index size: shards are memory-mapped and checked by size and sampled
checksum (see ``indexer.storage.shard``).  ``open`` loads what is on disk; ``indexer.workspace_index.
open_or_build`` is the entry point that also builds missing or stale indexes and catches up with
files changed since the last run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from indexer.storage import indexdir
from indexer.building.shards import docs_to_shard
from indexer.search.retrieval import (MODES, REST_PAPER_MATCHES, Candidate, Query, Retrieval,
                               encode_context, rest_paper_candidates, sample_offset, tier_candidates)
from indexer.storage.shard import Doc, Shard
from indexer.search.suffix import ShardView
from indexer.tokens import IndexTokenizer, coerce_tokenizer
from indexer.workspace import RefreshResult, WorkspaceTier
from indexer.settings import IndexConfig, RetrievalConfig
from indexer.errors import DatastoreError

log = logging.getLogger(__name__)

#: seconds ``Datastore.close`` waits for a background compaction of the workspace tier
CLOSE_COMPACTION_WAIT_S = 60.0

__all__ = ["Candidate", "Datastore", "Retrieval", "split_config"]


def split_config(config=None, index: IndexConfig | None = None,
                 retrieval: RetrievalConfig | None = None) -> tuple[IndexConfig, RetrievalConfig]:
    """(IndexConfig, RetrievalConfig) from a whole configuration (anything with ``index`` and
    ``retrieval`` sections, such as rest-lsp's ``Config``), either section, or defaults."""
    whole = (isinstance(getattr(config, "index", None), IndexConfig)
             and isinstance(getattr(config, "retrieval", None), RetrievalConfig))
    if whole:
        index, retrieval = index or config.index, retrieval or config.retrieval
    elif isinstance(config, IndexConfig):
        index = index or config
    elif isinstance(config, RetrievalConfig):
        retrieval = retrieval or config
    elif config is not None:
        raise DatastoreError(f"unsupported config object {type(config).__name__}")
    return index or IndexConfig(), retrieval or RetrievalConfig()


class Datastore:
    """Searchable tiers (live buffers, workspace, corpus) and their upkeep."""

    def __init__(self, tokenizer: IndexTokenizer, index_config: IndexConfig,
                 retrieval_config: RetrievalConfig, corpus: Sequence[Shard] = (),
                 workspace: WorkspaceTier | None = None, index_dir: Path | None = None) -> None:
        self.tokenizer = tokenizer
        self.index_config = index_config
        self.retrieval_config = retrieval_config
        self.corpus = list(corpus)
        self.corpus_views: tuple[ShardView, ...] = tuple(ShardView(s) for s in self.corpus)
        self.workspace = workspace
        self.index_dir = index_dir
        self._live: dict[str, ShardView] = {}  # replaced, never mutated: readers need no lock
        self._live_lock = threading.Lock()
        self._watcher = None
        self.compact = None  # a CompactIndex standing in for the corpus shards (see use_compact)
        self.remotes: list = []  # indexer.remote.tier.RemoteTier: served indexes (see use_remote)
        self._offset = sample_offset(retrieval_config.sample_seed)

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, index_dir: str | os.PathLike, tokenizer, config=None, *,
             retrieval: RetrievalConfig | None = None, verify: str = "sampled") -> "Datastore":
        """Open an index directory (workspace or corpus) as it is on disk.

        tokenizer: an ``IndexTokenizer``, a tokenizer.json / model directory path, a
        ``tokenizers.Tokenizer`` or a transformers fast tokenizer; its identity must match the
        index's (``TokenizerMismatchError`` otherwise).  config: a ``Config``, ``IndexConfig`` or
        ``RetrievalConfig`` (missing sections take defaults).  Raises ``DatastoreError`` (or a
        subclass: ``IndexCorruptError``, ``IndexVersionError``) when the index cannot be used.
        """
        tok = coerce_tokenizer(tokenizer)
        index_cfg, retrieval_cfg = split_config(config, retrieval=retrieval)
        index_dir = Path(index_dir)
        pointer = indexdir.read_current(index_dir)
        _check_pointer_tokenizer(pointer, tok, index_dir)
        shards = [Shard.open(index_dir / name, tokenizer_identity=tok.identity, verify=verify)
                  for name in pointer.get("shards", [])]
        corpus: list[Shard] = []
        workspace = None
        if pointer.get("kind") == "workspace":
            corpus_dir = pointer.get("corpus_dir")
            if corpus_dir:
                corpus_pointer = indexdir.read_current(corpus_dir)
                _check_pointer_tokenizer(corpus_pointer, tok, Path(corpus_dir))
                corpus = [Shard.open(Path(corpus_dir) / n, tokenizer_identity=tok.identity, verify=verify)
                          for n in corpus_pointer.get("shards", [])]
            workspace = WorkspaceTier(pointer["root"], index_dir, shards, tok, index_cfg, pointer)
        else:
            corpus = shards
        return cls(tok, index_cfg, retrieval_cfg, corpus, workspace, index_dir)

    # -- retrieval -----------------------------------------------------------------------
    def retrieve(self, context_ids: Sequence[int], *, span: int | None = None, mode: str = "longest",
                 max_candidates: int | None = None) -> Retrieval:
        """Continuation candidates for the context from every tier (see ``indexer.search.retrieval``).

        span: tokens per continuation (default ``RetrievalConfig.span``); max_candidates: matches
        gathered per suffix and tier (default ``RetrievalConfig.max_candidates``), sampled evenly
        beyond it; in "rest_paper" mode the first ones in SA order per shard (default 5000, the
        paper's rule).
        """
        t0 = time.perf_counter()
        if mode not in MODES:
            raise DatastoreError(f"unknown retrieval mode {mode!r}; expected one of {', '.join(MODES)}",
                                 mode=mode)
        q = self.query(context_ids, span, mode, max_candidates)
        remotes = self.remotes  # started first: the network overlaps the local search
        pending = [(r, r.start(context_ids, q)) for r in remotes]
        tiers = self._tiers()
        if mode == "rest_paper":
            candidates, longest = rest_paper_candidates(tiers, q)
        else:
            candidates, longest = [], 0
            for source, views in tiers:
                if views:
                    found, length = tier_candidates(source, views, q)
                    candidates.extend(found)
                    longest = max(longest, length)
            compact = self.compact
            if compact is not None:
                found, length = compact.lookup(context_ids, q.span)
                candidates.extend(found)
                longest = max(longest, length)
        if remotes:
            deadline = t0 + self.index_config.remote_budget_ms / 1000.0
            for remote, fut in pending:
                found = remote.collect(fut, deadline)
                if found is not None:
                    candidates.extend(found.candidates)
                    longest = max(longest, found.suffix_len)
        return Retrieval(list(candidates), longest, time.perf_counter() - t0)

    def query(self, context_ids: Sequence[int], span: int | None = None, mode: str = "longest",
              max_candidates: int | None = None) -> Query:
        """The query ``retrieve`` runs for these arguments under this datastore's configuration."""
        c = self.retrieval_config
        tok = self.tokenizer
        context, usable = encode_context(context_ids, c.max_suffix, tok.token_dtype, tok.vocab_size)
        if max_candidates is None:
            max_candidates = REST_PAPER_MATCHES if mode == "rest_paper" else c.max_candidates
        return Query(context, usable, c.min_suffix, c.max_suffix, span or c.span,
                     max_candidates, c.max_nodes, self._offset, mode)

    def _tiers(self) -> list[tuple[str, list[ShardView]]]:
        """The current views of every tier, read once (each tier swaps its tuple atomically)."""
        ws = self.workspace.views if self.workspace is not None else ()
        return [("live", list(self._live.values())), ("workspace", list(ws)),
                ("corpus", list(self.corpus_views))]

    def views(self, tiers: Sequence[str] = ("live", "workspace", "corpus")) -> list[tuple[str, ShardView]]:
        """The current shard views of the named tiers, each with its tier's name (read once, as
        ``retrieve`` reads them): what ``indexer.search.occurrences`` searches."""
        return [(source, view) for source, views in self._tiers() if source in tiers for view in views]

    def use_compact(self, compact) -> None:
        """Draft from a compact corpus tier (``indexer.search.compact.CompactIndex``) instead of the corpus shards."""
        self.compact = compact
        self.corpus = []
        self.corpus_views = ()

    def use_remote(self, urls: Sequence[str]) -> None:
        """Draft from served indexes too (``rest-lsp datastore serve``), one tier per URL, each
        waited for at most ``IndexConfig.remote_budget_ms`` per step (see ``indexer.remote.tier``)."""
        from indexer.remote.tier import RemoteTier

        cfg = self.index_config
        for remote in self.remotes:
            remote.close()
        self.remotes = [RemoteTier(url, self.tokenizer.identity, budget_ms=cfg.remote_budget_ms,
                                   retry_s=cfg.remote_retry_s) for url in urls]

    # -- live buffers ----------------------------------------------------------------------
    def set_buffer(self, uri: str, ids: Sequence[int]) -> None:
        """Index an editor buffer's token ids (replaces the previous version of that buffer)."""
        tok = self.tokenizer
        arr = np.asarray(ids, dtype=np.int64)
        arr = np.where((arr >= 0) & (arr < tok.vocab_size), arr, tok.separator_id)
        shard = docs_to_shard([Doc(uri, arr)], tok, f"live:{uri}")
        with self._live_lock:
            self._live = {**self._live, uri: ShardView(shard)}

    def drop_buffer(self, uri: str) -> None:
        """Forget an editor buffer (closed, or saved and indexed by the workspace tier)."""
        with self._live_lock:
            if uri in self._live:
                self._live = {k: v for k, v in self._live.items() if k != uri}

    # -- workspace upkeep ------------------------------------------------------------------
    def notify_changed(self, paths: Iterable[str | os.PathLike]) -> RefreshResult | None:
        """Re-index changed, created, deleted or renamed files now (didSave, didChangeWatchedFiles).

        Returns when the change is visible to ``retrieve``.  Paths outside the workspace are
        ignored; None when this datastore has no workspace tier.
        """
        if self.workspace is None:
            return None
        return self.workspace.refresh(paths)

    def watch(self, debounce_ms: int | None = None):
        """Start a file watcher that refreshes the workspace tier on changes; returns it."""
        if self.workspace is None:
            raise DatastoreError("this datastore has no workspace tier to watch")
        if self._watcher is None:
            from indexer.watcher import Watcher

            ms = self.index_config.watch_debounce_ms if debounce_ms is None else debounce_ms
            self._watcher = Watcher(self.workspace, debounce_ms=ms)
            self._watcher.start()
        return self._watcher

    def close(self) -> None:
        """Stop the watcher and wait (at most ``CLOSE_COMPACTION_WAIT_S``) for a background
        compaction of the workspace tier: it writes into the index folder, which a caller may
        open again or delete once this returns (shards stay mapped until garbage-collected)."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self.workspace is not None and not self.workspace.wait_compaction(CLOSE_COMPACTION_WAIT_S):
            log.warning("closed while the workspace compaction still runs (over %.0f s)", CLOSE_COMPACTION_WAIT_S)
        for remote in self.remotes:
            remote.close()

    def __enter__(self) -> "Datastore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inspection ------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counts and sizes per tier (JSON-ready)."""
        def tier(views: Iterable[ShardView]) -> dict:
            views = list(views)
            return {
                "shards": len(views),
                "docs": sum(v.shard.n_docs - (int(v.dead.sum()) if v.dead is not None else 0) for v in views),
                "tokens": sum(v.shard.n_tokens - v.dead_tokens for v in views),
                "bytes": sum(v.shard.nbytes for v in views),
            }
        out = {
            "index_dir": str(self.index_dir) if self.index_dir else None,
            "tokenizer": {"identity": self.tokenizer.identity, "source": self.tokenizer.source,
                          "separator": self.tokenizer.separator, "separator_id": self.tokenizer.separator_id,
                          "vocab_size": self.tokenizer.vocab_size},
            "live": tier(self._live.values()),
            "workspace": tier(self.workspace.views) if self.workspace else tier(()),
            "corpus": tier(self.corpus_views),
        }
        for name in ("live", "workspace", "corpus"):
            out[name]["kind"] = "full"
        if self.compact is not None:
            out["corpus"] = self.compact.stats()
            out["corpus"].update(shards=0, docs=0, tokens=0)
        out["tiers"] = {name: out[name]["tokens"] for name in ("live", "workspace", "corpus")}
        if self.remotes:
            out["remote"] = [r.stats() for r in self.remotes]
        if self.workspace is not None:
            out["workspace"]["root"] = self.workspace.root
            out["workspace"]["delta_docs"] = len(self.workspace.delta)
        return out

    def verify(self) -> list[str]:
        """Full checksum check of every on-disk shard; returns the problems found."""
        problems = []
        shards = list(self.corpus) + (list(self.workspace.base) if self.workspace else [])
        for shard in shards:
            try:
                shard.verify()
            except DatastoreError as exc:
                problems.append(str(exc))
        return problems


def _check_pointer_tokenizer(pointer: dict, tok: IndexTokenizer, index_dir: Path) -> None:
    from indexer.errors import TokenizerMismatchError

    if pointer.get("tokenizer") != tok.identity:
        found = str(pointer.get("tokenizer"))
        raise TokenizerMismatchError(
            f"index {index_dir} was built with tokenizer {found[:12]}, not {tok.identity[:12]}",
            index_dir=str(index_dir), found=found, expected=tok.identity)
