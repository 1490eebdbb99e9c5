"""The completion session of a context block: the block is chosen when a session starts and kept
while the user types on in the same place.

Why: the block comes before the file's text in the prompt, so a block chosen again on every
keystroke (its runs and names change with each character) would change the prompt's first tokens
and the engine would prefill the whole prompt each time.  Kept, the prompt's tokens stay the
same up to the edit and KV reuse (``Engine._prefill``) prefills only the new characters.

A session starts on the first request, in another document, on another line (a new line, or a
cursor that jumped there), after a cursor jump along the line of more than ``JUMP_CHARS``, after
a pause of more than ``PAUSE_S`` since the last request, and when the settings the block was
chosen for change.

With the document warm-up on (``server.warm_documents``, ``document_warm``) a session is a
document: the block is kept while the user moves and types within it, and chosen afresh in the
background when the daemon is idle (``restart``), at the place of the last request, together
with the prefill of the new prompt.  Moving to another line then costs no prefill of the block
and the text before the cursor, where choosing a block there would cost all of it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

#: seconds without a request after which the next one starts a new session (the user stopped
#: to think: a fresh block is worth one full prefill then)
PAUSE_S = 4.0
#: a cursor that moved more than this many characters along its line jumped (typing, deleting
#: and accepting a word move less)
JUMP_CHARS = 16

T = TypeVar("T")


@dataclass(frozen=True)
class Place:
    """Where and when a completion was asked: the document, the cursor's line and column, the time."""

    uri: str
    line: int
    column: int
    at: float  # seconds, monotonic


def place_of(uri: str, prefix: str, at: float) -> Place:
    """The place of a cursor after ``prefix`` (the document's text before it)."""
    line_start = prefix.rfind("\n") + 1
    return Place(uri, prefix.count("\n"), len(prefix) - line_start, at)


def continues(last: Place, now: Place, pause_s: float = PAUSE_S, jump_chars: int = JUMP_CHARS,
              per_document: bool = False) -> bool:
    """Whether a request at ``now`` continues the session of the request at ``last`` (with
    ``per_document``: whether it is in the same document)."""
    if per_document:
        return now.uri == last.uri
    return (now.uri == last.uri and now.line == last.line and abs(now.column - last.column) <= jump_chars
            and 0 <= now.at - last.at <= pause_s)


class ContextSession(Generic[T]):
    """The block of the current completion session and the place of its last request.

    Thread-safe: the server's completions and the history warm-up ask from different threads.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._last: Place | None = None
        self._start: Place | None = None  # where the block was chosen
        self._key: Any = None
        self._block: T | None = None
        #: sessions started (blocks chosen) and requests that reused a block
        self.started = 0
        self.reused = 0

    def block_for(self, uri: str, prefix: str, key: Any, choose: Callable[[], T], restart: bool = False,
                  per_document: bool = False) -> T:
        """The session's block when a request in ``uri`` after ``prefix`` continues it (and
        ``key``, the settings the block depends on, is the same); else ``choose()``'s, which
        starts a new session.  ``restart``: a new session in any case (the idle warm-up's);
        ``per_document``: a session lasts while requests stay in one document (the warm-up on)."""
        now = place_of(uri, prefix, self.clock())
        with self._lock:
            if (not restart and self._last is not None and self._key == key
                    and continues(self._last, now, per_document=per_document)):
                self._last = now
                self.reused += 1
                return self._block  # type: ignore[return-value]
        block = choose()  # outside the lock: a search must not hold up another thread's reuse
        with self._lock:
            self._last = self._start = now
            self._key, self._block = key, block
            self.started += 1
        return block

    def chosen_near(self, uri: str, line: int, within: int) -> bool:
        """Whether the session's block was chosen in ``uri`` at most ``within`` lines from ``line``."""
        with self._lock:
            start = self._start
        return start is not None and start.uri == uri and abs(start.line - line) <= within

    def reset(self) -> None:
        """Forget the session: the next request starts a new one."""
        with self._lock:
            self._last = self._start = self._key = self._block = None
