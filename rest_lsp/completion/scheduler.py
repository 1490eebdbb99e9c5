"""Supersession of completion requests: only the newest request may run or keep running."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field


@dataclass
class Ticket:
    """One completion request's claim on the decoder; set ``cancelled`` to stop it."""

    request_id: int
    uri: str
    cancelled: threading.Event = field(default_factory=threading.Event)


class Scheduler:
    """Supersession of completion requests: only the newest one may run or keep running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Ticket | None = None
        self._ids = itertools.count(1)

    def claim(self, uri: str) -> Ticket:
        """A ticket for a new request; the request in flight (any document) is cancelled."""
        with self._lock:
            if self._current is not None:
                self._current.cancelled.set()
            self._current = Ticket(next(self._ids), uri)
            return self._current

    def release(self, ticket: Ticket) -> None:
        """Forget ``ticket`` if it is still the newest."""
        with self._lock:
            if self._current is ticket:
                self._current = None
