"""The document warm-up: the daemon's idle time spent prefilling a document's next prompt.

Why: on a CPU the prompt dominates latency.  A request at a new place in a file (another line,
after reading a while) would prefill its whole prompt, about 800 tokens and several seconds on
two cores, although the user has been looking at that file all along.  So after an edit, an
opened document or a completion, once no request has run or arrived for ``IDLE_S``, the daemon
builds the prompt the next completion there will most likely begin with (the context block,
chosen again at the last cursor place when the session's was chosen more than ``BLOCK_LINES``
away; then the window of the file's text from its start to as far as the budget reaches,
``prompt.window_ids``) and prefills it (``Engine.warm``).  A request anywhere in
that window then reuses the K/V up to its cursor and prefills only its suffix.

The warm-up yields: every request and every touch bumps a generation counter, and the prefill
stops between two chunks when it has moved (a request then waits at most one chunk's forward).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

#: seconds without a request or an edit before the warm-up starts (typing pauses shorter than
#: this are not worth a prefill the next keystroke would interrupt)
IDLE_S = 0.5
#: the warm-up keeps the context block chosen within this many lines of the cursor (a block chosen
#: again would change the prompt's first tokens: the whole window prefilled again)
BLOCK_LINES = 40
#: seconds ``close`` waits for a running warm-up to stop
CLOSE_WAIT_S = 5.0

#: ``warm(uri, text, offset, should_stop)``: prefill for a cursor at ``offset`` of ``text``
WarmFn = Callable[[str, str, "int | None", Callable[[], bool]], None]


@dataclass(frozen=True)
class Touch:
    """A document the user touched: its text, and where the cursor was last known (None: unknown)."""

    uri: str
    text: str
    offset: int | None


class DocumentWarmer:
    """A background thread that warms the last touched document once the daemon is idle."""

    def __init__(self, warm: WarmFn, idle_s: float = IDLE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._warm = warm
        self.idle_s = idle_s
        self.clock = clock
        self._cond = threading.Condition()
        self._pending: Touch | None = None
        self._places: dict[str, int] = {}  # the last known cursor offset per document
        self._last_at = clock()
        self._generation = 0
        self._in_flight = 0  # requests running: never idle while one is
        self._running: str | None = None  # the document being warmed
        self._closed = False
        self._thread: threading.Thread | None = None
        #: warm-ups done and stopped by a request
        self.done = 0
        self.stopped = 0

    def touch(self, uri: str, text: str, offset: int | None = None) -> None:
        """``uri`` changed, opened or was completed in (at ``offset``): warm it when idle."""
        with self._cond:
            if offset is not None:
                self._places[uri] = offset
            place = self._places.get(uri)
            self._pending = Touch(uri, text, None if place is None else min(place, len(text)))
            self._busy_locked()
            self._cond.notify_all()
        self._ensure_thread()

    def busy(self) -> None:
        """A request started: a running warm-up stops, and none starts until it ends (``idle``)."""
        with self._cond:
            self._in_flight += 1
            self._busy_locked()
            self._cond.notify_all()

    def idle(self) -> None:
        """A request ended: the idle wait starts from now."""
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)
            self._last_at = self.clock()
            self._cond.notify_all()

    def forget(self, uri: str) -> None:
        """``uri`` closed: no warm-up for it, and a running one stops."""
        with self._cond:
            self._places.pop(uri, None)
            if self._pending is not None and self._pending.uri == uri:
                self._pending = None
            if self._running == uri:
                self._generation += 1

    def close(self) -> None:
        """Stop the thread (a running warm-up stops at its next chunk)."""
        with self._cond:
            self._closed = True
            self._generation += 1
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(CLOSE_WAIT_S)

    def _busy_locked(self) -> None:
        self._generation += 1
        self._last_at = self.clock()

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="rest-lsp-warm", daemon=True)
                self._thread.start()

    def _next(self) -> tuple[Touch, int] | None:
        """The next warm-up once idle, and its generation; None when closed."""
        with self._cond:
            while not self._closed:
                if self._pending is not None and not self._in_flight:
                    quiet = self.clock() - self._last_at
                    if quiet >= self.idle_s:
                        touch, self._pending = self._pending, None
                        self._running = touch.uri
                        return touch, self._generation
                    self._cond.wait(self.idle_s - quiet)
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            touch, generation = item

            def moved() -> bool:
                return self._closed or self._generation != generation

            try:
                self._warm(touch.uri, touch.text, touch.offset, moved)
            except Exception:  # never a dead warm-up thread: the next touch tries again
                log.exception("the warm-up of %s failed", touch.uri)
            with self._cond:
                self._running = None
                if moved():
                    self.stopped += 1
                else:
                    self.done += 1
                self._cond.notify_all()

    def wait_rounds(self, count: int, timeout: float, done_only: bool = False) -> bool:
        """Wait until ``count`` warm-ups have ended (done or stopped; ``done_only``: done);
        False on the timeout."""
        deadline = self.clock() + timeout
        with self._cond:
            while self.done + (0 if done_only else self.stopped) < count:
                left = deadline - self.clock()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True


def warm_document(service, uri: str, text: str, offset: int | None, should_stop: Callable[[], bool]) -> None:
    """Prefill ``service``'s engine for the next completion in ``uri`` (cursor last at ``offset``,
    None: the top): the context block (chosen again when the session's was chosen more than
    ``BLOCK_LINES`` away), the prompt's window as far as it reaches (``prompt.window_ids``;
    moved to start ``WARM_LEAD`` of its budget above the cursor when it leaves less than a
    quarter below it).  One log line when something was prefilled; a failure is logged
    and costs nothing but the warm-up."""
    from rest_lsp.completion.prompt import WARM_LEAD, tail_start, window_ids

    if not service.ready() or not service.config.server.warm_documents or should_stop():
        return
    at = 0 if offset is None else max(0, min(offset, len(text)))
    try:
        tokenizer = service.loaded.tokenizer

        def encode(s: str) -> list[int]:
            return tokenizer.encode(s, add_special_tokens=False) if s else []

        # the block and the window kept where they serve this cursor (the cache keeps their
        # tokens); else a new block here, and a window starting WARM_LEAD of the prefix's
        # budget above the cursor, so that it reaches below it (where the user may go next)
        near = service.context_session.chosen_near(uri, text.count("\n", 0, at), BLOCK_LINES)
        prompt, _, _ = service.prompt_for(text, at, uri, restart=not near)
        if prompt.prefix_at is None:  # a layout whose first tokens move with the cursor: nothing to keep
            return
        if len(encode(prompt.prefix_text)) > prompt.prefix_budget * (1 + WARM_LEAD) / 2:  # little room below
            start = tail_start(text[:at], encode, int(prompt.prefix_budget * WARM_LEAD))
            service.keep_window(uri, text.count("\n", 0, start))
            prompt, _, _ = service.prompt_for(text, at, uri)
        stats = service.engine.warm(window_ids(prompt, text[at:], encode), should_stop)
    except Exception as exc:  # the warm-up is an extra: the next request prefills as before
        service.log(f"rest-lsp: warm-up of {uri} failed: {exc!r}")
        return
    if stats.prefill_tokens:
        state = "stopped by a request" if should_stop() else "warmed"
        service.log(f"rest-lsp: {state} {uri}: {stats.prefill_tokens} tokens prefilled, {stats.reused_tokens} "
                    f"reused, {stats.prefill_s:.2f} s")
