"""The index cache's entries, and which of them nothing will use again (``rest-lsp index prune``).

A corpus index is keyed by everything that shapes it (format, roots, filters, tokenizer), so a
format change, a Python upgrade (a new standard-library path) or another model's tokenizer
leaves the old one behind, ~50 MB each; a workspace index outlives its workspace.  Nothing is
ever deleted behind the user's back: ``stale_entries`` names what can go and why, and
``remove`` deletes what the user confirmed.  A pruned index is rebuilt when next needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from indexer.storage import atomic
from indexer.storage.indexdir import read_current
from indexer.errors import ReportedError

#: files a workspace index keeps beside its directory (``rest_lsp.drafting.dense``: dense and history tiers)
SIBLING_SUFFIXES = (".dense.msgpack", ".history.msgpack")


@dataclass(frozen=True, slots=True)
class StaleEntry:
    """One cache entry that nothing will use again: where, what, why, and how big."""

    path: Path
    kind: str  # "workspace" or "corpus"
    reason: str
    bytes: int


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file itself)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(folder) / name).stat().st_size
            except OSError:
                pass  # removed meanwhile
    return total


def _pointer(directory: Path) -> dict | None:
    """An index directory's pointer body, or None when it has none that can be read (being
    built for the first time, or damaged: either way not this command's to judge)."""
    try:
        return read_current(directory)
    except ReportedError:
        return None


def stale_entries(root: Path, keep: Iterable[Path] = ()) -> list[StaleEntry]:
    """What under the cache ``root`` can go: workspace indexes whose workspace no longer exists
    (with their dense and history files), then corpus indexes that neither ``keep`` (the
    current configuration's) nor any remaining workspace index names."""
    keep_corpus = {Path(p).resolve() for p in keep}
    out: list[StaleEntry] = []
    workspaces = root / "workspaces"
    for directory in sorted(workspaces.iterdir()) if workspaces.is_dir() else []:
        if not directory.is_dir():
            continue
        body = _pointer(directory)
        if body is None:
            continue
        where = body.get("root")
        if where and not Path(where).is_dir():
            reason = f"its workspace {where} no longer exists"
            out.append(StaleEntry(directory, "workspace", reason, tree_bytes(directory)))
            for suffix in SIBLING_SUFFIXES:
                sibling = directory.parent / f"{directory.name}{suffix}"
                if sibling.is_file():
                    out.append(StaleEntry(sibling, "workspace", reason, tree_bytes(sibling)))
        elif body.get("corpus_dir"):
            keep_corpus.add(Path(body["corpus_dir"]).resolve())
    corpora = root / "corpus"
    for directory in sorted(corpora.iterdir()) if corpora.is_dir() else []:
        if directory.is_dir() and directory.resolve() not in keep_corpus and _pointer(directory) is not None:
            out.append(StaleEntry(directory, "corpus", "no configuration or workspace index uses it",
                                  tree_bytes(directory)))
    return out


def remove(entries: Iterable[StaleEntry]) -> int:
    """Delete the entries; the bytes freed.  A process that still maps one of their shards
    keeps reading it (the files live until unmapped)."""
    freed = 0
    for entry in entries:
        if entry.path.is_dir():
            atomic.remove_tree(entry.path)
        else:
            entry.path.unlink(missing_ok=True)
        freed += entry.bytes
    return freed
