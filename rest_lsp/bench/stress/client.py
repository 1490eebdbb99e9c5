"""A raw LSP client over a daemon subprocess's stdio: it can send any bytes, valid or not.

The hardening tests and the stress commands drive ``rest-lsp serve`` through it.  A reader
thread frames the server's output; callers wait on a condition with a timeout, never by
sleeping.  Requests the server sends (progress tokens, registrations) are answered with null.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence


def frame(body: bytes) -> bytes:
    """``body`` with its base-protocol header."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def encode(message: dict) -> bytes:
    """A framed JSON-RPC message."""
    return frame(json.dumps(message).encode("utf-8"))


class RawClient:
    """One daemon subprocess and everything it sent back."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 stderr_path: str | os.PathLike | None = None) -> None:
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env, cwd=cwd)
        self.pid = self.proc.pid
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self.responses: dict[Any, dict] = {}
        self.null_errors: list[dict] = []  # error responses with id null (framing, parse errors)
        self.notifications: list[dict] = []
        self.closed = False
        self._reader = threading.Thread(target=self._read, name="raw-lsp-client", daemon=True)
        self._reader.start()

    # ----- sending ----------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        with self._write_lock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass

    def next_id(self) -> int:
        return next(self._ids)

    def request(self, method: str, params: Any = None, id: Any = None) -> Any:
        """Send a request; returns its id."""
        rid = self.next_id() if id is None else id
        message = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send_bytes(encode(message))
        return rid

    def notify(self, method: str, params: Any = None) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send_bytes(encode(message))

    def call(self, method: str, params: Any = None, timeout: float = 60.0) -> dict:
        """Send a request and wait for its response (the whole response object)."""
        return self.wait_response(self.request(method, params), timeout)

    # ----- receiving --------------------------------------------------------------------------
    def _read(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = out.read(length or 0)
                self._dispatch(json.loads(body))
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _dispatch(self, message: dict) -> None:
        if "method" in message and "id" in message:  # a request from the server
            self.send_bytes(encode({"jsonrpc": "2.0", "id": message["id"], "result": None}))
            return
        with self._cond:
            if "method" in message:
                self.notifications.append(message)
            elif message.get("id") is None:
                self.null_errors.append(message)
            else:
                message["_received"] = time.monotonic()
                self.responses[message["id"]] = message
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str = "a condition") -> Any:
        """Wait until ``predicate()`` is truthy (checked on every message); returns its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise TimeoutError(f"{what}: not seen within {timeout:.0f} s (server exited: {self.closed}, "
                                       f"rc={self.proc.poll()})")
                self._cond.wait(remaining)

    def wait_response(self, rid: Any, timeout: float = 60.0) -> dict:
        return self.wait(lambda: self.responses.get(rid), timeout, f"response {rid!r}")

    def log_lines(self) -> list[str]:
        with self._cond:
            return [n["params"]["message"] for n in self.notifications
                    if n.get("method") in ("window/logMessage", "window/showMessage")]

    def wait_log(self, predicate: Callable[[str], bool], timeout: float = 120.0) -> str:
        """The first log or shown message matching ``predicate``."""
        def found() -> str | None:
            return next((m for m in self.log_lines() if predicate(m)), None)
        return self.wait(found, timeout, "a log message")

    # ----- session ----------------------------------------------------------------------------
    def initialize(self, workspace: Path | None, options: dict, timeout: float = 120.0,
                   inline: bool = True) -> dict:
        """``initialize`` + ``initialized``; returns the initialize result."""
        text_document: dict[str, Any] = {"completion": {}, "synchronization": {"didSave": True}}
        if inline:
            text_document["inlineCompletion"] = {}
        params = {
            "processId": os.getpid(),
            "capabilities": {"textDocument": text_document, "window": {"workDoneProgress": True}},
            "rootUri": workspace.as_uri() if workspace else None,
            "workspaceFolders": [{"uri": workspace.as_uri(), "name": "ws"}] if workspace else None,
            "initializationOptions": options,
        }
        result = self.call("initialize", params, timeout)
        self.notify("initialized", {})
        return result

    def wait_ready(self, timeout: float = 300.0) -> str:
        """Wait for the line that says the model and index are loaded (or that loading failed)."""
        return self.wait_log(lambda m: m.startswith("rest-lsp ready") or "failed" in m and m.startswith("rest-lsp:"),
                             timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """``shutdown`` + ``exit``; returns the exit status (kills on a timeout)."""
        try:
            if self.proc.poll() is None:
                self.call("shutdown", None, timeout)
                self.notify("exit")
            return self.proc.wait(timeout)
        except (TimeoutError, subprocess.TimeoutExpired):
            self.kill()
            return -9
        finally:
            self._close_files()

    def kill(self) -> None:
        """kill -9."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_files()

    def _close_files(self) -> None:
        for f in (self.proc.stdin,):
            try:
                f.close()
            except (OSError, ValueError):
                pass
        if self._stderr not in (None, subprocess.DEVNULL):
            self._stderr.close()


def serve_argv(*extra: str) -> list[str]:
    """The command an editor runs."""
    return [sys.executable, "-m", "rest_lsp.cli", "serve", "--stdio", *extra]


def inline_params(uri: str, line: int, character: int, invoked: bool = False) -> dict:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": 1 if invoked else 2}}
