"""A remote datastore: the wire format of a served index, and the tier a daemon drafts from.

Wire format (msgpack over HTTP, ``POST <url>/retrieve``, content type ``application/msgpack``)::

    request   {"v": 1, "tokenizer": sha256 identity, "context": [ids (the last max_suffix)],
               "mode", "span", "max_candidates", "min_suffix", "max_suffix", "max_nodes",
               "offset" (the sampling offset, a float)}
    response  {"v": 1, "suffix_len": int, "seconds": float (server side),
               "candidates": [[tokens, count, source, suffix_len], ...]}
    error     {"v": 1, "error": "tokenizer_mismatch" | "bad_request" | "internal", "message",
               "expected", "found"}  with status 409 / 400 / 500

``GET <url>/info`` answers ``{"v": 1, "tokenizer", "shards", "tokens", "replicas"}``.

The request carries the client's resolved query (``indexer.search.retrieval.Query`` less the encoded
context), so the server answers exactly what a local ``Datastore`` configured like the client
would over the same shards.  Its tokenizer identity must equal the index's: a mismatch is an
error (``TokenizerMismatchError``), never drafts in another vocabulary.

``RemoteTier`` is that server seen as one more datastore tier: ``start`` sends the request from
a background thread (one in flight per tier) when the step begins, so it overlaps the local
search, and ``collect`` waits at most until the step's deadline (``IndexConfig.remote_budget_ms``
after the step began).  A tier that errs, or misses its deadline ``SLOW_STRIKES`` times in a row,
is left out (logged once) until ``remote_retry_s`` have passed; then it is tried again.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable, Sequence

import msgpack

from indexer.search.retrieval import Candidate, Query, Retrieval, encode_context
from indexer.errors import DatastoreError, RemoteDatastoreError, TokenizerMismatchError

log = logging.getLogger(__name__)

WIRE_VERSION = 1
CONTENT_TYPE = "application/msgpack"
RETRIEVE_PATH = "/retrieve"
INFO_PATH = "/info"
#: a request still unanswered after this long is abandoned (its connection closed)
REQUEST_TIMEOUT_S = 2.0
#: deadlines missed in a row before the tier is left out until its retry time
SLOW_STRIKES = 3
#: modes a remote tier answers ("rest_paper" picks one length over every tier: local only)
REMOTE_MODES = ("longest", "all_lengths")


@dataclass(frozen=True)
class Request:
    """One retrieval request as it travels: the tokenizer, the context, the resolved query."""

    tokenizer: str
    context: tuple[int, ...]
    mode: str
    span: int
    max_candidates: int
    min_suffix: int
    max_suffix: int
    max_nodes: int
    offset: float

    @classmethod
    def of_query(cls, tokenizer_identity: str, context_ids: Sequence[int], q: Query) -> "Request":
        """The request that asks a server what ``q`` asks the local tiers."""
        tail = [int(t) for t in context_ids[-q.max_suffix:]] if q.max_suffix else []
        return cls(tokenizer_identity, tuple(tail), q.mode, q.span, q.max_candidates, q.min_suffix,
                   q.max_suffix, q.max_nodes, q.offset)

    def query(self, token_dtype, vocab_size: int) -> Query:
        """The query this request resolves to over shards of ``token_dtype`` and ``vocab_size``."""
        context, usable = encode_context(self.context, self.max_suffix, token_dtype, vocab_size)
        return Query(context, usable, self.min_suffix, self.max_suffix, self.span, self.max_candidates,
                     self.max_nodes, self.offset, self.mode)

    def encode(self) -> bytes:
        return msgpack.packb({"v": WIRE_VERSION, "tokenizer": self.tokenizer, "context": list(self.context),
                              "mode": self.mode, "span": self.span, "max_candidates": self.max_candidates,
                              "min_suffix": self.min_suffix, "max_suffix": self.max_suffix,
                              "max_nodes": self.max_nodes, "offset": self.offset}, use_bin_type=True)

    @classmethod
    def decode(cls, body: bytes) -> "Request":
        """Parse and check a request body; RemoteDatastoreError (a bad request) when malformed."""
        try:
            d = msgpack.unpackb(body, raw=False)
            if d.get("v") != WIRE_VERSION:
                raise ValueError(f"wire version {d.get('v')!r}, expected {WIRE_VERSION}")
            req = cls(str(d["tokenizer"]), tuple(int(t) for t in d["context"]), str(d["mode"]),
                      int(d["span"]), int(d["max_candidates"]), int(d["min_suffix"]), int(d["max_suffix"]),
                      int(d["max_nodes"]), float(d["offset"]))
        except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException) as exc:
            raise RemoteDatastoreError(f"bad retrieval request: {exc}", status=400) from exc
        if req.mode not in ("longest", "all_lengths", "rest_paper") or req.span < 1 or req.max_candidates < 1 \
                or not 1 <= req.min_suffix <= req.max_suffix or req.max_nodes < 0:
            raise RemoteDatastoreError(f"bad retrieval request: {req}", status=400)
        return req


def encode_retrieval(candidates: Sequence[Candidate], suffix_len: int, seconds: float) -> bytes:
    """A response body."""
    return msgpack.packb({"v": WIRE_VERSION, "suffix_len": suffix_len, "seconds": seconds,
                          "candidates": [[list(c.tokens), c.count, c.source, c.suffix_len] for c in candidates]},
                         use_bin_type=True)


def encode_error(exc: Exception) -> tuple[int, bytes]:
    """(HTTP status, body) of an error the server answers with."""
    if isinstance(exc, TokenizerMismatchError):
        status, kind = 409, "tokenizer_mismatch"
    elif isinstance(exc, RemoteDatastoreError) and getattr(exc, "status", 500) == 400:
        status, kind = 400, "bad_request"
    else:
        status, kind = 500, "internal"
    body = {"v": WIRE_VERSION, "error": kind, "message": str(exc),
            "expected": getattr(exc, "expected", None), "found": getattr(exc, "found", None)}
    return status, msgpack.packb(body, use_bin_type=True)


def decode_retrieval(status: int, body: bytes, url: str) -> Retrieval:
    """The retrieval in a response; TokenizerMismatchError or RemoteDatastoreError for an error."""
    try:
        d = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise RemoteDatastoreError(f"remote datastore {url} answered {status} with no msgpack body: {exc}",
                                   url=url, status=status) from exc
    if status == 409 and isinstance(d, dict) and d.get("error") == "tokenizer_mismatch":
        raise TokenizerMismatchError(
            f"remote datastore {url} serves an index of tokenizer {str(d.get('expected'))[:12]}, "
            f"not {str(d.get('found'))[:12]}: its drafts would be in another vocabulary",
            url=url, expected=d.get("found"), found=d.get("expected"))
    if status != 200 or not isinstance(d, dict) or "candidates" not in d:
        message = d.get("message") if isinstance(d, dict) else d
        raise RemoteDatastoreError(f"remote datastore {url} answered {status}: {message}", url=url, status=status)
    cands = [Candidate(tuple(tokens), count, source, length) for tokens, count, source, length in d["candidates"]]
    return Retrieval(cands, int(d["suffix_len"]), float(d.get("seconds", 0.0)))


class RemoteTier:
    """A served index as one more tier of a daemon's datastore (see the module docstring)."""

    def __init__(self, url: str, tokenizer_identity: str, *, budget_ms: float, retry_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteDatastoreError(f"remote datastore URL {url!r} must be http(s)://host[:port][/path]", url=url)
        self.url = url.rstrip("/")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = parts.path.rstrip("/")
        self.identity = tokenizer_identity
        self.budget_s = budget_ms / 1000.0
        self.retry_s = retry_s
        self.clock = clock
        self.state = "up"  # "up" | "down" (until retry_at) | "mismatch" (never again)
        self.reason = ""
        self.retry_at = 0.0
        self.strikes = 0
        self.counts = {"calls": 0, "answered": 0, "late": 0, "errors": 0, "skipped": 0}
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: Future | None = None
        self._lock = threading.Lock()

    # -- one blocking request (the CLI's `index query --remote`, and the background thread) ----
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _call(self, method: str, path: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE} if body is not None else {}
        for attempt in (0, 1):  # a kept-alive connection the server closed: reconnect once
            conn = self._connection(timeout)
            try:
                conn.request(method, self._path + path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
                self._drop_connection()
                if attempt:
                    raise RemoteDatastoreError(f"remote datastore {self.url}: {exc}", url=self.url) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                raise RemoteDatastoreError(f"remote datastore {self.url}: {exc or type(exc).__name__}",
                                           url=self.url) from exc
        raise AssertionError("unreachable")

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def fetch(self, request: Request, timeout: float = REQUEST_TIMEOUT_S) -> Retrieval:
        """Ask the server now and wait for the answer (raises on any failure)."""
        t0 = time.perf_counter()
        status, body = self._call("POST", RETRIEVE_PATH, request.encode(), timeout)
        r = decode_retrieval(status, body, self.url)
        r.seconds = time.perf_counter() - t0
        return r

    def info(self, timeout: float = REQUEST_TIMEOUT_S) -> dict:
        """The server's ``/info``: tokenizer identity, shards, tokens, replicas."""
        status, body = self._call("GET", INFO_PATH, None, timeout)
        try:
            d = msgpack.unpackb(body, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise RemoteDatastoreError(f"remote datastore {self.url}/info: {exc}", url=self.url) from exc
        if status != 200:
            raise RemoteDatastoreError(f"remote datastore {self.url}/info answered {status}", url=self.url)
        return d

    # -- one decoding step: start early, collect by the deadline, never raise -----------------
    def start(self, context_ids: Sequence[int], q: Query) -> Future | None:
        """Send the step's request in the background; None when the tier sits this step out."""
        if q.mode not in REMOTE_MODES or self.state == "mismatch":
            return None
        with self._lock:
            if self.state == "down" and self.clock() < self.retry_at:
                self.counts["skipped"] += 1
                return None
            if self._inflight is not None and not self._inflight.done():  # still busy with a late one
                self.counts["skipped"] += 1
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remote-tier")
            self.counts["calls"] += 1
            fut = self._pool.submit(self.fetch, Request.of_query(self.identity, context_ids, q))
            self._inflight = fut
            return fut

    def collect(self, fut: Future | None, deadline: float) -> Retrieval | None:
        """The answer of ``start``'s request if it comes by ``deadline`` (a ``time.perf_counter``
        time); None otherwise, with the failure noted (logged once per outage)."""
        if fut is None:
            return None
        try:
            r = fut.result(timeout=max(0.0, deadline - time.perf_counter()))
        except FutureTimeout:
            self.counts["late"] += 1
            self.strikes += 1
            if self.strikes >= SLOW_STRIKES:
                self._down(f"answered later than the {self.budget_s * 1000:g} ms budget {self.strikes} times in a row")
            return None
        except TokenizerMismatchError as exc:
            self.counts["errors"] += 1
            if self.state != "mismatch":
                log.error("%s; this remote tier is off until the server's index or this tokenizer changes", exc)
            self.state, self.reason = "mismatch", str(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the step drafts locally
            self.counts["errors"] += 1
            self._down(str(exc) if isinstance(exc, DatastoreError) else f"{type(exc).__name__}: {exc}")
            return None
        self.counts["answered"] += 1
        self.strikes = 0
        if self.state == "down":
            log.info("remote datastore %s answers again", self.url)
            self.state, self.reason = "up", ""
        return r

    def _down(self, reason: str) -> None:
        if self.state != "down":
            log.warning("remote datastore %s: %s; drafting from the local tiers, retrying every %g s",
                        self.url, reason, self.retry_s)
        else:
            log.debug("remote datastore %s still failing: %s", self.url, reason)
        self.state, self.reason = "down", reason
        self.retry_at = self.clock() + self.retry_s
        self.strikes = 0

    def stats(self) -> dict:
        return {"url": self.url, "state": self.state, "reason": self.reason, "budget_ms": self.budget_s * 1000,
                **self.counts}

    def close(self) -> None:
        """Stop the background thread (an unanswered request is abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
