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


def continues(last: Place, now: Place, pause_s: float = PAUSE_S, jump_chars: int = JUMP_CHARS) -> bool:
    """Whether a request at ``now`` continues the session of the request at ``last``."""
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
        self._key: Any = None
        self._block: T | None = None
        #: sessions started (blocks chosen) and requests that reused a block
        self.started = 0
        self.reused = 0

    def block_for(self, uri: str, prefix: str, key: Any, choose: Callable[[], T]) -> T:
        """The session's block when a request in ``uri`` after ``prefix`` continues it (and
        ``key``, the settings the block depends on, is the same); else ``choose()``'s, which
        starts a new session."""
        now = place_of(uri, prefix, self.clock())
        with self._lock:
            if self._last is not None and self._key == key and continues(self._last, now):
                self._last = now
                self.reused += 1
                return self._block  # type: ignore[return-value]
        block = choose()  # outside the lock: a search must not hold up another thread's reuse
        with self._lock:
            self._last, self._key, self._block = now, key, block
            self.started += 1
        return block

    def reset(self) -> None:
        """Forget the session: the next request starts a new one."""
        with self._lock:
            self._last = self._key = self._block = None
