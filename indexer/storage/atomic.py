"""Crash-safe writes: a file or a whole directory appears complete under its final name or not at all.

Protocol: write under a temporary name in the same directory, fsync the data, rename onto the
final name, fsync the directory.  An index directory is published by writing its shard directories
this way first and swapping the top-level pointer file (``CURRENT``) last, so a crash at any
point leaves the previous pointer, and every shard it names, intact.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (renames, creations) to disk."""
    fd = os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: str | os.PathLike) -> Path:
    """A unique temporary sibling of ``final`` (same directory, so the rename is atomic)."""
    final = Path(final)
    return final.with_name(f".tmp-{final.name}-{os.getpid()}-{secrets.token_hex(4)}")


def write_file(path: str | os.PathLike, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp + fsync + rename + dir fsync)."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush one file's data to disk."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_dir(tmp_dir: str | os.PathLike, final: str | os.PathLike, *, sync: bool = True) -> None:
    """Rename a fully written temporary directory onto its final (absent) name, durably.

    Every file inside is fsynced first; the final name must not exist (shard names are unique).
    """
    tmp_dir, final = Path(tmp_dir), Path(final)
    if sync:
        for child in tmp_dir.iterdir():
            fsync_file(child)
        fsync_dir(tmp_dir)
    os.rename(tmp_dir, final)
    if sync:
        fsync_dir(final.parent)


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a directory tree, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)


def clean_temp(directory: str | os.PathLike) -> int:
    """Remove leftovers of interrupted writes (``.tmp-*``) in a directory; returns how many."""
    directory = Path(directory)
    n = 0
    if not directory.is_dir():
        return 0
    for child in directory.iterdir():
        if child.name.startswith(".tmp-"):
            if child.is_dir():
                remove_tree(child)
            else:
                child.unlink(missing_ok=True)
            n += 1
    return n
