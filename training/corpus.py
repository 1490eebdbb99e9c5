"""The training corpus of the embedded model: which Python files, and the train/validation split.

The split is by file and depends only on each file's path relative to its source root, so it is
the same on every machine with the same sources, whatever order the file system lists them in.
"""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

#: standard-library directories left out: tests, the IDLE editor, generated tables and docs data,
#: installed third-party packages and build configuration
STDLIB_EXCLUDED_DIRS: frozenset[str] = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "site-packages",
        "lib-dynload",
        "pydoc_data",
        "encodings",
        "ensurepip",
        "__pycache__",
    }
)

#: permissively licensed site-packages added to the standard library: name -> license (SPDX)
EXTRA_PACKAGES: dict[str, str] = {
    "networkx": "BSD-3-Clause",
    "mpmath": "BSD-3-Clause",
    "click": "BSD-3-Clause",
    "jinja2": "BSD-3-Clause",
    "attr": "MIT",
    "sortedcontainers": "Apache-2.0",
    "rich": "MIT",
    "pyparsing": "MIT",
    "dateutil": "Apache-2.0 OR BSD-3-Clause",
    "h11": "MIT",
    "anyio": "MIT",
}

#: files larger than this are generated tables or data, not code people write
MAX_FILE_BYTES = 300_000

#: share of files held out for validation
VAL_FRACTION = 0.05


@dataclass(frozen=True)
class SourceFile:
    """One corpus file: where it comes from and whether it is held out."""

    source: str  # "stdlib" or a site-packages package name
    relpath: str  # path relative to the source root, '/'-separated
    path: Path
    held_out: bool


def stdlib_root() -> Path:
    """The running interpreter's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def site_packages_root() -> Path:
    """The running interpreter's site-packages directory (the venv's when run from one)."""
    return Path(sysconfig.get_paths()["purelib"])


def is_held_out(source: str, relpath: str, fraction: float = VAL_FRACTION) -> bool:
    """Whether a file belongs to the validation split (a stable hash of its name)."""
    digest = hashlib.sha256(f"{source}:{relpath}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _keep(path: Path, root: Path, excluded_dirs: frozenset[str]) -> bool:
    """Whether a .py file under root is corpus material."""
    parts = path.relative_to(root).parts
    if any(p in excluded_dirs for p in parts[:-1]):
        return False
    if parts[-1].startswith("test_") or parts[-1].startswith("_sysconfigdata"):
        return False
    return path.stat().st_size <= MAX_FILE_BYTES


def _walk(source: str, root: Path, excluded_dirs: frozenset[str]) -> list[SourceFile]:
    """The kept .py files under one root, sorted by relative path."""
    files = []
    for path in sorted(root.rglob("*.py")):
        if path.is_file() and _keep(path, root, excluded_dirs):
            rel = path.relative_to(root).as_posix()
            files.append(SourceFile(source, rel, path, is_held_out(source, rel)))
    return files


def list_files(
    stdlib: Path | None = None,
    site_packages: Path | None = None,
    packages: dict[str, str] | None = None,
) -> list[SourceFile]:
    """Every corpus file: the standard library first, then each extra package."""
    stdlib = stdlib or stdlib_root()
    files = _walk("stdlib", stdlib, STDLIB_EXCLUDED_DIRS)
    site_packages = site_packages or site_packages_root()
    for name in packages if packages is not None else EXTRA_PACKAGES:
        root = site_packages / name
        if not root.is_dir():
            raise FileNotFoundError(f"extra package {name!r} not found under {site_packages}")
        excluded = frozenset({"test", "tests", "testing", "__pycache__"})
        files.extend(
            SourceFile(name, f.relpath, f.path, f.held_out) for f in _walk(name, root, excluded)
        )
    return files


def read_text(f: SourceFile) -> str:
    """A corpus file's text (undecodable bytes replaced, so one odd file never stops training)."""
    return f.path.read_bytes().decode("utf-8", errors="replace")


def manifest(files: list[SourceFile]) -> dict:
    """A record of the corpus: counts, bytes and a hash of every file's name and content."""
    h = hashlib.sha256()
    sizes = {"train": 0, "val": 0}
    counts = {"train": 0, "val": 0}
    for f in files:
        data = f.path.read_bytes()
        h.update(f"{f.source}:{f.relpath}:{len(data)}\n".encode())
        h.update(hashlib.sha256(data).digest())
        split = "val" if f.held_out else "train"
        sizes[split] += len(data)
        counts[split] += 1
    return {
        "python": sys.version.split()[0],
        "stdlib_root": str(stdlib_root()),
        "sources": {"stdlib": "PSF-2.0", **{k: v for k, v in EXTRA_PACKAGES.items()}},
        "files": counts,
        "bytes": sizes,
        "sha256": h.hexdigest(),
        "val_files": [f"{f.source}:{f.relpath}" for f in files if f.held_out],
    }


if __name__ == "__main__":
    print(json.dumps({k: v for k, v in manifest(list_files()).items() if k != "val_files"}, indent=2))
