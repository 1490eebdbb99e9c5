"""Stop rules: where a generated completion is cut, the way users expect an editor to cut it.

Pure functions over text.  ``Cursor`` describes where the completion starts; ``cut`` returns the
part of a generated text to show and whether generation can stop.  The rules:

- single-line mode when the cursor is mid-line (non-blank text after it on the line);
- stop at the start of the text after the cursor (the rest of the line, or the next non-blank
  line when a generated line repeats it);
- stop at the end of the block by indentation (a later line indented less than the block);
- stop at an unbalanced closing bracket (one that closes a bracket opened before the cursor which
  the text after the cursor already closes, or that was never opened);
- no repeated lines (a line equal to the line before it ends the completion).
"""

from __future__ import annotations

from dataclasses import dataclass

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {")": "(", "]": "[", "}": "{"}
#: lines looked at before the cursor to count open brackets
BRACKET_LOOKBACK_LINES = 50


@dataclass(frozen=True)
class Cursor:
    """The text around the cursor that the stop rules need."""

    line_prefix: str
    line_suffix: str
    next_line: str  # first non-blank line after the cursor line ("" when none)
    block_indent: int  # lines of the completion indented less than this end it
    open_brackets: str  # brackets open at the cursor, innermost last
    closed_after: int  # how many of them the text after the cursor closes

    @property
    def single_line(self) -> bool:
        """True when the cursor is mid-line: complete to the end of the line only."""
        return self.line_suffix.strip() != ""


def cursor_of(prefix: str, suffix: str) -> Cursor:
    """Describe the cursor between ``prefix`` and ``suffix`` (the document split at it)."""
    line_prefix = prefix[prefix.rfind("\n") + 1:]
    newline = suffix.find("\n")
    line_suffix = suffix if newline == -1 else suffix[:newline]
    rest = "" if newline == -1 else suffix[newline + 1:]
    next_line = next((line for line in rest.splitlines() if line.strip()), "")
    open_brackets = _open_brackets("\n".join(prefix.splitlines()[-BRACKET_LOOKBACK_LINES:]))
    closed_after = _closed_by(open_brackets, line_suffix + "\n" + next_line)
    return Cursor(
        line_prefix=line_prefix,
        line_suffix=line_suffix,
        next_line=next_line,
        block_indent=_block_indent(line_prefix),
        open_brackets=open_brackets,
        closed_after=closed_after,
    )


def cut(text: str, cursor: Cursor, final: bool = False) -> tuple[str, bool]:
    """The part of a generated ``text`` to show, and whether generation should stop.

    While generating (``final`` False) the last line may still grow, so the line rules judge only
    complete lines; ``final`` judges every line and trims trailing blanks.
    """
    stop = False
    if cursor.single_line:
        newline = text.find("\n")
        if newline != -1:
            text, stop = text[:newline], True
        tail = cursor.line_suffix.strip()
        at = text.find(tail) if tail else -1
        if at != -1:
            text, stop = text[:at], True
    text, bracket_stop = _cut_at_unbalanced(text, cursor)
    stop = stop or bracket_stop
    lines = text.split("\n")
    opens_block = (cursor.line_prefix + lines[0]).rstrip().endswith(":")
    complete = len(lines) if (final or stop) else len(lines) - 1
    for i in range(1, complete):
        line = lines[i]
        if not line.strip():
            continue
        indent = _indent_of(line)
        if indent < cursor.block_indent or (opens_block and indent <= cursor.block_indent):
            return _trim("\n".join(lines[:i])), True
        if cursor.next_line.strip() and line.strip() == cursor.next_line.strip():
            return _trim("\n".join(lines[:i])), True
        previous = lines[i - 1].strip()
        if line.strip() == previous and len(previous) > 1:
            return _trim("\n".join(lines[:i])), True
    return (_trim(text) if (stop or final) else text), stop


def finish(text: str, cursor: Cursor) -> str:
    """The completion to show once generation has ended: every rule applied, blanks trimmed."""
    return cut(text, cursor, final=True)[0]


def _trim(text: str) -> str:
    """Text without trailing blank lines or trailing spaces on its last line."""
    return text.rstrip(" \t\n") if text.strip() else ""


def _indent_of(line: str) -> int:
    """Width of a line's leading whitespace (a tab counts as 4 columns)."""
    width = 0
    for ch in line:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width += 4
        else:
            break
    return width


def _block_indent(line_prefix: str) -> int:
    """The indentation below which a completion line leaves the cursor's block."""
    # Non-blank cursor line: its own indentation; blank: the column the cursor sits in.
    return _indent_of(line_prefix)


def _open_brackets(text: str) -> str:
    """Brackets still open at the end of ``text`` (strings and comments roughly skipped)."""
    stack: list[str] = []
    for _, ch in _code_chars(text):
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS and stack and stack[-1] == CLOSERS[ch]:
            stack.pop()
    return "".join(stack)


def _closed_by(open_brackets: str, text: str) -> int:
    """How many of ``open_brackets`` (innermost last) the closers at the start of ``text`` close."""
    stack = list(open_brackets)
    closed = 0
    depth = 0
    for _, ch in _code_chars(text):
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            if depth:
                depth -= 1
            elif stack and stack[-1] == CLOSERS[ch]:
                stack.pop()
                closed += 1
            else:
                break
    return closed


def _cut_at_unbalanced(text: str, cursor: Cursor) -> tuple[str, bool]:
    """Cut ``text`` before a closing bracket that the context does not leave open for it."""
    available = list(cursor.open_brackets[: len(cursor.open_brackets) - cursor.closed_after])
    depth: list[str] = []
    for i, ch in _code_chars(text):
        if ch in OPENERS:
            depth.append(ch)
        elif ch in CLOSERS:
            if depth and depth[-1] == CLOSERS[ch]:
                depth.pop()
            elif not depth and available and available[-1] == CLOSERS[ch]:
                available.pop()
            else:
                return text[:i], True
    return text, False


def _code_chars(text: str):
    """(offset, character) of ``text`` outside string literals and comments (a rough lexer)."""
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote or ch == "\n":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            newline = text.find("\n", i)
            if newline == -1:
                return
            i = newline
            continue
        else:
            yield i, ch
        i += 1
