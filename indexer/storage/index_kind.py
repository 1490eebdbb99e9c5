"""The kinds of index a folder (or URL) can hold, told apart by the markers each one leaves.

``rest-lsp index query`` and ``index stats`` read any of them:

- ``workspace``: a workspace index (``index build``): a ``CURRENT`` pointer of kind "workspace"
  over the workspace shards, naming the corpus index it drafts with;
- ``corpus``: a corpus index (``index build``, the cache's ``corpus/`` folders): a ``CURRENT``
  pointer of kind "corpus" over its shards;
- ``sharded``: a partitioned corpus index (``index build --sharded`` / ``--ray``, what
  ``datastore serve`` serves): a ``CURRENT`` pointer of kind "corpus" that names how it was built
  (``built_with``) over content-addressed shards;
- ``compact``: a compact corpus tier (``index compact --out``): ``manifest.msgpack`` beside
  ``keys.bin``, ``offsets.bin`` and ``trees.bin``, no ``CURRENT``;
- ``remote``: a served index (``datastore serve``): an ``http://`` or ``https://`` URL.

Anything else is refused with one ``DatastoreError`` that names these kinds (and what the folder
looks like instead, when it is one shard of an index or a dense index file).  Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from indexer.search import compact
from indexer.storage import indexdir
from indexer.storage import shard
from indexer.errors import DatastoreError

#: every kind, with the words an error uses for it
KINDS: dict[str, str] = {
    "workspace": "a workspace index (`index build`; a CURRENT file)",
    "corpus": "a corpus index (`index build`; a CURRENT file)",
    "sharded": "a sharded corpus index (`index build --sharded` or `--ray`; a CURRENT file)",
    "compact": "a compact corpus tier (`index compact --out`; manifest.msgpack and keys.bin)",
    "remote": "a served index (`datastore serve`; an http(s):// URL)",
}


@dataclass(frozen=True)
class IndexKind:
    """One index location and its kind; ``pointer`` is the checked ``CURRENT`` body of the kinds
    that have one (workspace, corpus, sharded)."""

    kind: str
    location: str
    pointer: dict = field(default_factory=dict)

    @property
    def full(self) -> bool:
        """Whether it is a suffix-array index with a ``CURRENT`` pointer (``Datastore.open`` reads it)."""
        return self.kind in ("workspace", "corpus", "sharded")


def is_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` names a served index rather than a folder."""
    return isinstance(location, str) and location.startswith(("http://", "https://"))


def detect(location: str | os.PathLike) -> IndexKind:
    """The kind of index at ``location``; ``DatastoreError`` naming every kind when it is none."""
    if is_url(location):
        return IndexKind("remote", str(location).rstrip("/"))
    path = Path(os.path.expanduser(os.fspath(location)))
    if (path / indexdir.POINTER).is_file():
        pointer = indexdir.read_current(path)  # checked: a corrupt pointer is its own error
        kind = pointer.get("kind")
        if kind == "workspace":
            return IndexKind("workspace", str(path), pointer)
        if kind == "corpus":
            return IndexKind("sharded" if pointer.get("built_with") else "corpus", str(path), pointer)
        raise _none_of(path, f"its {indexdir.POINTER} names an unknown kind {kind!r}")
    if (path / compact.MANIFEST).is_file() and all((path / name).is_file() for name in compact.FILES):
        return IndexKind("compact", str(path))
    raise _none_of(path, _what_it_is(path))


def _what_it_is(path: Path) -> str:
    """What a folder that holds no index holds instead (for the error)."""
    if not path.exists():
        return "no such folder"
    if path.is_file():
        if path.name.endswith(".dense.msgpack"):
            return "it is a dense index file (`index dense`): `index stats --workspace DIR` shows it"
        return "it is a file, not a folder"
    if (path / shard.MANIFEST).is_file() and (path / "tokens.bin").is_file():
        return f"it is one shard of an index: pass the folder above it ({path.parent})"
    return f"no {indexdir.POINTER} file and no compact manifest"


def _none_of(path: Path, why: str) -> DatastoreError:
    kinds = "; ".join(KINDS.values())
    return DatastoreError(f"no index at {path} ({why}); an index is one of: {kinds}",
                          index_dir=str(path), kinds=tuple(KINDS))
