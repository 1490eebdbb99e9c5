"""Readiness: a completion request that arrives while the model or index loads waits for them.

The wait (``server.ready_wait_s``) is on the event loop: a future per waiting request, woken when
a load ends (``Readiness.load_ended``, called by ``rest_lsp.lsp.startup``) or when a newer request
supersedes it (``rest_lsp.lsp.server.run_completion``).  ``$/cancelRequest`` cancels the awaiting task
at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lsprotocol import types as lsp

from rest_lsp.errors import Cancelled


class ReadyWaiters:
    """The completion requests waiting for the model and index: futures woken on the event loop."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Future] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def wake(self) -> None:
        """Wake every waiter (call on the event loop): what they wait on may have changed."""
        for future in self._waiting:
            if not future.done():
                future.set_result(None)
        self._waiting.clear()

    async def next_change(self, timeout: float) -> None:
        """Return at the next ``wake`` or after ``timeout`` seconds, whichever comes first.

        Cancelling the awaiting task ends the wait at once (``asyncio.CancelledError``)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiting.discard(future)


class Readiness:
    """Mixin of ``RestLanguageServer``: whether the model and index are loading, and the loads'
    starts and ends.  The server sets ``ready_waiters`` (a ``ReadyWaiters``) and ``loads_pending``
    (model/index loads started and not yet ended, changed on the loop) in its ``__init__``."""

    ready_waiters: ReadyWaiters
    loads_pending: int

    def loading(self) -> bool:
        """Whether the model and index are not ready but will be: a load is under way or about to
        start (before ``initialized``).  False once a load failed and none follows."""
        if self.service is None or self.service.ready():
            return False
        return self.loads_pending > 0 or self.service.state != "failed"

    def load_started(self) -> None:
        """A model/index load was started (on the event loop)."""
        self.loads_pending += 1

    def load_ended(self) -> None:
        """A model/index load ended, ready or failed (on the event loop): wake the waiters."""
        self.loads_pending = max(0, self.loads_pending - 1)
        self.ready_waiters.wake()


async def wait_until_ready(ls: Any, ticket: Any) -> bool:
    """Wait, at most ``server.ready_wait_s``, while the model or index loads; False when the
    request is to be answered empty instead (the wait ran out: logged with the reason).

    Raises ``Cancelled`` when a newer request supersedes this one meanwhile.  The wait is on the
    event loop (a future per request, woken when a load ends or a request supersedes): other
    requests, ``$/cancelRequest`` (which cancels the awaiting task at once) and ``shutdown`` are
    handled meanwhile, and no thread is held.  Nothing is waited for when the service is ready,
    when the wait is off (0), or when a load failed and none follows: ``complete`` then answers
    "not ready yet" as before.
    """
    service, limit = ls.service, ls.config.server.ready_wait_s
    if limit <= 0 or not ls.loading():
        return True
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    rid = ticket.request_id
    ls.log_line(f"[req {rid}] waiting up to {limit:g} s for the model and index ({service.state})")
    while ls.loading():
        if ticket.cancelled.is_set():
            raise Cancelled("superseded while waiting for the model and index", request_id=rid)
        remaining = t0 + limit - loop.time()
        if remaining <= 0:
            ls.log_line(f"[req {rid}] not ready after {limit:g} s ({service.state}): an empty result "
                        f"(server.ready_wait_s)", lsp.MessageType.Warning)
            return False
        await ls.ready_waiters.next_change(remaining)
    if ticket.cancelled.is_set():
        raise Cancelled("superseded while waiting for the model and index", request_id=rid)
    ls.log_line(f"[req {rid}] waited {(loop.time() - t0) * 1000:.0f} ms for the model and index")
    return True
