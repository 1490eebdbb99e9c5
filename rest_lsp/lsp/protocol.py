"""pygls's LSP protocol, with a leak and a crash of pygls 2.1 fixed (drop each when pygls fixes it)."""

from __future__ import annotations

import functools

from pygls.protocol import LanguageServerProtocol


class InFlight(dict):
    """pygls's table of in-flight futures, iterated over a snapshot.

    pygls 2.1's ``shutdown`` cancels every future of the table while it iterates over it, and
    cancelling a ``concurrent.futures.Future`` (what pygls gives a notification or a request that
    its built-in handlers wrap: ``initialized``, ``workspace/executeCommand``, ...) runs its done
    callbacks at once, which take it out of the table: "dictionary changed size during iteration",
    so a ``shutdown`` sent while such a handler was still awaiting (``initialized`` waits for the
    client's answer to its progress token; an async command) was answered with an internal error
    and the server never marked itself shut down (``exit`` then gave 1).
    """

    def items(self):  # type: ignore[override]
        return list(super().items())


class RestProtocol(LanguageServerProtocol):
    """pygls's protocol, without its leak of one ``Future`` per notification handled and without
    its crash on ``shutdown`` while a wrapped handler is in flight (``InFlight``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._request_futures = InFlight(self._request_futures)

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        # pygls 2.1 files the future of every generator handler (its own didOpen, didChange,
        # didClose, ... wrap ours) in ``_request_futures`` under the message id, and takes it out
        # only when it answers a request; a notification's id is a fresh uuid4, so every
        # keystroke's didChange left a Future there for good (about 900 a minute, ~2 KB each, in
        # ``rest-lsp bench soak``).  A notification's future is dropped once it is done.
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        future = self._request_futures.get(msg_id)
        if future is not None and callback == self._check_handler_result:  # a notification
            future.add_done_callback(functools.partial(self._forget, msg_id))

    def _forget(self, msg_id, future) -> None:
        """Drop a finished notification's future (if that id still names it)."""
        if self._request_futures.get(msg_id) is future:
            self._request_futures.pop(msg_id, None)
