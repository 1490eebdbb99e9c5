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


def buffer_refused(uri: str, folders: Sequence[str], index_config) -> str | None:
    """Why an open buffer must stay out of the live tier (None: it may enter).

    The workspace's rules (``index_config``) apply to open buffers too: a secret
    (``index.secret_globs``), a git-ignored or excluded file, or a file outside every workspace
    folder never enters any tier.  Buffers that are not files (``untitled:``) are what the user
    is typing: they enter.
    """
    from indexer.building import sources

    path = path_of_uri(uri)
    if path is None:
        return None
    rules = sources.Rules.from_config(index_config)
    root = folder_of(path, folders)
    if folders and root is None:
        return "outside the workspace folders"
    skip = sources.pattern_skip(path, root or os.path.dirname(path), rules)
    return skip.reason if skip is not None else None
