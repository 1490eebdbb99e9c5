"""Cursor positions in a held-out file, the text to predict there, and how a completion scores.

Pure functions over text, for ``rest-lsp bench quality`` (``quality.py``), tested without a model.

Cursor positions (``select_positions``, deterministic by ``--seed`` and the file's path), on
lines of at least ``MIN_LINE_CHARS`` non-blank characters, half of them of each family:

* ``mid``: inside a line, after at least one non-space character and before its last one;
* ``eol``: at the end of a line (a following non-blank line exists): the next line is to come;
* ``bol``: after the indentation of a line, as after Enter and the editor's auto-indent.

The text to predict (``expected_span``) is what the held-out file holds from the cursor to the
end of the cursor's line when that is not blank (``mid``, ``bol``); when it is blank (``eol``),
the next non-blank line, with its indentation (blank lines between are skipped).  The document
completed is the whole file *without* that text (``document_at``): prefix and suffix around a
missing line remainder, as in an editor where the line is being written; with the text left in,
the suffix would begin with the answer and the right completion would be nothing.  The document
is also the file's open buffer (``update_buffer``: the live tier), as in an editor.

Metrics per position (pure functions, see ``score``): ``first_line`` of the completion (the
text up to its first newline when the expected text is on the cursor's line, else its first
non-blank line with its indentation), ``exact_match`` (that line and the expected text equal,
trailing whitespace stripped), ``edit_similarity`` (``difflib.SequenceMatcher(None, a, b,
autojunk=False).ratio()`` of the same two strings: 2 * matching characters / total characters;
0 for an empty completion), ``empty`` (no completion item), ``starts_new_file`` and
``repeats_prefix`` (the two heuristics, documented at their functions) and the latency of the
``complete`` call (the engine's KV cache is kept between requests, as in a session).
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass
from typing import Sequence

#: lines shorter than this (stripped) get no cursor position
MIN_LINE_CHARS = 4
#: the cursor position families; "mid" is mid-line, "eol" and "bol" are line-end positions
KINDS = ("mid", "eol", "bol")
#: text that only the model's prompt format (or a new file) has: never in a completion
FILE_MARKERS = ("<|file_sep|>", "<|repo_name|>", "<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>",
                "<|fim_middle|>", "<|fim_pad|>", "<file_sep>", "<repo_name>", "<filename>")
_CODING = re.compile(r"#\s*(-\*-\s*)?(en)?coding[:=]")
_IMPORT = re.compile(r"(import\s+\w|from\s+[\w.]+\s+import\b)")
_TRAILING_WORD = re.compile(r"\w+$")


@dataclass(frozen=True)
class Position:
    """A cursor offset in a file and its family (one of ``KINDS``)."""

    offset: int
    kind: str


# ----- positions and the text to predict ----------------------------------------------------
def _lines(text: str) -> list[tuple[int, str]]:
    """(start offset, line without its newline) of every line of ``text``."""
    out, start = [], 0
    for line in text.split("\n"):
        out.append((start, line))
        start += len(line) + 1
    return out


def select_positions(text: str, count: int, rng: random.Random, min_chars: int = MIN_LINE_CHARS) -> list[Position]:
    """``count`` cursor positions (fewer when the file has too few lines), sorted by offset:
    ``ceil(count / 2)`` mid-line, the rest at line ends (``eol`` or ``bol``, by ``rng``).

    Every position has a non-empty ``expected_span``; lines of under ``min_chars`` stripped
    characters are skipped; a line gets at most one mid-line and one line-end position.
    """
    lines = _lines(text)
    eligible = [i for i, (_, line) in enumerate(lines) if len(line.strip()) >= min_chars]
    later_text = [False] * len(lines)  # whether a non-blank line follows line i
    seen = False
    for i in range(len(lines) - 1, -1, -1):
        later_text[i] = seen
        seen = seen or bool(lines[i][1].strip())
    n_mid = (count + 1) // 2
    mids = sorted(rng.sample(eligible, min(n_mid, len(eligible))))
    ends = sorted(rng.sample(eligible, min(count - len(mids), len(eligible))))
    out: set[Position] = set()
    for i in mids:
        start, line = lines[i]
        indent = len(line) - len(line.lstrip())
        columns = range(indent + 1, len(line.rstrip()))  # a non-space before, one after
        if columns:
            out.add(Position(start + rng.choice(columns), "mid"))
    for i in ends:
        start, line = lines[i]
        kind = rng.choice(("eol", "bol"))
        if kind == "eol" and not later_text[i]:
            kind = "bol"
        if kind == "bol" and i == 0:
            kind = "eol" if later_text[i] else ""
        if kind == "eol":
            out.add(Position(start + len(line), "eol"))
        elif kind == "bol":
            out.add(Position(start + len(line) - len(line.lstrip()), "bol"))
    return sorted(out, key=lambda p: p.offset)


def expected_span(text: str, offset: int) -> tuple[str, int, bool]:
    """(expected text, end offset of it in ``text``, whether it is on the cursor's line).

    The rest of the cursor's line when it is not blank; else the next non-blank line with its
    indentation (end: that line's end); ``("", len(text), False)`` when no such line follows.
    """
    eol = text.find("\n", offset)
    eol = len(text) if eol == -1 else eol
    rest = text[offset:eol]
    if rest.strip():
        return rest, eol, True
    pos = eol
    while pos < len(text):
        start = pos + 1
        end = text.find("\n", start)
        end = len(text) if end == -1 else end
        if text[start:end].strip():
            return text[start:end], end, False
        pos = end
    return "", len(text), False


def expected_text(text: str, offset: int) -> str:
    """The text to predict at ``offset`` (see ``expected_span``)."""
    return expected_span(text, offset)[0]


def document_at(text: str, offset: int) -> str:
    """The document completed at ``offset``: ``text`` without the expected span."""
    _, end, _ = expected_span(text, offset)
    return text[:offset] + text[end:]


# ----- metrics ---------------------------------------------------------------------------------
def first_line(completion: str, same_line: bool = True) -> str:
    """The completion's line compared with the expected text: up to its first newline when the
    expected text is on the cursor's line, else its first non-blank line (indentation kept)."""
    if same_line:
        return completion.split("\n", 1)[0]
    return next((line for line in completion.split("\n") if line.strip()), "")


def exact_match(line: str, expected: str) -> bool:
    """``line`` is ``expected`` (trailing whitespace stripped from both; a blank never matches)."""
    return bool(expected.strip()) and line.rstrip() == expected.rstrip()


def edit_similarity(line: str, expected: str) -> float:
    """``difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()`` of the two, trailing
    whitespace stripped: 2 * matched characters / characters of both (1.0: equal)."""
    a, b = line.rstrip(), expected.rstrip()
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _column_of_first_line(completion: str, prefix: str) -> tuple[str, bool]:
    """(the completion's first non-blank line, whether it starts at column 0 of the document)."""
    lines = completion.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            if i > 0:
                return line, not line[:1].isspace()
            line_before = prefix[prefix.rfind("\n") + 1:]
            return line, line_before == "" and not line[:1].isspace()
    return "", False


def starts_new_file(completion: str, prefix: str, kind: str) -> bool:
    """Whether the completion begins what begins a file (a small heuristic), i.e. any of:

    * a prompt-format marker (``FILE_MARKERS``: ``<|file_sep|>``, ``<|repo_name|>``, ...)
      anywhere in it;
    * its text (leading whitespace stripped) starts with a shebang ``#!`` or a coding line
      (``# -*- coding: ...``, ``# coding=...``);
    * its first non-blank line starts at column 0 with a docstring quote (``\"\"\"``, ``'''``)
      while the prefix is not blank (the cursor is not at the file's start);
    * the cursor is mid-line (``kind == "mid"``), the completion ends that line without writing
      on it, and its first non-blank line is at column 0 and an ``import``/``from .. import``.
    """
    if any(marker in completion for marker in FILE_MARKERS):
        return True
    head = completion.lstrip()
    if head.startswith("#!") or _CODING.match(head.split("\n", 1)[0]):
        return True
    line, column0 = _column_of_first_line(completion, prefix)
    if not column0:
        return False
    if line.startswith(('"""', "'''")) and prefix.strip():
        return True
    ends_line = not completion.split("\n", 1)[0].strip()
    return kind == "mid" and ends_line and bool(_IMPORT.match(line))


def repeats_prefix(completion: str, prefix: str) -> bool:
    """Whether the completion begins by writing again what is before the cursor (a small
    heuristic).  With ``before`` the cursor line's text before the cursor, stripped (nothing to
    repeat when it is blank), any of:

    * the completion begins on a new line (its text on the cursor's line is blank) and its first
      non-blank line, stripped, equals ``before`` (the same line written again under itself);
    * the completion goes on on the cursor's line (writes there), ``before`` has at least 3
      characters and the completion, leading spaces and tabs stripped, starts
      with it (``x = foo(`` completed by ``x = foo(a)``);
    * the word the cursor ends (``\\w+`` just before it) has at least 3 characters and the
      completion starts with it, no space between (``    ret`` completed by ``return x``).
    """
    line_before = prefix[prefix.rfind("\n") + 1:]
    before = line_before.strip()
    if not before or not completion.strip():
        return False
    same_line = completion.split("\n", 1)[0]
    if not same_line.strip():
        first = next((line for line in completion.split("\n") if line.strip()), "")
        if first.strip() == before:
            return True
    elif len(before) >= 3 and completion.lstrip(" \t").startswith(before):
        return True
    word = _TRAILING_WORD.search(line_before)
    return word is not None and len(word.group()) >= 3 and completion.startswith(word.group())


@dataclass
class Score:
    """The metrics of one completion at one position."""

    expected: str
    shown_line: str
    empty: bool
    exact_match: bool
    edit_similarity: float
    starts_new_file: bool
    repeats_prefix: bool


def score(text: str, offset: int, kind: str, items: Sequence[str]) -> Score:
    """Every metric of the completion ``items`` (the service's items; the first is shown) at
    ``offset`` of the held-out file ``text``."""
    expected, _, same_line = expected_span(text, offset)
    completion = items[0] if items else ""
    line = first_line(completion, same_line)
    prefix = text[:offset]
    return Score(expected=expected, shown_line=line, empty=not items,
                 exact_match=exact_match(line, expected), edit_similarity=round(edit_similarity(line, expected), 4),
                 starts_new_file=bool(items) and starts_new_file(completion, prefix, kind),
                 repeats_prefix=bool(items) and repeats_prefix(completion, prefix))
