"""Documents' URIs: the file a ``file:`` URI names, and the workspace folder it lies in."""

from __future__ import annotations

import os
from typing import Sequence


def path_of_uri(uri: str) -> str | None:
    """The absolute path of a ``file:`` URI (None for other schemes)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return os.path.abspath(unquote(parsed.path))


def folder_of(path: str, folders: Sequence[str]) -> str | None:
    """The first of ``folders`` that is ``path`` or holds it (None: outside every one)."""
    for folder in folders:
        if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
            return folder
    return None


def repo_and_path(uri: str, folders: Sequence[str]) -> tuple[str, str]:
    """(workspace folder name, path relative to it with "/") of a ``file:`` URI; ("", "") for a
    document outside every folder, or not a file."""
    path = path_of_uri(uri) if uri else None
    folder = folder_of(path, folders) if path is not None else None
    if folder is None or path == folder:
        return "", ""
    return os.path.basename(folder.rstrip(os.sep)), os.path.relpath(path, folder).replace(os.sep, "/")
