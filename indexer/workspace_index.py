"""Where indexes live and how a workspace's datastore is opened, built or brought up to date.

Layout under the user cache directory (``platformdirs.user_cache_dir("rest-lsp")/index``)::

    corpus/<key>/      corpus shards + CURRENT; key = hash(corpus roots, filters, tokenizer)
                       so one corpus index is shared by every workspace that uses it
    workspaces/<key>/  workspace shards + CURRENT (which names the corpus directory);
                       key = hash(absolute workspace path)

``open_or_build`` is what the server calls: it opens what is there, rebuilds what is missing,
corrupt, of another format or of another tokenizer, and re-reads only the workspace files
whose size, mtime and then content hash changed since the last run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sysconfig
from pathlib import Path
from typing import Callable, Sequence

from indexer.building import shards as build
from indexer.building import sources
from indexer.storage import indexdir
from indexer.datastore import Datastore, split_config
from indexer.storage.shard import FORMAT_VERSION, Shard
from indexer.tokens import IndexTokenizer, coerce_tokenizer
from indexer.settings import IndexConfig
from indexer.errors import DatastoreError

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
#: directories below a default (standard library) corpus root that are not the standard library
STDLIB_EXCLUDES: tuple[str, ...] = ("site-packages/", "dist-packages/")


def cache_root() -> Path:
    """The directory every index lives under (the user cache dir)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("rest-lsp")) / "index"


def default_corpus_roots() -> list[str]:
    """The running Python's standard library."""
    return [sysconfig.get_paths()["stdlib"]]


def corpus_roots(config: IndexConfig) -> tuple[list[str], tuple[str, ...]]:
    """(absolute corpus roots, extra ignore patterns for the standard library root)."""
    if config.corpus_roots:
        return [os.path.abspath(os.path.expanduser(r)) for r in config.corpus_roots], STDLIB_EXCLUDES
    return default_corpus_roots(), STDLIB_EXCLUDES


def _is_stdlib(root: str) -> bool:
    return os.path.realpath(root) == os.path.realpath(sysconfig.get_paths()["stdlib"])


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:20]


def corpus_dir(config: IndexConfig, tokenizer: IndexTokenizer) -> Path:
    """The shared corpus index directory for these roots, filters and tokenizer."""
    roots, extra = corpus_roots(config)
    key = _key(FORMAT_VERSION, roots, extra, config.corpus_include_globs, config.ignore_globs,
               config.exclude_globs, config.secret_globs, config.max_file_bytes, tokenizer.identity)
    return cache_root() / "corpus" / key


def workspace_dir(workspace: str | os.PathLike, config: IndexConfig) -> Path:
    """The workspace's index directory (``IndexConfig.index_dir`` when set)."""
    if config.index_dir:
        return Path(os.path.expanduser(config.index_dir))
    return cache_root() / "workspaces" / _key(os.path.abspath(os.fspath(workspace)))


def _walk_roots(roots: Sequence[str], rules: sources.Rules, stats: sources.WalkStats,
                name_of: Callable[[str, str], str],
                stdlib_rules: sources.Rules | None = None) -> tuple[list[tuple[sources.SourceFile, str]], int]:
    """Every file of every root with the name it is stored under, and their total size.

    stdlib_rules: used instead of ``rules`` for the standard library root (which holds the
    interpreter's site-packages: not the standard library).
    """
    files = []
    for root in roots:
        use = stdlib_rules if stdlib_rules is not None and _is_stdlib(root) else rules
        for f in sources.walk(root, use, stats):
            files.append((f, name_of(f.path, root)))
    return files, sum(f.size for f, _ in files)


def corpus_files(config: IndexConfig, walk: sources.WalkStats) -> tuple[list[tuple[sources.SourceFile, str]], int, list[str]]:
    """Every file of the configured corpus roots (stored under its absolute path), their total
    size, and the roots."""
    roots, extra = corpus_roots(config)
    rules = sources.Rules.from_config(config, corpus=True)
    stdlib_rules = sources.Rules.from_config(config, corpus=True, extra_ignore=extra)
    files, total = _walk_roots(roots, rules, walk, lambda path, root: path, stdlib_rules)
    walk.files = len(files)
    return files, total, roots


def corpus_pointer(tokenizer: IndexTokenizer, roots: Sequence[str], shards: Sequence[str], **extra) -> dict:
    """The body of a corpus index's ``CURRENT`` pointer."""
    return {"kind": "corpus", "tokenizer": tokenizer.identity, "separator": tokenizer.separator,
            "separator_id": tokenizer.separator_id, "roots": list(roots), "shards": list(shards), **extra}


def build_corpus(config: IndexConfig, tokenizer: IndexTokenizer, out_dir: Path | None = None,
                 progress: Progress | None = None, sync: bool = True) -> build.BuildStats:
    """Build (replace) the corpus index for the configured roots; returns what it did."""
    out_dir = out_dir or corpus_dir(config, tokenizer)
    stats = build.BuildStats()
    with indexdir.build_lock(out_dir):
        files, total, roots = corpus_files(config, stats.walk)
        build.build_from_files(files, out_dir, tokenizer, tier="corpus",
                               shard_tokens=config.corpus_shard_tokens, stats=stats,
                               progress=progress, total_bytes=total, sync=sync, threads=2)
        indexdir.write_current(out_dir, corpus_pointer(tokenizer, roots, stats.shards), sync=sync)
        indexdir.collect_garbage(out_dir, set(stats.shards))
    return stats


def build_workspace(workspace: str | os.PathLike, config: IndexConfig, tokenizer: IndexTokenizer,
                    corpus: Path | None, out_dir: Path | None = None, progress: Progress | None = None,
                    sync: bool = True, cache=None) -> build.BuildStats:
    """Build (replace) a workspace's index; ``corpus`` is the corpus directory it refers to."""
    root = os.path.abspath(os.fspath(workspace))
    out_dir = out_dir or workspace_dir(root, config)
    rules = sources.Rules.from_config(config)
    stats = build.BuildStats()
    with indexdir.build_lock(out_dir):
        files, total = _walk_roots([root], rules, stats.walk, lambda path, r: sources.relpath(path, r))
        stats.walk.files = len(files)
        build.build_from_files(files, out_dir, tokenizer, tier="workspace",
                               shard_tokens=config.corpus_shard_tokens, stats=stats,
                               progress=progress, total_bytes=total, sync=sync, cache=cache)
        indexdir.write_current(out_dir, {"kind": "workspace", "tokenizer": tokenizer.identity,
                                         "separator": tokenizer.separator,
                                         "separator_id": tokenizer.separator_id, "root": root,
                                         "corpus_dir": str(corpus) if corpus else None,
                                         "shards": stats.shards}, sync=sync)
        indexdir.collect_garbage(out_dir, set(stats.shards))
    return stats


def _log_rebuild(kind: str, directory: Path, exc: DatastoreError) -> None:
    """Say why an index is (re)built: news when it is missing, a warning when it was unusable."""
    if not (directory / indexdir.POINTER).exists():
        log.info("building the %s index in %s", kind, directory)
    else:
        log.warning("%s index %s unusable (%s): rebuilding", kind, directory, exc)


def _open_corpus(config: IndexConfig, tok: IndexTokenizer, progress: Progress | None,
                 use_corpus: bool) -> Path | None:
    """The corpus directory, built first when missing or unusable; None when not wanted."""
    if not use_corpus:
        return None
    cdir = corpus_dir(config, tok)
    try:
        pointer = indexdir.read_current(cdir)
        if pointer.get("tokenizer") != tok.identity:
            raise DatastoreError("corpus tokenizer differs")
        for name in pointer.get("shards", []):
            Shard.open(cdir / name, tokenizer_identity=tok.identity)
        return cdir
    except DatastoreError as exc:
        _log_rebuild("corpus", cdir, exc)
    build_corpus(config, tok, cdir, progress)
    return cdir


def open_or_build(workspace: str | os.PathLike | None, config=None, tokenizer=None, *,
                  progress: Progress | None = None, use_corpus: bool = True,
                  watch: bool = False, rebuild: bool = False) -> Datastore:
    """The datastore for a workspace, ready to query, building whatever is missing or stale.

    workspace: the workspace root (None: corpus only).  config: a ``Config`` or ``IndexConfig``
    (and/or ``RetrievalConfig``).  tokenizer: anything ``coerce_tokenizer`` takes.
    progress(done, total, message) is called during builds (map it to LSP ``$/progress``).
    watch: start the file watcher.  rebuild: build the workspace's index again from its files
    even when it is current (the corpus index, shared by every workspace, is kept).
    """
    tok = coerce_tokenizer(tokenizer)
    index_cfg, retrieval_cfg = split_config(config)
    compact = None
    if use_corpus and index_cfg.corpus_tier == "compact":
        compact = open_compact(index_cfg.corpus_compact_dir, tok)
        use_corpus = False
    store = _open_or_build(workspace, index_cfg, retrieval_cfg, tok, progress, use_corpus, watch, rebuild)
    if compact is not None:
        store.use_compact(compact)
    if index_cfg.remote_datastores:
        store.use_remote(index_cfg.remote_datastores)
    return store


def open_compact(directory: str | os.PathLike, tok: IndexTokenizer):
    """The compact corpus tier at ``directory``, checked against its source index when that is here."""
    from indexer.search.compact import CompactIndex
    from indexer.building.compact import source_checksum

    c = CompactIndex.open(os.path.expanduser(os.fspath(directory)), tokenizer_identity=tok.identity)
    source_dir = c.manifest.get("source_dir")
    if source_dir and Path(source_dir).is_dir():
        try:
            current = source_checksum(Path(source_dir))
        except DatastoreError:
            current = None
        if current is not None and current != c.manifest["source"]:
            raise DatastoreError(f"compact index {directory} is stale: {source_dir} was rebuilt since; "
                                 "run `rest-lsp index compact` again", path=str(directory))
    return c


def _open_or_build(workspace, index_cfg: IndexConfig, retrieval_cfg, tok: IndexTokenizer,
                   progress: Progress | None, use_corpus: bool, watch: bool, rebuild: bool = False) -> Datastore:
    cdir = _open_corpus(index_cfg, tok, progress, use_corpus)
    if workspace is None:
        if cdir is None:
            return Datastore(tok, index_cfg, retrieval_cfg)
        return Datastore.open(cdir, tok, index_cfg, retrieval=retrieval_cfg)
    root = os.path.abspath(os.fspath(workspace))
    wdir = workspace_dir(root, index_cfg)
    store = None
    if rebuild:
        log.info("rebuilding the workspace index in %s, as asked", wdir)
    else:
        try:
            store = _open_workspace(wdir, root, cdir, index_cfg, retrieval_cfg, tok, progress)
        except DatastoreError as exc:
            _log_rebuild("workspace", wdir, exc)
    if store is None:
        build_workspace(root, index_cfg, tok, cdir, wdir, progress)
        store = Datastore.open(wdir, tok, index_cfg, retrieval=retrieval_cfg)
    if watch:
        store.watch()
    return store


def _open_workspace(wdir: Path, root: str, cdir: Path | None, index_cfg: IndexConfig, retrieval_cfg,
                    tok: IndexTokenizer, progress: Progress | None) -> Datastore:
    """The workspace's index as it is on disk, pointed at ``cdir`` and scanned for changed files;
    ``DatastoreError`` when it is missing, unusable or another workspace's."""
    store = Datastore.open(wdir, tok, index_cfg, retrieval=retrieval_cfg)
    pointer = store.workspace.pointer if store.workspace else {}
    if store.workspace is None or pointer.get("root") != root:
        store.close()
        raise DatastoreError(f"index {wdir} belongs to another workspace", path=str(wdir))
    wanted = str(cdir) if cdir else None
    if (pointer.get("corpus_dir") or None) != wanted:  # another corpus: point at it, keep
        with indexdir.build_lock(wdir):  # the workspace shards (their tokens still hold)
            indexdir.write_current(wdir, {**pointer, "corpus_dir": wanted})
        store.close()
        store = Datastore.open(wdir, tok, index_cfg, retrieval=retrieval_cfg)
    if progress is not None:
        progress(0, 0, "checking workspace files")
    store.workspace.scan()
    return store
