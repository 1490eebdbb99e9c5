"""Stop rules: where a generated completion is cut, the way users expect an editor to cut it.

Pure functions over text.  ``Cursor`` describes where the completion starts; ``cut`` returns the
part of a generated text to show and whether generation can stop.  The rules:

- single-line mode when the cursor is mid-line (non-blank text after it on the line);
- one statement (``Cursor.statement_only``) everywhere but at the start of an empty block: the
  line, continued while its brackets stay open, or the block that line opens; multi-line
  completions are for the body of a header the user wrote (``def f():|``) and a blank line that
  begins a block with nothing of it written yet (Cody's multi-line trigger);
- stop at the start of the text after the cursor (the rest of the line, or the next non-blank
  line when a generated line repeats it);
- stop at the end of the block by indentation (a later line indented less than the block: the
  cursor's line, or the completion's first line where it does not write on the cursor's line),
  judged on a line's first code; unless that line defines a function the completion calls and
  the document does not define (a helper: kept, with its body);
- stop at an unbalanced closing bracket (one that closes a bracket opened before the cursor which
  the text after the cursor already closes, or that was never opened);
- no repeated lines (a line equal to the line before it ends the completion);
- stop before the first of the user's stop strings (``decoding.stop``).
"""

from __future__ import annotations

import builtins
import functools
import keyword
import re
from dataclasses import dataclass, field
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
    one_statement: bool = True  # server.multiline "auto": see ``statement_only``
    empty_block: bool = False  # the cursor's blank line begins a block with nothing of it written
    document: str = field(default="", repr=False, compare=False)  # the text the cursor is in

    @functools.cached_property
    def defined(self) -> frozenset[str]:
        """Names the document defines or imports (``defined_names``): scanned only when the helper
        rule of ``cut`` asks, not on every request."""
        return defined_names(self.document)

    @property
    def single_line(self) -> bool:
        """True when the cursor is mid-line: complete to the end of the line only."""
        return self.line_suffix.strip() != ""

    @property
    def statement_only(self) -> bool:
        """True where the completion is one statement (``server.multiline`` "auto"): everywhere
        but where the user wrote a block's header (``def f():|``) or stands on a blank line that
        begins a block with nothing of it written yet (``empty_block``).  As Cody's multi-line
        trigger and Copilot's empty-block check have it: at the start of a block the user wants
        the block; elsewhere (writing a line, inserting one, at the end of a block) one statement,
        and the code after the cursor, or the next request, holds what follows."""
        if not self.one_statement or self.line_suffix.strip():
            return False
        if self.line_prefix.strip():
            return not _opens_block(self.line_prefix)
        return not self.empty_block


def cursor_of(prefix: str, suffix: str, stop_strings: Sequence[str] = (), one_statement: bool = True) -> Cursor:
    """Describe the cursor between ``prefix`` and ``suffix`` (the document split at it).

    ``stop_strings``: texts the completion must end before (``decoding.stop``); ``one_statement``:
    complete one statement where ``Cursor.statement_only`` says so (``server.multiline`` "auto")."""
    line_start = prefix.rfind("\n") + 1
    line_prefix = prefix[line_start:]
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
        one_statement=one_statement,
        empty_block=not line_prefix.strip() and _begins_empty_block(prefix[:line_start], next_line),
        document=prefix + "\n" + suffix,
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
    # a line begun with code has its indentation already: the end of the block is judged on it,
    # without decoding the rest of a line that is cut anyway
    for i in range(1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        indent = _indent_of(line)
        if indent < block_indent or (opens_block and indent <= cursor.block_indent):
            helper = _HELPER_DEF.match(line)
            begun_def = helper is None and i >= complete and _may_become_def(line)
            # only a def line asks which names the completion wants: most block ends never scan
            wanted = undefined_calls("\n".join(lines[:i]), cursor.defined) if helper or begun_def else set()
            if begun_def and wanted:
                break  # the begun line may yet define a function the completion calls
            if helper is None or helper.group(1) not in wanted:
                return _trim("\n".join(lines[:i])), True
            # the completion calls a function the document does not define, and the model writes
            # it next: that function is part of the completion (without it the code is broken)
            block_indent, opens_block = indent + 1, False
            continue
        if i >= complete:
            break
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


_HELPER_DEF = re.compile(r"[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)[ \t]*\(")
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)[ \t]*\(")
_BINDINGS = re.compile(
    r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)"  # def f / class C
    r"|^[ \t]*(\w+)[ \t]*(?::[^=\n]*)?=(?!=)"  # f = ... / f: T = ...
    r"|^[ \t]*(?:from[ \t]+\S+[ \t]+)?import[ \t]+\(?([^\n#)]+)",  # import a.b as c / from m import f, g
    re.M)


def defined_names(text: str) -> frozenset[str]:
    """Names ``text`` defines at the start of a line: functions, classes, assigned names and
    imports (a rough scan: the helper rule of ``cut`` asks only whether a called name is new)."""
    names: set[str] = set()
    for match in _BINDINGS.finditer(text):
        defined, assigned, imported = match.groups()
        names.update(n for n in (defined, assigned) if n)
        for part in (imported or "").split(","):
            words = part.split()
            if words:
                names.add(words[-1] if len(words) >= 3 and words[-2] == "as" else words[0].split(".")[0])
    return frozenset(names)


def undefined_calls(text: str, defined: frozenset[str]) -> set[str]:
    """Names ``text`` calls that neither it, ``defined`` nor Python's builtins define."""
    called = {name for name in _CALL.findall(text) if not keyword.iskeyword(name)}
    return called - defined - defined_names(text) - _BUILTINS


_BUILTINS = frozenset(dir(builtins))


def _may_become_def(line: str) -> bool:
    """Whether a begun line may still turn out a ``def`` line whose name is not written whole."""
    code = line.strip()
    return any(w.startswith(code) or (code.startswith(w) and "(" not in code) for w in ("def ", "async def "))


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


#: lines looked at before the cursor for the header of the block it begins (a docstring between)
HEADER_LOOKBACK_LINES = 200


def _begins_empty_block(before: str, next_line: str) -> bool:
    """Whether a blank cursor line after the text ``before`` begins a block with nothing of it
    written: the last non-blank line before it is a block header (a docstring right under the
    header counts as nothing; a comment, as in Cody, is something), and ``next_line`` (the first
    non-blank line after the cursor) is indented no deeper than that header."""
    lines = [line for line in before.splitlines()[-HEADER_LOOKBACK_LINES:] if line.strip()]
    if lines and lines[-1].rstrip().endswith(('"""', "'''")):
        lines = lines[: _docstring_start(lines)]
    if not lines or not _opens_block(lines[-1]):
        return False
    return not next_line.strip() or _indent_of(next_line) <= _indent_of(lines[-1])


def _docstring_start(lines: list[str]) -> int:
    """The index of the line that opens the docstring the last of ``lines`` closes (``len(lines)``
    when that string is not a docstring: code before its opening quotes)."""
    last = lines[-1].strip()
    quote = last[-3:]
    if last.count(quote) >= 2:  # opened and closed on this line
        return len(lines) - 1 if last.lstrip("rRuU").startswith(quote) else len(lines)
    for i in range(len(lines) - 2, -1, -1):
        if quote in lines[i]:
            return i if lines[i].strip().lstrip("rRuU").startswith(quote) else len(lines)
    return len(lines)


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
