"""Assembling a packaged model's GGUF file from the parts its PyPI distributions install.

The parts are data: their packages are never imported.  Each distribution's installed files are
read from its metadata (``importlib.metadata``), the one ``data/partNN.bin`` among them is located
on disk, the parts are concatenated into the user cache, and the result is kept only when its
sha256 is the catalog's.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Callable

from rest_lsp.errors import ModelError
from rest_lsp.models.catalog import PackagedModel

#: (bytes done, bytes total, message)
Progress = Callable[[int, int, str], None]
#: bytes read and written at a time while assembling or hashing
CHUNK = 8 << 20


def part_path(distribution: str) -> Path | None:
    """The raw part file a distribution installed, or None when it is not installed."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.parent.name == "data" and entry.name.startswith("part") and entry.suffix == ".bin":
            return Path(dist.locate_file(entry)).resolve()
    return None


def missing_parts(model: PackagedModel) -> list[str]:
    """The distributions of ``model`` whose part is not installed (or not on disk)."""
    missing = []
    for name in model.distributions:
        path = part_path(name)
        if path is None or not path.is_file():
            missing.append(name)
    return missing


def is_installed(model: PackagedModel) -> bool:
    """Whether every part of ``model`` is installed."""
    return not missing_parts(model)


def sha256_of(path: Path, progress: Progress | None = None, message: str = "") -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total, message)
    return digest.hexdigest()


def assemble(model: PackagedModel, directory: Path, progress: Progress | None = None) -> Path:
    """The assembled, verified GGUF file of ``model`` in ``directory`` (built once, then reused).

    ``ModelError`` when a part is missing or the assembled bytes do not hash to the catalog's
    sha256 (nothing is kept then).  A file already in the cache is trusted by its size and a
    marker written after its hash was checked.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / model.file_name
    verified = target.with_name(target.name + ".sha256")
    if target.is_file() and verified.is_file() and verified.read_text().strip() == model.sha256 \
            and target.stat().st_size == model.size:
        return target
    missing = missing_parts(model)
    if missing:
        raise ModelError(
            f"model {model.name!r} is not installed: {len(missing)} of its {len(model.distributions)} "
            f"parts are missing ({', '.join(missing)}); install it with: {model.install_command()}",
            model=model.name, missing=missing,
        )
    parts = [part_path(name) for name in model.distributions]
    total = sum(p.stat().st_size for p in parts)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    done = 0
    try:
        with partial.open("wb") as out:
            for index, part in enumerate(parts, 1):
                with part.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total, f"assembling {model.name} (part {index}/{len(parts)})")
        found = digest.hexdigest()
        if found != model.sha256 or done != model.size:
            raise ModelError(
                f"the parts of {model.name!r} assemble to {done:,} bytes with sha256 {found}, not the "
                f"expected {model.size:,} bytes with sha256 {model.sha256}: a part is corrupted or of "
                f"another version; reinstall with: {model.install_command()} --force-reinstall",
                model=model.name, sha256=found, expected=model.sha256, size=done,
            )
        os.replace(partial, target)
        verified.write_text(model.sha256 + "\n")
    finally:
        partial.unlink(missing_ok=True)
    return target
