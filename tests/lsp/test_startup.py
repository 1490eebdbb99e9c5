"""Start-up: completion requests that arrive while the model and index load wait for them
(``server.ready_wait_s``), on the event loop; ``params: null`` where a method takes no params.

The unit tests drive ``run_completion`` in-process (directly, or through the server's edge as the
transport hands it messages) against a service stand-in whose loading ends when the test says so (no model, no subprocess, no sleeping: they wait on log lines and futures
with timeouts).  The end-to-end tests run ``rest-lsp serve`` with the embedded model and send the
first completion right after ``initialized``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.workspace import Workspace

from rest_lsp.completion.figures import Outcome
from rest_lsp.config.schema import Config
from rest_lsp.errors import DecodingError
from rest_lsp.lsp.framing import EMPTY_PARAMS, INVALID_REQUEST, VOID_PARAMS, Edge, Gate, check_envelope, normalize_params
from rest_lsp.lsp.server import create_server, run_completion

URI = "file:///ws/first.py"
TEXT = "def square(x):\n    return "
POSITION = lsp.Position(line=1, character=11)


class LoadingService:
    """A completion service stand-in that is loading until ``finish`` (or ``fail``) is called."""

    def __init__(self) -> None:
        self.state = "loading model"
        self._ready = threading.Event()
        self.completed: list[tuple[str, int]] = []
        self.closed = False

    def ready(self) -> bool:
        return self._ready.is_set()

    def finish(self) -> None:
        self.state = "ready"
        self._ready.set()

    def fail(self) -> None:
        self.state = "failed"

    def close(self) -> None:
        self.closed = True

    def complete(self, text, offset, uri="", invoked=False, should_stop=None, request_id=0) -> Outcome:
        if not self.ready():  # what CompletionService.complete does before it is ready
            raise DecodingError(f"not ready yet ({self.state})", state=self.state)
        self.completed.append((text, offset))
        return Outcome(request_id, [" x * x"], {}, 0.001, 7, True)


class Harness:
    """An in-process server (no transport) with one open document, its log lines and the
    responses its edge writes (messages go in through ``ls.edge`` as the transport hands them)."""

    def __init__(self, service: LoadingService, **server_options) -> None:
        self.ls = ls = create_server()
        self.responses: asyncio.Queue[dict] = asyncio.Queue()
        ls.protocol._send_data = self._sent  # type: ignore[method-assign]
        ls.config, problems = Config.from_dict({"server": {"debounce_ms": 0, **server_options}})
        assert not problems
        ls.service = service
        ls.protocol._workspace = Workspace(None)
        ls.workspace.put_text_document(lsp.TextDocumentItem(uri=URI, language_id="python", version=1, text=TEXT))
        ls.load_started()  # as start_indexing does at ``initialized``
        self.lines: list[str] = []
        self._seen: asyncio.Queue[str] = asyncio.Queue()
        ls.log_line = self._log  # type: ignore[method-assign]

    def _sent(self, message) -> None:
        if not isinstance(message, dict):  # pygls's own messages are lsprotocol objects
            message = self.ls.protocol._converter.unstructure(message)
        if "id" in message and "method" not in message:
            self.responses.put_nowait(message)

    def send(self, message: dict) -> None:
        """One message from the client, through the server's edge."""
        self.ls.edge.handle_body(json.dumps({"jsonrpc": "2.0", **message}).encode())

    async def response(self, timeout: float = 10.0) -> dict:
        return await asyncio.wait_for(self.responses.get(), timeout)

    def _log(self, message: str, kind=None) -> None:
        self.lines.append(message)
        self._seen.put_nowait(message)

    async def log_matching(self, text: str, timeout: float = 10.0) -> str:
        """Wait (on the log, with a timeout) for a line containing ``text``."""
        async def find() -> str:
            while True:
                line = await self._seen.get()
                if text in line:
                    return line
        return await asyncio.wait_for(find(), timeout)

    def request(self, kind: str = "inline") -> asyncio.Task:
        return asyncio.ensure_future(run_completion(self.ls, URI, POSITION, False, kind))

    def load_ends(self) -> None:
        """What the indexing worker does when ``start`` returns or fails (on the loop)."""
        self.ls.load_ended()


# ----- the wait, in-process ---------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_request_during_loading_waits_and_is_answered_once_ready():
    service = LoadingService()
    h = Harness(service)
    task = h.request()
    line = await h.log_matching("waiting up to 20 s")
    assert "(loading model)" in line and not task.done() and len(h.ls.ready_waiters) == 1
    service.finish()
    h.load_ends()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome is not None and outcome.items == [" x * x"]
    assert service.completed == [(TEXT, len(TEXT))]  # the request's own text and offset
    assert any("waited" in m and "for the model and index" in m for m in h.lines)
    assert len(h.ls.ready_waiters) == 0


@pytest.mark.asyncio
async def test_a_wait_that_runs_out_is_an_empty_result_with_the_reason_logged():
    service = LoadingService()
    h = Harness(service, ready_wait_s=0.2)
    t0 = time.monotonic()
    outcome = await asyncio.wait_for(h.request(), 10)
    elapsed = time.monotonic() - t0
    assert outcome is None
    assert 0.2 <= elapsed < 5
    timeout_line = next(m for m in h.lines if "not ready after" in m)
    assert "0.2 s (loading model)" in timeout_line and "server.ready_wait_s" in timeout_line
    assert service.completed == [] and len(h.ls.ready_waiters) == 0
    assert h.ls.schedulers["inline"]._current is None  # the ticket was released


@pytest.mark.asyncio
async def test_a_cancelled_waiting_request_ends_at_once():
    service = LoadingService()
    h = Harness(service, ready_wait_s=60)
    task = h.request()
    await h.log_matching("waiting up to 60 s")
    t0 = time.monotonic()
    task.cancel()  # what pygls does on $/cancelRequest (and on shutdown)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - t0 < 1.0
    assert len(h.ls.ready_waiters) == 0 and h.ls.schedulers["inline"]._current is None
    assert any("cancelled by the client" in m for m in h.lines)
    # the next request after loading is answered normally
    service.finish()
    h.load_ends()
    assert (await asyncio.wait_for(h.request(), 10)).items == [" x * x"]


@pytest.mark.asyncio
async def test_a_newer_request_supersedes_a_waiting_one_and_waits_in_its_place():
    service = LoadingService()
    h = Harness(service, ready_wait_s=60)
    first = h.request()
    await h.log_matching("waiting up to 60 s")
    second = h.request()
    assert await asyncio.wait_for(first, 5) is None  # woken by the newer request, not by a timeout
    assert any("superseded" in m for m in h.lines)
    await h.log_matching("waiting up to 60 s")
    service.finish()
    h.load_ends()
    assert (await asyncio.wait_for(second, 10)).items == [" x * x"]
    assert len(service.completed) == 1


@pytest.mark.asyncio
async def test_a_failed_load_ends_the_wait_and_nothing_waits_after_it():
    service = LoadingService()
    h = Harness(service, ready_wait_s=60)
    task = h.request()
    await h.log_matching("waiting up to 60 s")
    service.fail()
    h.load_ends()
    assert await asyncio.wait_for(task, 5) is None
    assert any("not ready yet (failed)" in m for m in h.lines)
    h.lines.clear()
    assert await asyncio.wait_for(h.request(), 5) is None  # failed, no load under way: at once
    assert not any("waiting" in m for m in h.lines)


@pytest.mark.asyncio
async def test_zero_keeps_the_old_answer_at_once():
    service = LoadingService()
    h = Harness(service, ready_wait_s=0)
    assert await asyncio.wait_for(h.request(), 5) is None
    assert any("not ready yet (loading model)" in m for m in h.lines)
    assert not any("waiting" in m for m in h.lines)


INLINE_PARAMS = {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 11},
                 "context": {"triggerKind": 2}}  # automatic


@pytest.mark.asyncio
async def test_while_a_request_waits_other_requests_cancel_and_shutdown_are_handled():
    service = LoadingService()
    service.status = lambda: {"state": service.state}
    h = Harness(service, ready_wait_s=60)
    h.send({"id": 1, "method": "textDocument/inlineCompletion", "params": INLINE_PARAMS})
    await h.log_matching("waiting up to 60 s")
    # another request is answered meanwhile: the wait holds no thread and not the loop
    h.send({"id": 2, "method": "workspace/executeCommand", "params": {"command": "rest-lsp.status"}})
    assert await h.response() == {"jsonrpc": "2.0", "id": 2, "result": {"enabled": True, "state": "loading model"}}
    # $/cancelRequest ends the waiting request at once
    h.send({"method": "$/cancelRequest", "params": {"id": 1}})
    got = await h.response(timeout=2)
    assert got["id"] == 1 and got["error"]["code"] == -32800
    # shutdown while another waits: both answered at once (pygls cancels what is in flight)
    h.send({"id": 3, "method": "textDocument/inlineCompletion", "params": INLINE_PARAMS})
    await h.log_matching("waiting up to 60 s")
    h.send({"id": 4, "method": "shutdown", "params": None})
    got = {m["id"]: m for m in [await h.response(timeout=2), await h.response(timeout=2)]}
    assert got[4]["result"] is None and got[3]["error"]["code"] == -32800
    assert len(h.ls.ready_waiters) == 0 and service.completed == [] and service.closed


@pytest.mark.asyncio
async def test_shutdown_while_a_wrapped_handler_awaits_is_answered_and_marks_the_shutdown():
    # pygls wraps executeCommand (and initialized, didOpen, ...) in a generator whose future is
    # a concurrent.futures.Future: shutdown cancels it while iterating the table of them
    h = Harness(LoadingService())
    release = asyncio.Event()

    @h.ls.command("rest-lsp.test-wait")
    async def wait_for_release(ls, *args):
        await release.wait()
        return "released"

    h.send({"id": 1, "method": "workspace/executeCommand", "params": {"command": "rest-lsp.test-wait"}})
    h.send({"id": 2, "method": "shutdown"})
    got = {m["id"]: m for m in [await h.response(timeout=2), await h.response(timeout=2)]}
    assert "error" not in got[2] and got[2]["result"] is None, got[2]
    assert got[1]["error"]["code"] == -32800
    assert h.ls.protocol._shutdown


def test_ready_wait_is_checked():
    for bad in (-1, float("nan"), float("inf")):
        config, problems = Config.from_dict({"server": {"ready_wait_s": bad}})
        assert config.server.ready_wait_s == 20.0
        assert any("server.ready_wait_s" in p for p in problems), problems
    config, problems = Config.from_dict({"server": {"ready_wait_s": "soon"}})
    assert config.server.ready_wait_s == 20.0 and problems
    config, problems = Config.from_dict({"server": {"ready_wait_s": 0}})
    assert config.server.ready_wait_s == 0.0 and not problems
    assert Config().server.ready_wait_s == 20.0


# ----- params: null, at the edge ------------------------------------------------------------------
class Wire:
    """An ``Edge`` in front of a real server's protocol, with what it writes collected."""

    def __init__(self) -> None:
        self.ls = create_server()
        self.sent: list[dict] = []
        self.ls.protocol._send_data = self._sent  # type: ignore[method-assign]
        self.edge = Edge(self.ls.protocol, Gate(lambda: True, lambda: self.ls.protocol._shutdown))

    def _sent(self, message) -> None:
        if not isinstance(message, dict):  # pygls's own messages are lsprotocol objects
            message = self.ls.protocol._converter.unstructure(message)
        self.sent.append(message)

    def send(self, message: dict) -> None:
        self.edge.handle_body(json.dumps(message).encode())


def test_paramless_methods_come_from_the_metamodel():
    assert {"shutdown", "exit"} <= VOID_PARAMS and EMPTY_PARAMS == {"initialized"}
    assert "textDocument/hover" not in VOID_PARAMS | EMPTY_PARAMS


def test_null_params_are_canonical_for_methods_without_params():
    shutdown = {"jsonrpc": "2.0", "id": 1, "method": "shutdown", "params": None}
    assert normalize_params(shutdown) == {"jsonrpc": "2.0", "id": 1, "method": "shutdown"}
    assert check_envelope(normalize_params(shutdown)) is None
    assert normalize_params({"jsonrpc": "2.0", "method": "exit", "params": None}) == {"jsonrpc": "2.0", "method": "exit"}
    assert normalize_params({"jsonrpc": "2.0", "method": "initialized"})["params"] == {}
    assert normalize_params({"jsonrpc": "2.0", "method": "initialized", "params": None})["params"] == {}
    # still malformed: null params where the method takes some, or non-object params
    hover = {"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": None}
    assert normalize_params(hover) is hover
    assert check_envelope(hover).code == INVALID_REQUEST
    bad = {"jsonrpc": "2.0", "id": 3, "method": "shutdown", "params": 5}
    assert check_envelope(normalize_params(bad)).code == INVALID_REQUEST
    assert normalize_params([1]) == [1] and normalize_params({"method": 5}) == {"method": 5}


def test_shutdown_with_null_params_is_answered_through_the_edge():
    wire = Wire()
    wire.send({"jsonrpc": "2.0", "id": 1, "method": "shutdown", "params": None})
    assert [m for m in wire.sent if m.get("id") == 1] == [{"jsonrpc": "2.0", "id": 1, "result": None}]
    assert wire.ls.protocol._shutdown and not wire.edge.refused
    wire.send({"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": None})
    assert wire.sent[-1]["error"]["code"] == INVALID_REQUEST and wire.sent[-1]["id"] == 2


# ----- end to end -------------------------------------------------------------------------------
def _daemon(tmp: Path, **server):
    from lsp_testing import init_options, server_env
    from rest_lsp.bench.stress.client import RawClient, serve_argv

    ws = tmp / "ws"
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "m.py").write_text("def add(a, b):\n    return a + b\n")
    corpus = tmp / "corpus"
    corpus.mkdir(exist_ok=True)
    (corpus / "lib.py").write_text("import os\n\n\ndef join(a, b):\n    return os.path.join(a, b)\n")
    client = RawClient(serve_argv(), env=server_env(tmp / "home"), stderr_path=tmp / "stderr.log")
    options = init_options("embedded", corpus, server={"debounce_ms": 0, **server}, retrieval={"history_warmup": 0})
    return client, ws, options


def _inline(uri: str) -> dict:
    from rest_lsp.bench.stress.client import inline_params

    return inline_params(uri, 1, len("    return "))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_first_request_right_after_initialized_gets_a_completion(tmp_path):
    client, ws, options = _daemon(tmp_path)
    try:
        client.initialize(ws, options)  # initialize, then initialized at once
        t0 = time.monotonic()
        uri = (ws / "first.py").as_uri()
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}})
        cancelled = client.request("textDocument/inlineCompletion", _inline(uri))
        client.notify("$/cancelRequest", {"id": cancelled})
        first = client.request("textDocument/inlineCompletion", _inline(uri))
        answer = client.wait_response(first, 120)
        latency = time.monotonic() - t0
        items = answer["result"]["items"]
        assert items and items[0]["insertText"].strip(), answer  # a real completion, not the empty one
        lines = client.log_lines()
        # it arrived while the model loaded and waited for it
        waiting = next(i for i, m in enumerate(lines) if "waiting up to 20 s" in m)
        assert waiting < next(i for i, m in enumerate(lines) if m.startswith("rest-lsp ready"))
        waited = next(m for m in lines if "waited" in m and "for the model and index" in m)
        got = client.wait_response(cancelled, 10)
        assert got["error"]["code"] == -32800  # $/cancelRequest ended the waiting request
        # $/progress is still reported: begin and end
        kinds = [n["params"]["value"]["kind"] for n in client.notifications if n.get("method") == "$/progress"]
        assert kinds[0] == "begin" and "end" in kinds
        print(f"first request after initialized answered in {latency:.2f} s ({waited})")
        assert client.stop() == 0
    finally:
        client.kill()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_shutdown_and_exit_with_null_params_over_the_wire(tmp_path):
    from rest_lsp.bench.stress.client import encode

    client, ws, options = _daemon(tmp_path)
    try:
        client.initialize(ws, options)
        client.send_bytes(encode({"jsonrpc": "2.0", "id": "s1", "method": "shutdown", "params": None}))
        done = client.wait_response("s1", 60)
        assert done == {"jsonrpc": "2.0", "id": "s1", "result": None, "_received": done["_received"]}
        client.send_bytes(encode({"jsonrpc": "2.0", "method": "exit", "params": None}))
        assert client.proc.wait(30) == 0  # exit after shutdown: 0
    finally:
        client.kill()
