"""pygls's LSP protocol, with one leak of pygls 2.1 plugged (drop this when pygls fixes it)."""

from __future__ import annotations

import functools

from pygls.protocol import LanguageServerProtocol


class RestProtocol(LanguageServerProtocol):
    """pygls's protocol, without its leak of one ``Future`` per notification handled."""

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
