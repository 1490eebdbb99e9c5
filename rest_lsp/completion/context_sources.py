"""Where a prompt's context block comes from: the other open buffers and the workspace, searched
in their index tiers (live and workspace), never the corpus and never the current file.

Two kinds of snippets (``rest_lsp.completion.context.Snippet``):

- matches: the maximal token runs of the text before the cursor (its last ``QUERY_TOKENS``)
  that occur in another document, found by the suffix arrays' longest-match search
  (``indexer.search.occurrences.longest_runs``), the longest first; each run's documents and offsets
  give a window of lines around it, mostly what follows it there;
- definitions: for each identifier used near the cursor, ``def NAME``, ``class NAME`` (indented
  or not) and ``NAME =`` are looked up in the same tiers, and a hit whose line really defines
  the name gives the definition's first lines.

Only what the index holds is read, decoded by the index's tokenizer: a file the index ignores
(``.gitignore``, ``index.ignore_globs``, ``index.exclude_globs``) or keeps out as a secret
(``index.secret_globs``) and a buffer the live tier refused are never sources.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from indexer.search.occurrences import Occurrence, document_length, document_window, longest_runs, occurrences, without_paths
from indexer.search.suffix import ShardView
from rest_lsp.completion.context import (BUFFER_BONUS, DEFINITION_SCORE, Snippet, definition_lines, is_definition,
                                         window_lines)
from rest_lsp.completion.uris import path_of_uri

#: tokens before the cursor whose runs are looked for in other files
QUERY_TOKENS = 64
#: shortest run that counts (shorter ones are everywhere: ``self.``, ``return``)
MIN_RUN = 8
#: longest run searched (a longer copy is found as its last ``MAX_RUN`` tokens)
MAX_RUN = 32
#: runs looked up, the longest first
MAX_RUNS = 8
#: documents per run (or per definition pattern) cut into snippets
OCCURRENCES = 3
#: tokens decoded around a match: before it, and after it (what followed it is what the model needs)
BEFORE_TOKENS = 48
AFTER_TOKENS = 192
#: whole lines kept around a match: before the lines it spans, and after them
LINES_BEFORE = 2
LINES_AFTER = 8
#: tokens decoded from a definition's line on, and the most lines it keeps
DEF_TOKENS = 192
DEF_LINES = 12
#: a name with more definitions than this (of one kind) in the other files is left out: ambiguous
MAX_DEFINITIONS = 3
#: definitions are found by these words before the name (with and without indentation), and as
#: ``NAME =`` at a line start
DEF_WORDS = ("def", "class")


@dataclass(frozen=True)
class Sources:
    """The shard views searched for context, the current file masked out, and how their
    documents are named in a prompt."""

    views: list[ShardView]
    tiers: list[str]  # "live" | "workspace", per view
    name: Callable[[str], str]  # a document's path in the index -> its path in the prompt


def sources_of(store: Any, current_uri: str, root: str | None) -> Sources:
    """The live and workspace views of ``store`` for a completion in ``current_uri``.

    The current file is masked everywhere (its buffer, and its copy on disk in the workspace
    tier); so are the workspace copies of the other open buffers, whose fresher text the live
    tier holds.  ``root``: the workspace tier's folder (None: no workspace tier).
    """
    views, tiers = [], []
    open_paths: set[str] = set()
    for tier, view in store.views(("live",)):
        uri = view.shard.paths[0] if view.shard.paths else ""
        if uri == current_uri:
            continue
        views.append(view)
        tiers.append(tier)
        rel = relative_path(uri, root)
        if rel:
            open_paths.add(rel)
    current = relative_path(current_uri, root)
    masked = open_paths | ({current} if current else set())
    for tier, view in store.views(("workspace",)):
        views.append(without_paths(view, masked))
        tiers.append(tier)

    def name(path: str) -> str:
        if "://" in path or path.startswith(("untitled:", "file:")):
            return relative_path(path, root) or os.path.basename(path.rstrip("/")) or path
        return path

    return Sources(views, tiers, name)


def relative_path(uri: str, root: str | None) -> str:
    """The path of a ``file:`` URI relative to ``root`` with "/" ("" when outside it, or not a file)."""
    path = path_of_uri(uri) if uri else None
    if path is None or root is None:
        return ""
    rel = os.path.relpath(path, root)
    return "" if rel.startswith("..") else rel.replace(os.sep, "/")


def query_ids(prefix: str, encode: Callable[[str], list[int]], tokens: int = QUERY_TOKENS) -> list[int]:
    """The last ``tokens`` tokens before the cursor (only the prefix's tail is encoded)."""
    return encode(prefix[-tokens * 8:])[-tokens:] if prefix else []


def _cut(src: Sources, decode: Callable[[list[int]], str], occ: Occurrence, before: int,
         after: int) -> tuple[str, int, int, int, int, bool, bool]:
    """A decoded window around an occurrence: (text, the match's start and end in it, the
    window's token range, whether it starts and ends its document)."""
    view = src.views[occ.view]
    ids, start, end = document_window(view, occ.doc, occ.start - before, occ.start + occ.length + after)
    head = decode(ids[:occ.start - start])
    match = decode(ids[occ.start - start:occ.start - start + occ.length])
    tail = decode(ids[occ.start - start + occ.length:])
    whole_end = end >= document_length(view, occ.doc)
    return head + match + tail, len(head), len(head) + len(match), start, end, start == 0, whole_end


def match_snippets(src: Sources, ids: Sequence[int], decode: Callable[[list[int]], str]) -> list[Snippet]:
    """Snippets around the other documents' occurrences of the longest runs of ``ids``."""
    out: list[Snippet] = []
    for run_start, n in longest_runs(src.views, ids, MIN_RUN, MAX_RUN)[:MAX_RUNS]:
        found, total = occurrences(src.views, ids[run_start:run_start + n], OCCURRENCES)
        for occ in found:
            text, at, end, ws, we, whole_start, whole_end = _cut(src, decode, occ, BEFORE_TOKENS, AFTER_TOKENS)
            lines = window_lines(text, at, end, LINES_BEFORE, LINES_AFTER, whole_start, whole_end)
            bonus = BUFFER_BONUS if src.tiers[occ.view] == "live" else 0.0
            # a run found in many places is boilerplate (imports, common idioms): worth less
            score = n - math.log2(max(1, total)) + bonus
            out.append(Snippet(src.name(occ.path), lines, score, "match",
                               f"{src.tiers[occ.view]}:{occ.path}", ws, we))
    return out


def definition_snippets(src: Sources, names: Sequence[str], encode: Callable[[str], list[int]],
                        decode: Callable[[list[int]], str]) -> list[Snippet]:
    """The first definition found of each name (nearest the cursor first), its first lines."""
    out: list[Snippet] = []
    ends = word_end(decode)
    for rank, name in enumerate(names):
        patterns = [f"{lead}{word} {name}" for word in DEF_WORDS for lead in ("", " ")] + [f"{name} ="]
        snippet = None
        for pattern in patterns:
            found, total = occurrences(src.views, encode(pattern), OCCURRENCES, followed_by=ends)
            if total > MAX_DEFINITIONS:  # defined all over (``name``, ``run``): which one is meant?
                continue
            for occ in found:
                snippet = _definition(src, occ, name, decode, DEFINITION_SCORE - rank)
                if snippet is not None:
                    break
            if snippet is not None:
                break
        if snippet is not None:
            out.append(snippet)
    return out


def word_end(decode: Callable[[list[int]], str]) -> Callable[[int], bool]:
    """Whether a token may follow a whole name: its text does not go on with the name (a letter,
    digit or underscore).  Cached per token: a search asks about the same few many times."""
    cache: dict[int, bool] = {}

    def ends(token: int) -> bool:
        hit = cache.get(token)
        if hit is None:
            text = decode([token])
            hit = cache[token] = not (text[:1].isalnum() or text[:1] == "_")
        return hit

    return ends


def _definition(src: Sources, occ: Occurrence, name: str, decode: Callable[[list[int]], str],
                score: float) -> Snippet | None:
    """The definition at an occurrence of a definition pattern, or None when its line defines
    no ``name`` (the pattern's tokens also occur inside other lines)."""
    text, at, _, ws, we, whole_start, whole_end = _cut(src, decode, occ, 16, DEF_TOKENS)
    line_start = text.rfind("\n", 0, at) + 1
    if line_start == 0 and not whole_start:  # the line begins before the window: cut
        return None
    line_end = text.find("\n", at)
    if not is_definition(text[line_start:line_end if line_end >= 0 else len(text)], name):
        return None
    lines = definition_lines(text[line_start:], whole_end, DEF_LINES)
    if not lines.strip():
        return None
    bonus = BUFFER_BONUS if src.tiers[occ.view] == "live" else 0.0
    return Snippet(src.name(occ.path), lines, score + bonus, "definition", f"{src.tiers[occ.view]}:{occ.path}", ws, we)
