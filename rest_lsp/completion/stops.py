"""Stop rules: where a generated completion is cut, the way users expect an editor to cut it.

Pure functions over text.  ``Cursor`` describes where the completion starts; ``cut`` returns the
part of a generated text to show and whether generation can stop.  The rules:

- single-line mode when the cursor is mid-line (non-blank text after it on the line);
- one statement (``Cursor.statement_only``) where a line is being written (text before the
  cursor, none after it, no block opener at its end) or inserted into code (a blank cursor line
  with code of its block after it): the line, continued while its brackets stay open, or the
  block that line opens; multi-line completions are for the end of a block, an empty block and
  the body of a header the user wrote;
- stop at the start of the text after the cursor (the rest of the line, or the next non-blank
  line when a generated line repeats it);
- stop at the end of the block by indentation (a later line indented less than the block: the
  cursor's line, or the completion's first line where it does not write on the cursor's line);
- stop at an unbalanced closing bracket (one that closes a bracket opened before the cursor which
  the text after the cursor already closes, or that was never opened);
- no repeated lines (a line equal to the line before it ends the completion);
- stop before the first of the user's stop strings (``decoding.stop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
    stop_strings: tuple[str, ...] = ()  # the completion ends before the first of these
    prev_line: str = ""  # last non-blank line before the cursor line ("" when none)
    one_statement: bool = True  # server.multiline "auto": see ``statement_only``

    @property
    def single_line(self) -> bool:
        """True when the cursor is mid-line: complete to the end of the line only."""
        return self.line_suffix.strip() != ""

    @property
    def statement_only(self) -> bool:
        """True where the completion is one statement (``server.multiline`` "auto"): a line being
        written (text before the cursor and none after it) that does not end with a block opener,
        or a line inserted into code (``inserted``).  As Cody and Copilot do: the end of a block,
        an empty block and the body of a header the user wrote get as many lines as the model
        writes; elsewhere the user is writing a line, and the code after the cursor already holds
        what follows."""
        if not self.one_statement or self.line_suffix.strip():
            return False
        if self.line_prefix.strip():
            return not _opens_block(self.line_prefix)
        return self.inserted

    @property
    def inserted(self) -> bool:
        """True when the completion inserts a line into code: the cursor's line is blank, the
        next code is indented at least as deep as the cursor (its block goes on after it), and
        the cursor does not begin an empty block (a header right above, nothing of its body
        below)."""
        if self.line_prefix.strip() or self.line_suffix.strip():
            return False
        if not self.next_line.strip() or _indent_of(self.next_line) < _indent_of(self.line_prefix):
            return False
        return not (_opens_block(self.prev_line) and _indent_of(self.next_line) <= _indent_of(self.prev_line))


def cursor_of(prefix: str, suffix: str, stop_strings: Sequence[str] = (), one_statement: bool = True) -> Cursor:
    """Describe the cursor between ``prefix`` and ``suffix`` (the document split at it).

    ``stop_strings``: texts the completion must end before (``decoding.stop``); ``one_statement``:
    complete one statement where ``Cursor.statement_only`` says so (``server.multiline`` "auto")."""
    line_start = prefix.rfind("\n") + 1
    line_prefix = prefix[line_start:]
    prev_line = next((line for line in reversed(prefix[:line_start].splitlines()) if line.strip()), "")
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
        stop_strings=tuple(s for s in stop_strings if s),
        prev_line=prev_line,
        one_statement=one_statement,
    )


def cut(text: str, cursor: Cursor, final: bool = False) -> tuple[str, bool]:
    """The part of a generated ``text`` to show, and whether generation should stop.

    While generating (``final`` False) the last line may still grow, so the line rules judge only
    complete lines; ``final`` judges every line and trims trailing blanks.
    """
    text, stop = cut_at_strings(text, cursor.stop_strings)
    if cursor.statement_only:
        text, stop = _first_statement(text, cursor, final, stop)
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
    # the user's own line opens a block ("def f():|"): the completion is that block's body;
    # a header the model writes on a blank line is one statement of the block it writes
    opens_block = bool(cursor.line_prefix.strip()) and (cursor.line_prefix + lines[0]).rstrip().endswith(":")
    complete = len(lines) if (final or stop) else len(lines) - 1
    block_indent = _completion_indent(lines, cursor)
    for i in range(1, complete):
        line = lines[i]
        if not line.strip():
            continue
        indent = _indent_of(line)
        if indent < block_indent or (opens_block and indent <= cursor.block_indent):
            return _trim("\n".join(lines[:i])), True
        if cursor.next_line.strip() and line.strip() == cursor.next_line.strip():
            return _trim("\n".join(lines[:i])), True
        previous = lines[i - 1].strip()
        if line.strip() == previous and len(previous) > 1:
            return _trim("\n".join(lines[:i])), True
    return (_trim(text) if (stop or final) else text), stop


def cut_at_strings(text: str, strings: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest occurrence of any of ``strings``, and whether one occurred."""
    found = [at for at in (text.find(s) for s in strings if s) if at != -1]
    if not found:
        return text, False
    return text[: min(found)], True


def finish(text: str, cursor: Cursor, truncated: bool = False) -> str:
    """The completion to show once generation has ended: every rule applied, blanks trimmed.

    ``truncated``: generation stopped at ``decoding.max_new_tokens``, so the last line may be cut
    mid-expression; a multi-line completion then ends with its last complete line.
    """
    shown = cut(text, cursor, final=True)[0]
    if truncated and "\n" in shown.strip("\n"):
        shown = _trim(shown[: shown.rstrip("\n").rfind("\n")])
    return shown


def _trim(text: str) -> str:
    """Text without trailing blank lines or trailing spaces on its last line."""
    return text.rstrip(" \t\n") if text.strip() else ""


def _first_statement(text: str, cursor: Cursor, final: bool, stop: bool) -> tuple[str, bool]:
    """The first statement of ``text`` (``Cursor.statement_only``): its first line with code (the
    cursor's line when the completion writes on it), the lines after it while brackets opened on
    the cursor's line or in the completion stay open, or, when it ends with a colon, the block it
    opens (the lines indented deeper than it).  While generating, only complete lines are judged,
    and the indentation of a line already begun."""
    lines = text.split("\n")
    complete = len(lines) if (final or stop) else len(lines) - 1
    first = next((i for i in range(complete) if lines[i].strip()), None)
    if first is None:  # no complete line with code yet
        return text, stop
    header = (cursor.line_prefix if first == 0 else "") + lines[first]
    if _opens_block(header):
        level = _indent_of(header)
        for i in range(first + 1, len(lines)):  # a line begun with code has its indentation already
            if lines[i].strip() and _indent_of(lines[i]) <= level:
                return "\n".join(lines[:i]), True
        return text, stop
    for i in range(first, complete):
        if not _open_brackets(cursor.line_prefix + "\n".join(lines[: i + 1])):
            return "\n".join(lines[: i + 1]), True
    return text, stop


def _opens_block(line: str) -> bool:
    """Whether ``line``'s code (its trailing comment left out, strings roughly skipped) ends with
    the colon of a block header."""
    end = 0
    for i, _ in _code_chars(line):
        end = i + 1
    return line[:end].rstrip().endswith(":")


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


def _completion_indent(lines: list[str], cursor: Cursor) -> int:
    """The indentation below which a line ends the completion.

    Where the completion writes on the cursor's own non-blank line, the cursor's line sets the
    block.  Otherwise the completion's own first line does: on a blank cursor line (editors leave
    the cursor at column 0 on an empty line, so its column says little) a body written under a
    docstring ends where the model starts a line at the function's level or above; at the end of
    a line, a completion that starts on the next line may dedent (the next method after a
    ``return``) and ends where it dedents further.
    """
    if cursor.line_prefix.strip() and lines[0].strip():
        return cursor.block_indent
    first = next((line for line in lines[1:] if line.strip()), None)
    if cursor.line_prefix.strip():
        return cursor.block_indent if first is None else _indent_of(first)
    first = (cursor.line_prefix + lines[0]) if lines[0].strip() else first
    return cursor.block_indent if first is None else max(cursor.block_indent, _indent_of(first))


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
