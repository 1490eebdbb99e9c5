"""A candidate continuation: what every draft source hands the draft tree, the index's included."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """One continuation of a context: tokens after the root, with its support and origin."""

    #: the continuation after the matched context suffix (cut at a document separator)
    tokens: tuple[int, ...]
    #: its support: how often it followed the suffix in an index (a whole number, sampled when
    #: sampled), or a weight from another source (recycled top-k, dense neighbours)
    count: float
    #: where it came from ("live", "workspace", "corpus", "context", "recycle", ...)
    source: str
    #: how many context tokens (root included) matched before it
    suffix_len: int
