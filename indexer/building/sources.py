"""Source files: the walk over a workspace or corpus root and the rules that skip files.

A walk never raises for one bad file: every file it passes over is reported as a ``Skip`` with a
reason (logged at debug level and counted in ``WalkStats``).  Rules, in order: ``.git/`` and the
configured ignore globs, secrets, ``.gitignore`` files (nested ones too, git semantics: a deeper
file wins, an ignored directory is not entered), ``.rest-lspignore`` files (same syntax), an
include filter (corpus roots), symlink loops, anything not a regular file, size, unreadable,
vanished, binary (a NUL byte or invalid UTF-8).
"""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pathspec

from indexer.errors import SourceError

log = logging.getLogger(__name__)

#: per-directory ignore files, read in this order (the later one wins on a tie)
IGNORE_FILES: tuple[str, ...] = (".gitignore", ".rest-lspignore")


@dataclass(frozen=True)
class SourceFile:
    """A file that passed every rule: its path, size and modification time."""

    path: str  # absolute, as walked (symlinks not resolved)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skip:
    """A file or directory the walk passed over, and why."""

    path: str
    reason: str  # one of SKIP_REASONS
    detail: str = ""


#: every reason a file can be skipped for
SKIP_REASONS: tuple[str, ...] = (
    "ignored",  # ignore_globs / exclude_globs / .git
    "secret",
    "gitignore",
    "rest-lspignore",
    "not-included",
    "symlink-loop",
    "not-regular",
    "too-large",
    "unreadable",
    "vanished",
    "binary",
    "unencodable-name",  # a name that is not valid UTF-8: it cannot be stored in a manifest
)


@dataclass
class WalkStats:
    """What one walk found: files kept, bytes kept and skips by reason."""

    files: int = 0
    bytes: int = 0
    skipped: Counter = field(default_factory=Counter)

    def add_skip(self, skip: Skip) -> None:
        self.skipped[skip.reason] += 1
        log.debug("skip %s (%s%s)", skip.path, skip.reason, f": {skip.detail}" if skip.detail else "")


@dataclass(frozen=True)
class Rules:
    """The configured patterns a walk applies (gitignore-style, relative to the root)."""

    ignore: tuple[str, ...] = (".git/",)
    secrets: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # empty: every file
    max_file_bytes: int = 1_000_000

    @classmethod
    def from_config(cls, config, *, corpus: bool = False, extra_ignore: Sequence[str] = ()) -> "Rules":
        """Rules from an ``IndexConfig``; corpus roots also apply ``corpus_include_globs``."""
        return cls(
            ignore=(".git/", *config.ignore_globs, *config.exclude_globs, *extra_ignore),
            secrets=tuple(config.secret_globs),
            include=tuple(config.corpus_include_globs) if corpus else (),
            max_file_bytes=config.max_file_bytes,
        )


class _Specs:
    """Compiled root-level specs plus the stack of per-directory ignore files."""

    def __init__(self, rules: Rules) -> None:
        self.ignore = pathspec.GitIgnoreSpec.from_lines(rules.ignore)
        self.secrets = pathspec.GitIgnoreSpec.from_lines(rules.secrets)
        self.include = pathspec.GitIgnoreSpec.from_lines(rules.include) if rules.include else None


def _read_ignore_file(path: str) -> pathspec.GitIgnoreSpec | None:
    """The spec of one ignore file, or None when it is absent or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


#: (directory relative to the root with a trailing slash or "", reason, spec)
_Layer = tuple[str, str, pathspec.GitIgnoreSpec]


def _with_ignore_files(layers: tuple[_Layer, ...], dir_abs: str, dir_rel: str) -> tuple[_Layer, ...]:
    """``layers`` plus the ignore files found in ``dir_abs`` (stored as ``dir_rel``)."""
    for name in IGNORE_FILES:
        spec = _read_ignore_file(os.path.join(dir_abs, name))
        if spec is not None:
            layers = (*layers, (dir_rel, name.lstrip("."), spec))
    return layers


def _layered_verdict(layers: Sequence[_Layer], rel: str) -> str | None:
    """The reason a nested ignore file ignores ``rel`` (deepest decision wins), else None."""
    verdict: str | None = None
    for base, reason, spec in layers:
        if base and not rel.startswith(base):
            continue
        result = spec.check_file(rel[len(base):])
        if result.include is not None:
            verdict = reason if result.include else None
    return verdict


def _rule_verdict(specs: _Specs, layers: Sequence[_Layer], rel: str) -> str | None:
    """Why ``rel`` (a path relative to the root, dirs end in "/") is skipped by a pattern."""
    if specs.ignore.match_file(rel):
        return "ignored"
    if specs.secrets.match_file(rel):
        return "secret"
    return _layered_verdict(layers, rel)


def walk(root: str | os.PathLike, rules: Rules, stats: WalkStats | None = None,
         skips: list[Skip] | None = None) -> Iterator[SourceFile]:
    """Every indexable file under ``root``, depth first in sorted order.

    Raises ``SourceError`` only when the root itself cannot be walked.
    """
    stats = stats if stats is not None else WalkStats()
    root = os.path.abspath(os.fspath(root))
    try:
        root_stat = os.stat(root)
    except OSError as exc:
        raise SourceError(f"cannot walk source root {root}: {exc}", root=root) from exc
    if not stat.S_ISDIR(root_stat.st_mode):
        raise SourceError(f"source root {root} is not a directory", root=root)
    specs = _Specs(rules)

    def skip(path: str, reason: str, detail: str = "") -> None:
        s = Skip(path, reason, detail)
        stats.add_skip(s)
        if skips is not None:
            skips.append(s)

    visited: set[tuple[int, int]] = {(root_stat.st_dev, root_stat.st_ino)}
    # each stack entry: (absolute dir, relative dir with trailing "/" or "", ignore layers)
    stack: list[tuple[str, str, tuple[_Layer, ...]]] = [(root, "", ())]
    while stack:
        dir_abs, dir_rel, layers = stack.pop()
        layers = _with_ignore_files(layers, dir_abs, dir_rel)
        try:
            with os.scandir(dir_abs) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError as exc:
            skip(dir_abs, "vanished", str(exc))
            continue
        except OSError as exc:
            skip(dir_abs, "unreadable", str(exc))
            continue
        subdirs = []
        for entry in entries:
            rel = dir_rel + entry.name
            item = _classify(entry, rel, specs, layers, rules, visited)
            if isinstance(item, Skip):
                skip(item.path, item.reason, item.detail)
            elif isinstance(item, SourceFile):
                stats.files += 1
                stats.bytes += item.size
                yield item
            else:
                subdirs.append((entry.path, rel + "/", layers))
        stack.extend(reversed(subdirs))


def watch_plan(root: str | os.PathLike, rules: Rules) -> tuple[list[str], list[str]]:
    """Where a file watcher should listen: (directories watched alone, subtrees watched whole).

    A recursive OS watch (inotify on Linux) puts a watch on every directory below it, ignored
    ones included: a ``.venv`` or ``node_modules`` costs thousands of watches and floods the
    event queue whenever a package is installed.  So a directory with an ignored directory
    somewhere below it is watched on its own, and each maximal subtree free of ignored
    directories is watched recursively.
    """
    root = os.path.abspath(os.fspath(root))
    specs = _Specs(rules)
    children: dict[str, list[str]] = {}
    dirty: set[str] = set()  # directories with an ignored directory somewhere below
    parent_of: dict[str, str] = {}
    visited: set[tuple[int, int]] = set()
    stack: list[tuple[str, str, tuple[_Layer, ...]]] = [(root, "", ())]
    while stack:
        dir_abs, dir_rel, layers = stack.pop()
        children[dir_abs] = []
        layers = _with_ignore_files(layers, dir_abs, dir_rel)
        try:
            with os.scandir(dir_abs) as it:
                entries = [e for e in it if e.is_dir(follow_symlinks=True)]
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            rel = dir_rel + entry.name + "/"
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError:
                continue
            if _rule_verdict(specs, layers, rel) or (st.st_dev, st.st_ino) in visited:
                _mark_dirty(dir_abs, dirty, parent_of)
                continue
            visited.add((st.st_dev, st.st_ino))
            children[dir_abs].append(entry.path)
            parent_of[entry.path] = dir_abs
            stack.append((entry.path, rel, layers))
    alone: list[str] = []
    trees: list[str] = []
    todo = [root]
    while todo:
        d = todo.pop()
        if d in dirty:
            alone.append(d)
            todo.extend(children.get(d, ()))
        else:
            trees.append(d)
    return sorted(alone), sorted(trees)


def _mark_dirty(directory: str, dirty: set[str], parent_of: dict[str, str]) -> None:
    """Mark ``directory`` and its ancestors as having an ignored directory below them."""
    while directory is not None and directory not in dirty:
        dirty.add(directory)
        directory = parent_of.get(directory)


def _classify(entry: os.DirEntry, rel: str, specs: _Specs, layers, rules: Rules,
              visited: set) -> SourceFile | Skip | None:
    """A SourceFile, a Skip, or None for a directory to enter."""
    path = entry.path
    if not _encodable(rel):
        return Skip(path, "unencodable-name", repr(os.fsencode(entry.name)))
    try:
        st = entry.stat(follow_symlinks=True)
    except FileNotFoundError as exc:  # vanished, or a dangling symlink
        return Skip(path, "vanished", str(exc))
    except OSError as exc:  # ELOOP for a symlink cycle, EACCES ...
        reason = "symlink-loop" if getattr(exc, "errno", None) == 40 else "unreadable"
        return Skip(path, reason, str(exc))
    if stat.S_ISDIR(st.st_mode):
        reason = _rule_verdict(specs, layers, rel + "/")
        if reason:
            return Skip(path + "/", _reason_name(reason))
        key = (st.st_dev, st.st_ino)
        if key in visited:
            return Skip(path + "/", "symlink-loop", "directory already walked")
        visited.add(key)
        return None
    reason = _rule_verdict(specs, layers, rel)
    if reason:
        return Skip(path, _reason_name(reason))
    if specs.include is not None and not specs.include.match_file(rel):
        return Skip(path, "not-included")
    if not stat.S_ISREG(st.st_mode):
        return Skip(path, "not-regular", stat.filemode(st.st_mode))
    if st.st_size > rules.max_file_bytes:
        return Skip(path, "too-large", f"{st.st_size} > {rules.max_file_bytes} bytes")
    # binary, unreadable and vanished files are found when the file is read (``read_bytes``,
    # ``decode_text``):
    # reading it twice would cost the build a second pass over every file
    return SourceFile(path, st.st_size, st.st_mtime_ns)


def _encodable(name: str) -> bool:
    """False for a name holding bytes that are not UTF-8 (decoded by Python as lone surrogates)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _reason_name(reason: str) -> str:
    """Map an ignore file's name (as stored in a layer) to its skip reason."""
    return {"gitignore": "gitignore", "rest-lspignore": "rest-lspignore"}.get(reason, reason)


def read_bytes(path: str) -> tuple[bytes | None, Skip | None]:
    """The bytes of a file, or the Skip that explains why they cannot be had."""
    try:
        with open(path, "rb") as f:
            return f.read(), None
    except FileNotFoundError as exc:
        return None, Skip(path, "vanished", str(exc))
    except IsADirectoryError as exc:
        return None, Skip(path, "not-regular", str(exc))
    except OSError as exc:
        return None, Skip(path, "unreadable", str(exc))


def decode_text(path: str, data: bytes) -> tuple[str | None, Skip | None]:
    """A file's bytes as text, or a "binary" Skip (a NUL byte, or not UTF-8)."""
    if b"\0" in data:
        return None, Skip(path, "binary", "NUL byte")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Skip(path, "binary", f"not UTF-8: {exc.reason} at byte {exc.start}")


def is_indexable(path: str | os.PathLike, root: str | os.PathLike, rules: Rules) -> Skip | None:
    """Why one path under ``root`` would be skipped by a walk (None: index it).

    Used by the watcher for single changed files: applies the same pattern rules, reading the
    ignore files along the path.
    """
    path = os.path.abspath(os.fspath(path))
    if not _encodable(path):
        return Skip(path, "unencodable-name", repr(os.fsencode(path)))
    skip = pattern_skip(path, root, rules)
    if skip is not None:
        return skip
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        return Skip(path, "vanished", str(exc))
    except OSError as exc:
        return Skip(path, "unreadable", str(exc))
    if not stat.S_ISREG(st.st_mode):
        return Skip(path, "not-regular", stat.filemode(st.st_mode))
    if st.st_size > rules.max_file_bytes:
        return Skip(path, "too-large", f"{st.st_size} > {rules.max_file_bytes} bytes")
    return None


def pattern_skip(path: str | os.PathLike, root: str | os.PathLike, rules: Rules, is_dir: bool = False) -> Skip | None:
    """Why the patterns (config, ignore files along the path, secrets, includes) skip ``path``."""
    path = os.path.abspath(os.fspath(path))
    root = os.path.abspath(os.fspath(root))
    rel = os.path.relpath(path, root)
    if rel.startswith(".."):
        return Skip(path, "ignored", f"outside the root {root}")
    rel = rel.replace(os.sep, "/")
    if rel == ".":
        return None
    specs = _Specs(rules)
    layers: list[_Layer] = []
    parts = rel.split("/")
    dir_rel = ""
    for i, part in enumerate(parts):
        for name in IGNORE_FILES:
            spec = _read_ignore_file(os.path.join(root, dir_rel, name))
            if spec is not None:
                layers.append((dir_rel, name.lstrip("."), spec))
        is_last = i == len(parts) - 1
        sub = dir_rel + part + ("" if is_last and not is_dir else "/")
        reason = _rule_verdict(specs, layers, sub)
        if reason:
            return Skip(path, _reason_name(reason))
        dir_rel = sub
    if not is_dir and specs.include is not None and not specs.include.match_file(rel):
        return Skip(path, "not-included")
    return None


def relpath(path: str, root: str) -> str:
    """``path`` relative to ``root`` with "/" separators (the name a document is stored under)."""
    return Path(os.path.relpath(path, root)).as_posix()
