"""The context block of a prompt: snippets of other files of the repository, ranked, deduplicated,
fitted to a token budget and written in the model's repository format or as commented headers.

Pure functions over snippets and an ``encode`` callable: tested without a model.  The snippets
come from ``rest_lsp.completion.context_sources`` (the open buffers' and the workspace's index
tiers); the block is chosen once per completion session (``rest_lsp.completion.context_session``)
and put in the prompt by ``rest_lsp.completion.prompt.build_prompt``.
"""

from __future__ import annotations

import builtins
import keyword
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from rest_lsp.completion.fim import FimTokens
from rest_lsp.completion.prompt import PromptContext

Encode = Callable[[str], list[int]]

#: identifiers taken from this many non-blank lines before the cursor (the cursor's own included)
NAME_LINES = 4
#: definitions looked up for at most this many names, the nearest the cursor first
MAX_NAMES = 6
#: names the file imports by name (``from M import A``) whose definitions are looked up after
#: the names near the cursor: the next line often uses one not typed yet
MAX_IMPORTED = 6
#: a definition of the name nearest the cursor ranks as a match run of this many tokens; each
#: farther name one less
DEFINITION_SCORE = 24.0
#: an open buffer's snippet ranks this much above the same from the workspace (the user is
#: working on it: what Copilot's "neighbouring tabs" rely on)
BUFFER_BONUS = 4.0
#: lines between two snippets of one file in the block
ELLIPSIS = "...\n"
#: names never worth looking up: too common to have one definition
COMMON_NAMES = frozenset({"self", "cls", "args", "kwargs", "None", "True", "False"})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+[\w.]+[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]+)", re.MULTILINE)
_DEFINED = re.compile(
    r"^[ \t]*(?:async[ \t]+)?(?:def|class|function|func|fn)[ \t]+([A-Za-z_][A-Za-z0-9_]*)"
    r"|^([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?::[^=\n]*)?=(?!=)", re.MULTILINE)
#: line comment markers by file extension (the language of the file being completed)
_COMMENTS = {
    "//": ("c", "h", "cc", "cpp", "cxx", "hpp", "cs", "java", "js", "jsx", "ts", "tsx", "mjs", "cjs", "go", "rs",
           "swift", "kt", "kts", "scala", "dart", "php", "zig", "v", "sol"),
    "--": ("lua", "sql", "hs", "elm", "ada"),
    ";": ("clj", "cljs", "lisp", "el", "scm", "asm"),
    "%": ("tex", "erl", "m"),
}
_COMMENT_OF = {ext: marker for marker, exts in _COMMENTS.items() for ext in exts}


@dataclass(frozen=True)
class Snippet:
    """Lines of another file offered to the prompt: where they are from, their text, and why."""

    path: str  # as the prompt names the file (relative to the workspace folder)
    text: str  # whole lines, each ending with a newline
    score: float  # higher ranks first
    kind: str  # "match" (shares a token run with the text before the cursor) | "definition"
    #: the document in the index (a relative path, or a buffer's URI) and the token range the
    #: snippet was cut from: snippets of one document whose ranges overlap are duplicates
    doc: str = ""
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Block:
    """A chosen context block: its text, where it goes, its snippets and its tokens."""

    text: str
    header_at: int | None
    snippets: tuple[Snippet, ...]
    tokens: int

    def prompt_context(self) -> PromptContext | None:
        """What ``build_prompt`` takes (None for an empty block)."""
        return PromptContext(self.text, self.header_at) if self.text else None

    def describe(self) -> dict:
        """What the block holds, for the status and the benchmarks (JSON-ready)."""
        return {"tokens": self.tokens,
                "snippets": [{"path": s.path, "kind": s.kind, "score": round(s.score, 2),
                              "lines": s.text.count("\n")} for s in self.snippets]}


EMPTY = Block("", None, (), 0)


# ----- names near the cursor ------------------------------------------------------------------
def defined_names(text: str) -> set[str]:
    """Names a text defines itself (``def``/``class``/``function`` NAME, ``NAME =`` at a line start)."""
    return {a or b for a, b in _DEFINED.findall(text)}


def query_names(prefix: str, defined: Iterable[str] = (), lines: int = NAME_LINES,
                limit: int = MAX_NAMES) -> list[str]:
    """Identifiers used in the last ``lines`` non-blank lines before the cursor, nearest the
    cursor first.

    Left out: keywords, builtins, names too common to look up, names the current file defines
    (``defined``: it is in the prompt already, or its own business) and the word the cursor is in
    (half typed).
    """
    tail = prefix[-4000:].split("\n")  # enough for any few lines worth reading
    kept = [line for line in tail[:-1] if line.strip()][-(lines - 1):] if lines > 1 else []
    window = "\n".join([*kept, tail[-1]])
    skip = set(defined) | COMMON_NAMES | set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins))
    names: list[str] = []
    for m in reversed(list(_IDENTIFIER.finditer(window))):
        name = m.group()
        if m.end() == len(window) or name in skip or name in names or len(name) < 3:
            continue
        names.append(name)
        if len(names) == limit:
            break
    return names


def imported_names(prefix: str, skip: Iterable[str] = (), limit: int = MAX_IMPORTED) -> list[str]:
    """Names the text before the cursor imports by name (``from M import A, B as C``: A and B;
    Python's form), the one used last before the cursor first, then those not used yet, the
    last imported first.  ``skip``: names already looked up."""
    unwanted = set(skip) | COMMON_NAMES
    imported: dict[str, int] = {}  # name -> the end of its (first) import statement
    by_use: dict[str, list[str]] = {}  # the name as the code uses it (its alias, if any) -> names
    for m in _FROM_IMPORT.finditer(prefix):
        for part in m.group(1).strip("() \t").replace("\n", ",").split(","):
            name, _, alias = (p.strip() for p in part.partition(" as "))
            if _IDENTIFIER.fullmatch(name) and name not in unwanted and name not in imported:
                imported[name] = m.end()
                by_use.setdefault(alias if _IDENTIFIER.fullmatch(alias) else name, []).append(name)
    last_use: dict[str, int] = {}  # name -> where the code last used it, after its import
    for m in _IDENTIFIER.finditer(prefix):  # one pass: whole identifiers, not attributes
        before = prefix[m.start() - 1:m.start()]
        if before == "." or before.isalnum() or before == "_":
            continue
        for name in by_use.get(m.group(), ()):
            if m.start() >= imported[name]:
                last_use[name] = m.start()
    # used ones by their last use, the latest first; then the unused, the latest import first
    order = {n: (0, -last_use[n]) if n in last_use else (1, -end) for n, end in imported.items()}
    return sorted(imported, key=order.__getitem__)[:limit]


def is_definition(line: str, name: str) -> bool:
    """Whether ``line`` defines ``name``: ``def``/``class``/``function``/``func``/``fn`` NAME
    (indented or not), or ``NAME =`` / ``NAME: type =`` at the start of the line."""
    return any(name in pair for pair in _DEFINED.findall(line.rstrip("\n")))


# ----- cutting lines ----------------------------------------------------------------------------
def window_lines(text: str, at: int, end: int, before: int, after: int, whole_start: bool,
                 whole_end: bool) -> str:
    """Whole lines of ``text`` (a window decoded from a document) around [at, end): the lines
    holding it, ``before`` lines before and ``after`` lines after.

    A line the window cuts is left out: the first unless the window starts the document
    (``whole_start``), the last unless it ends it (``whole_end``).
    """
    first = 0 if whole_start else text.find("\n") + 1
    last = len(text) if whole_end else text.rfind("\n") + 1
    if first >= last:
        return ""
    at, end = min(max(at, first), last), min(max(end, at), last)
    start = text.rfind("\n", first, at) + 1 if at > first else first
    start = max(start, first)
    for _ in range(before):
        if start <= first:
            break
        start = max(first, text.rfind("\n", first, start - 1) + 1)
    stop = text.find("\n", max(start, end - 1))  # the end of the line holding the last character
    stop = last if stop < 0 or stop >= last else stop + 1
    for _ in range(after):
        if stop >= last:
            break
        nxt = text.find("\n", stop)
        stop = last if nxt < 0 or nxt >= last else nxt + 1
    out = _strip_blank_lines(text[start:stop])
    return out if out.endswith("\n") or not out else out + "\n"


def _strip_blank_lines(text: str) -> str:
    """``text`` without its leading and trailing blank lines (they only cost tokens)."""
    lines = text.splitlines(keepends=True)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "".join(lines)


def definition_lines(text: str, whole_end: bool, max_lines: int) -> str:
    """The definition starting ``text`` (at its line start): its first line, then the lines
    indented deeper (or blank), at most ``max_lines``; a line the window cuts is left out."""
    lines = text.splitlines(keepends=True)
    if not whole_end and lines and not lines[-1].endswith("\n"):
        lines.pop()
    if not lines:
        return ""
    indent = len(lines[0]) - len(lines[0].lstrip())
    out = [lines[0]]
    for line in lines[1:max_lines]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        out.append(line)
    while len(out) > 1 and not out[-1].strip():
        out.pop()
    text = "".join(out)
    return text if text.endswith("\n") else text + "\n"


# ----- ranking, dedupe, budget ------------------------------------------------------------------
def rank(snippets: Iterable[Snippet]) -> list[Snippet]:
    """Best first: by score, then path and position (deterministic)."""
    return sorted(snippets, key=lambda s: (-s.score, s.path, s.start, s.kind))


def overlaps(a: Snippet, b: Snippet) -> bool:
    """Whether two snippets are cut from overlapping parts of one document, or are the same text."""
    if a.text.strip() == b.text.strip():
        return True
    return a.doc == b.doc and a.start < b.end and b.start < a.end


def dedupe(ranked: Sequence[Snippet]) -> list[Snippet]:
    """``ranked`` without the snippets that overlap a better-ranked one (or hold no code)."""
    kept: list[Snippet] = []
    for s in ranked:
        if s.text.strip() and not any(overlaps(s, k) for k in kept):
            kept.append(s)
    return kept


def fill(ranked: Sequence[Snippet], budget: int, cost: Callable[[Snippet, Sequence[Snippet]], int]) -> list[Snippet]:
    """The best-ranked snippets whose costs add up to at most ``budget`` (a snippet that does not
    fit is skipped; a smaller one after it may).  ``cost(snippet, chosen so far)``."""
    chosen: list[Snippet] = []
    left = budget
    for s in ranked:
        c = cost(s, chosen)
        if c <= left:
            chosen.append(s)
            left -= c
    return chosen


# ----- formatting -------------------------------------------------------------------------------
def comment_marker(path: str) -> str:
    """The line comment of the language of ``path`` (by extension; "#" when unknown)."""
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    return _COMMENT_OF.get(ext, "#")


def files_of(chosen: Sequence[Snippet]) -> list[tuple[str, str]]:
    """(path, content) per file: its snippets in document order joined by ``ELLIPSIS``; the files
    ordered by their best snippet's rank, the best last (nearest the cursor)."""
    by_path: dict[str, list[Snippet]] = {}
    for s in chosen:
        by_path.setdefault(s.path, []).append(s)
    best = {path: max(s.score for s in group) for path, group in by_path.items()}
    order = sorted(by_path, key=lambda p: (best[p], p))
    out = []
    for path in order:
        group = sorted(by_path[path], key=lambda s: s.start)
        out.append((path, ELLIPSIS.join(s.text for s in group)))
    return out


def format_block(chosen: Sequence[Snippet], fim: FimTokens | None, repo: str,
                 current_path: str) -> tuple[str, int | None]:
    """(the block's text, where it goes: see ``PromptContext.header_at``).

    In the model's repository format where the template has one (Qwen2.5-Coder:
    ``<|file_sep|>path\\ncontent\\n`` per file, after ``<|repo_name|>repo\\n``); otherwise each
    file as a comment naming its path (in the current file's comment syntax) and its lines.
    """
    files = files_of(chosen)
    if not files:
        return "", None
    if fim is not None and fim.repo_format and repo:
        text = "".join(fim.context_entry(path, content.rstrip("\n")) for path, content in files)
        return text, fim.context_at(repo)
    marker = comment_marker(current_path)
    return "".join(f"{marker} {path}\n{content}\n" for path, content in files), None


def choose_block(snippets: Iterable[Snippet], budget: int, encode: Encode, fim: FimTokens | None,
                 repo: str, current_path: str) -> Block:
    """The context block of at most ``budget`` tokens made of the best of ``snippets``.

    Ranked, deduplicated, filled by each snippet's own tokens (plus its path's, once per file);
    then the whole block is encoded and its worst snippets dropped until it fits (joining
    changes a few tokens at the seams).
    """
    if budget <= 0:
        return EMPTY
    ranked = dedupe(rank(snippets))

    def cost(s: Snippet, chosen: Sequence[Snippet]) -> int:
        # a file's first snippet also pays for its path line; later ones for the ellipsis
        seen = any(c.path == s.path for c in chosen)
        return len(encode(s.text)) + (len(encode(ELLIPSIS)) if seen else len(encode(s.path)) + 3)

    chosen = fill(ranked, budget, cost)
    while chosen:
        text, at = format_block(chosen, fim, repo, current_path)
        tokens = len(encode(text))
        if tokens <= budget:
            return Block(text, at, tuple(chosen), tokens)
        chosen = chosen[:-1]
    return EMPTY
