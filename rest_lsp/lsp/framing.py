"""The protocol's edge: base-protocol framing, JSON-RPC envelope checks and the LSP lifecycle gate.

pygls's reader trusts its input: invalid JSON is logged without the ParseError that JSON-RPC
requires, a ``Content-Length`` larger than the bytes that follow stalls it forever, a request
that is not a JSON-RPC object or whose params do not fit its method gets no answer, and it
neither refuses requests before ``initialize`` nor answers requests after ``shutdown``.  This
module replaces its read loop (not its protocol): bytes are framed by ``Framer``, each body is
checked by ``check_envelope`` and the lifecycle by ``Gate``, and only well-formed messages reach
``protocol.handle_message``.  The rules, from the JSON-RPC 2.0 and LSP 3.18 specifications:

- invalid JSON: ``-32700`` ParseError, id null;
- JSON that is not a request, notification or response object (arrays too: LSP has no
  batches): ``-32600`` InvalidRequest, with the request's id when one can be read, else null;
- a request whose params do not fit its method: ``-32602`` InvalidParams with its id;
- leniency: a method whose params carry nothing (``void`` in the LSP metamodel: ``shutdown``,
  ``exit``, the server-to-client refreshes; or an object without fields: ``initialized``) is
  accepted with ``"params": null`` or without params, as clients in the wild send them
  (``normalize_params``); ``params: null`` on any other method is still ``-32600``;
- a request before ``initialize``: ``-32002`` ServerNotInitialized; notifications before it
  are dropped, except ``exit``;
- a request after ``shutdown``: ``-32600`` InvalidRequest; notifications other than ``exit``
  are dropped; a second ``initialize``: ``-32600``;
- framing: a header block that is not ``Name: value`` lines with one ``Content-Length`` is
  reported (``-32700``, id null) and skipped up to the next ``Content-Length:`` header; a body
  that contains such a header (raw CR/LF cannot occur in valid JSON) was cut short, so it is
  reported and reading resumes at that header instead of waiting for bytes that never come; a
  body larger than ``MAX_MESSAGE_BYTES`` is answered with ``-32600`` and skipped without being
  held in memory.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

#: the largest message body read into memory (a 10 MB file opened in the editor is ~11 MB of JSON)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: the largest header block; real clients send one or two short lines
MAX_HEADER_BYTES = 8 * 1024

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002

#: where a message starts: the header every message must have, at the start of a line or glued
#: to garbage before it
_HEADER_AT = re.compile(rb"Content-Length:[ \t]*\d+\r\n")
_HEADER_LINE = re.compile(rb"([!-9;-~]+):[ \t]*(.*)")
_HEADER_END = b"\r\n\r\n"
#: bytes kept between two chunks of a skipped body, so a header split across them is still seen
_OVERLAP = 64


@dataclass(frozen=True)
class Body:
    """One framed message body."""

    data: bytes


@dataclass(frozen=True)
class FramingError:
    """Bytes that could not be framed; ``code`` is the JSON-RPC error to answer with (id null)."""

    code: int
    reason: str


class Framer:
    """Splits a byte stream into ``Body``s and ``FramingError``s (sans I/O: ``feed`` bytes in).

    It holds at most one message (``MAX_MESSAGE_BYTES``) plus one header block; an oversized
    body is skipped as it streams in.
    """

    def __init__(self, max_body: int = MAX_MESSAGE_BYTES, max_header: int = MAX_HEADER_BYTES) -> None:
        self.max_body = max_body
        self.max_header = max_header
        self._buf = bytearray()
        self._need: int | None = None  # body length once a header block was read
        self._skip = 0  # bytes of an oversized body still to discard
        self._scanned = 0  # how far the current body was searched for a header

    def feed(self, data: bytes) -> list[Body | FramingError]:
        """Take bytes; return the events they complete."""
        self._buf += data
        out: list[Body | FramingError] = []
        while True:
            if self._skip:
                if not self._skip_body(out):
                    return out
            elif self._need is None:
                if not self._read_header(out):
                    return out
            elif not self._read_body(out):
                return out

    def _resync(self, start: int) -> bool:
        """Drop bytes up to the next header at or after ``start``; False when there is none yet."""
        found = _HEADER_AT.search(self._buf, start)
        if found is None:
            keep = min(len(self._buf), _OVERLAP)
            del self._buf[: len(self._buf) - keep]
            return False
        del self._buf[: found.start()]
        return True

    def _read_header(self, out: list) -> bool:
        end = self._buf.find(_HEADER_END)
        if end < 0:
            if len(self._buf) > self.max_header:
                out.append(FramingError(PARSE_ERROR, f"no header end within {self.max_header} bytes"))
                self._resync(1)
            return False
        block = bytes(self._buf[:end])
        length, problem = _parse_header(block)
        if problem is not None:
            out.append(FramingError(PARSE_ERROR, problem))
            # skip to the next header inside or after this block (garbage glued to a header)
            if not self._resync(1):
                self._buf.clear()
            return True
        del self._buf[: end + len(_HEADER_END)]
        if length > self.max_body:
            out.append(FramingError(INVALID_REQUEST, f"message of {length} bytes exceeds the limit of {self.max_body}"))
            self._skip = length
        else:
            self._need = length
            self._scanned = 0
        return True

    def _read_body(self, out: list) -> bool:
        need = self._need
        # a header inside the body: the body was cut short and a new message starts there
        window_end = min(len(self._buf), need + _OVERLAP)
        found = _HEADER_AT.search(self._buf, max(0, self._scanned - _OVERLAP), window_end)
        if found is not None and found.start() < need:
            out.append(FramingError(PARSE_ERROR, f"body shorter than its Content-Length {need}: a new message starts at byte {found.start()}"))
            del self._buf[: found.start()]
            self._need = None
            return True
        self._scanned = window_end
        if len(self._buf) < need:
            return False
        out.append(Body(bytes(self._buf[:need])))
        del self._buf[:need]
        self._need = None
        return True

    def _skip_body(self, out: list) -> bool:
        found = _HEADER_AT.search(self._buf, 0, min(len(self._buf), self._skip + _OVERLAP))
        if found is not None and found.start() < self._skip:
            del self._buf[: found.start()]
            self._skip = 0
            return True
        # all of it once the body is complete; else all but a tail that may start a header
        drop = self._skip if len(self._buf) >= self._skip else max(0, len(self._buf) - _OVERLAP)
        del self._buf[:drop]
        self._skip -= drop
        return self._skip == 0


def _parse_header(block: bytes) -> tuple[int, str | None]:
    """(Content-Length, None) for a valid header block, else (0, the problem)."""
    length: int | None = None
    for line in block.split(b"\r\n"):
        m = _HEADER_LINE.fullmatch(line)
        if m is None:
            return 0, f"malformed header line {line[:80]!r}"
        name, value = m.group(1).lower(), m.group(2).strip()
        if b"Content-Length:" in value:  # a header glued to the next message's header
            return 0, f"header {name[:40]!r} runs into another Content-Length"
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return 0, f"bad Content-Length {value[:40]!r}"
            length = int(value)
    if length is None:
        return 0, "no Content-Length header"
    return length, None


# ----- JSON-RPC envelope ----------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """An error to answer instead of handling a message (``id`` None: JSON null)."""

    id: int | str | None
    code: int
    message: str


def _valid_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)


def decode_body(data: bytes) -> tuple[Any, Reply | None]:
    """The JSON value of a body, or the ParseError to answer."""
    try:
        return json.loads(data.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, Reply(None, PARSE_ERROR, f"Parse error: {type(exc).__name__}: {str(exc)[:200]}")


def _paramless_methods() -> tuple[frozenset[str], frozenset[str]]:
    """(methods whose params are ``void``, methods whose params are an object without fields),
    read from the LSP metamodel as lsprotocol carries it."""
    import attrs
    from lsprotocol.types import METHOD_TO_TYPES

    void, empty = set(), set()
    for method, types in METHOD_TO_TYPES.items():
        params = types[2]
        if params is None:
            void.add(method)
        elif attrs.has(params) and not attrs.fields(params):
            empty.add(method)
    return frozenset(void), frozenset(empty)


#: methods that take no params (shutdown, exit, ...) and methods whose params object has no
#: fields (initialized): ``"params": null`` and absent params are accepted for them
VOID_PARAMS, EMPTY_PARAMS = _paramless_methods()


def normalize_params(value: Any) -> Any:
    """``value`` with the params of a method that takes none made canonical: ``"params": null``
    dropped (void methods), ``"params": null`` or absent made ``{}`` (an object without fields).

    Anything else is returned as it is, for ``check_envelope`` to judge."""
    if not isinstance(value, dict) or not isinstance(value.get("method"), str):
        return value
    method = value["method"]
    if method in VOID_PARAMS and "params" in value and value["params"] is None:
        return {k: v for k, v in value.items() if k != "params"}
    if method in EMPTY_PARAMS and value.get("params") is None:
        return {**value, "params": {}}
    return value


def check_envelope(value: Any) -> Reply | None:
    """None for a well-formed request, notification or response object, else the error to answer."""
    if isinstance(value, list):
        return Reply(None, INVALID_REQUEST, "Invalid Request: batches are not part of LSP")
    if not isinstance(value, dict):
        return Reply(None, INVALID_REQUEST, f"Invalid Request: a {type(value).__name__}, not an object")
    rid = value.get("id") if _valid_id(value.get("id")) else None
    if value.get("jsonrpc") != "2.0":
        return Reply(rid, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"')
    if "id" in value and not _valid_id(value["id"]) and not ("method" not in value and value["id"] is None):
        return Reply(None, INVALID_REQUEST, "Invalid Request: id must be an integer or a string")
    if "method" in value:
        if not isinstance(value["method"], str):
            return Reply(rid, INVALID_REQUEST, "Invalid Request: method must be a string")
        if "params" in value and not isinstance(value["params"], (dict, list)):
            return Reply(rid, INVALID_REQUEST, "Invalid Request: params must be an object or an array")
        return None
    if "id" in value and (("result" in value) != ("error" in value)):
        return None  # a response to one of our requests
    return Reply(rid, INVALID_REQUEST, "Invalid Request: neither a request, a notification nor a response")


class Gate:
    """The LSP lifecycle: what may pass before ``initialize`` and after ``shutdown``."""

    def __init__(self, initialized: Callable[[], bool], shut_down: Callable[[], bool]) -> None:
        self._initialized = initialized
        self._shut_down = shut_down

    def check(self, message: dict) -> Reply | None | bool:
        """None: pass it on; a Reply: answer it; False: drop it silently (a notification)."""
        method = message.get("method")
        if method is None or method == "exit":
            return None
        is_request = "id" in message
        if self._shut_down():
            return Reply(message["id"], INVALID_REQUEST, f"{method}: the server is shutting down") if is_request else False
        if method == "initialize":
            return Reply(message["id"], INVALID_REQUEST, "initialize may be sent only once") if self._initialized() else None
        if not self._initialized():
            return Reply(message["id"], SERVER_NOT_INITIALIZED, f"{method}: the server is not initialized") if is_request else False
        return None


def error_response(reply: Reply) -> dict[str, Any]:
    """The JSON-RPC response object of an error reply."""
    return {"jsonrpc": "2.0", "id": reply.id, "error": {"code": reply.code, "message": reply.message}}


class Edge:
    """Framing, envelope and lifecycle in front of a pygls protocol."""

    def __init__(self, protocol: Any, gate: Gate) -> None:
        self.protocol = protocol
        self.gate = gate
        self.framer = Framer()
        #: counts of what was refused, by JSON-RPC code (for tests and ``rest-lsp.status``)
        self.refused: dict[int, int] = {}

    def _answer(self, reply: Reply) -> None:
        self.refused[reply.code] = self.refused.get(reply.code, 0) + 1
        log.warning("refused a message: %s (%s)", reply.message, reply.code)
        self.protocol._send_data(error_response(reply))

    def feed(self, data: bytes) -> None:
        """Handle the messages ``data`` completes."""
        for event in self.framer.feed(data):
            if isinstance(event, FramingError):
                self._answer(Reply(None, event.code, f"Framing error: {event.reason}"))
            else:
                self.handle_body(event.data)

    def handle_body(self, data: bytes) -> None:
        """One message body: checked, then handed to pygls."""
        value, reply = decode_body(data)
        value = normalize_params(value)
        reply = reply or check_envelope(value)
        if reply is not None:
            self._answer(reply)
            return
        verdict = self.gate.check(value)
        if verdict is False:
            log.info("dropped notification %r outside the session", value.get("method"))
            return
        if verdict is not None:
            self._answer(verdict)
            return
        try:
            message = self.protocol.structure_message(value)
        except Exception as exc:  # params that do not fit the method
            if "method" in value and "id" in value:
                self._answer(Reply(value["id"], INVALID_PARAMS, f"Invalid params for {value['method']}: {type(exc).__name__}"))
            else:
                log.warning("dropped a malformed %s: %s", value.get("method", "response"), exc)
            return
        try:
            self.protocol.handle_message(message)
        except Exception:  # pygls answers request errors itself; nothing may escape the loop
            log.exception("handling %s failed", value.get("method", "a response"))


async def serve(stop: Any, read: Callable[[], Awaitable[bytes]], edge: Edge) -> None:
    """Read chunks with ``read`` (empty at end of input) and feed them until ``stop`` is set."""
    while not stop.is_set():
        data = await read()
        if not data:
            break
        edge.feed(data)
