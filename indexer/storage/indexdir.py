"""An index directory: immutable shard directories plus the ``CURRENT`` pointer naming the live set.

``CURRENT`` is a checksummed msgpack record swapped atomically (temp + fsync + rename + dir
fsync) after every shard it names is durable, so readers see the old set or the new one, never a
mix.  Shards no pointer names (left by a crash or superseded) are removed by ``collect_garbage``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import msgpack

from indexer.storage import atomic
from indexer.errors import DatastoreError, IndexCorruptError, IndexVersionError

POINTER = "CURRENT"
#: bump when the pointer's fields change meaning
POINTER_VERSION = 1


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def write_current(directory: str | os.PathLike, body: dict, *, sync: bool = True) -> None:
    """Atomically make ``body`` (shards, tokenizer, roots ...) the index's current state."""
    body = {**body, "pointer_version": POINTER_VERSION, "written": time.time()}
    packed = msgpack.packb(body, use_bin_type=True)
    data = msgpack.packb({"body": packed, "blake2b": _digest(packed)}, use_bin_type=True)
    atomic.write_file(Path(directory) / POINTER, data, sync=sync)


def read_current(directory: str | os.PathLike) -> dict:
    """The checked body of an index's pointer; DatastoreError when there is no index."""
    path = Path(directory) / POINTER
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DatastoreError(f"no index at {directory} (no {POINTER} file)", index_dir=str(directory)) from exc
    except OSError as exc:
        raise DatastoreError(f"cannot read {path}: {exc}", index_dir=str(directory)) from exc
    try:
        outer = msgpack.unpackb(raw, raw=False)
        packed = outer["body"]
        ok = _digest(packed) == outer["blake2b"]
        body = msgpack.unpackb(packed, raw=False, strict_map_key=False) if ok else None
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise IndexCorruptError(f"{path} cannot be read: {exc}", path=str(path)) from exc
    if body is None:
        raise IndexCorruptError(f"{path} fails its checksum", path=str(path))
    if body.get("pointer_version") != POINTER_VERSION:
        raise IndexVersionError(f"{path} has pointer version {body.get('pointer_version')}, "
                                f"expected {POINTER_VERSION}", path=str(path),
                                found=body.get("pointer_version"), expected=POINTER_VERSION)
    return body


def collect_garbage(directory: str | os.PathLike, keep: set[str]) -> list[str]:
    """Delete shard directories and temporaries the pointer does not name; returns their names.

    Readers that still map a deleted shard keep working (the files live until unmapped).
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for child in directory.iterdir():
        if child.name == POINTER or child.name in keep or child.name.startswith(".lock"):
            continue
        if child.name.startswith(".tmp-") and _temp_owner_alive(child.name):
            continue
        if child.is_dir():
            atomic.remove_tree(child)
        else:
            child.unlink(missing_ok=True)
        removed.append(child.name)
    return removed


def _temp_owner_alive(name: str) -> bool:
    """Whether the process that is writing a ``.tmp-<name>-<pid>-<hex>`` entry still runs."""
    try:
        pid = int(name.rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def build_lock(directory: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on an index directory while it is built or swapped (across processes)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
