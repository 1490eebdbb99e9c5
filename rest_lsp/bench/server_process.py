"""One rest-lsp server under test in the server benchmark: started over stdio, driven by pygls' LSP client.

``rest_lsp.bench.server`` starts several of them (REST and greedy, with and without the
context block) and sends all the same documents, edits and inline completion requests; this
module holds the client side of one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any


class Server:
    """One rest-lsp server under test, driven by pygls' LSP client."""

    def __init__(self, name: str, options: dict[str, Any], workspace: Path, env: dict[str, str],
                 warms_up: bool = False) -> None:
        self.name = name
        self.options = options
        self.workspace = workspace
        self.env = env
        self.client = None
        self.ready = asyncio.Event()
        #: the history warm-up after "ready" logged its end (awaited when ``warms_up``)
        self.warmed = asyncio.Event()
        self.warms_up = warms_up
        self.settle_s = 0.0
        self.versions: dict[str, int] = {}
        #: documents the server logged it warmed (server.warm_documents), in order
        self.warmed_uris: list[str] = []
        self.warm_logged = asyncio.Event()

    async def start(self) -> None:
        """Start, initialize, and wait until it has loaded the model and index."""
        from lsprotocol import types as lsp
        from pygls.lsp.client import LanguageClient

        client = LanguageClient("rest-lsp-bench", "1")

        @client.feature(lsp.WINDOW_LOG_MESSAGE)
        def on_log(params: lsp.LogMessageParams) -> None:
            if params.message.startswith("rest-lsp ready") or "indexing failed" in params.message:
                self.ready.set()
            if params.message.startswith("rest-lsp: warmed "):  # "rest-lsp: warmed URI: ..."
                self.warmed_uris.append(params.message[len("rest-lsp: warmed "):].split(": ", 1)[0])
                self.warm_logged.set()
            if params.message.startswith("rest-lsp: history "):  # warmed, stopped or failed
                self.warmed.set()
                if "failed" in params.message:
                    print(f"[{self.name}] {params.message}", file=sys.stderr)

        @client.feature(lsp.WINDOW_SHOW_MESSAGE)
        def on_show(params: lsp.ShowMessageParams) -> None:
            print(f"[{self.name}] {params.message}", file=sys.stderr)

        @client.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def on_create(params: Any) -> None:
            return None

        @client.feature(lsp.PROGRESS)
        def on_progress(params: Any) -> None:
            return None

        await client.start_io(sys.executable, "-m", "rest_lsp.cli", "serve", "--stdio", env=self.env)
        caps = lsp.ClientCapabilities(
            text_document=lsp.TextDocumentClientCapabilities(inline_completion=lsp.InlineCompletionClientCapabilities()),
            window=lsp.WindowClientCapabilities(work_done_progress=True),
        )
        await client.initialize_async(lsp.InitializeParams(
            capabilities=caps,
            root_uri=self.workspace.as_uri(),
            workspace_folders=[lsp.WorkspaceFolder(uri=self.workspace.as_uri(), name="bench")],
            initialization_options=self.options,
        ))
        client.initialized(lsp.InitializedParams())
        self.client = client
        await self._until(self.ready, 1800, "loaded its model and index")
        if self.warms_up:  # measured as a user's daemon runs after its first minutes: warmed up
            t0 = time.perf_counter()
            await self._until(self.warmed, 1800, "warmed its history")
            self.settle_s = time.perf_counter() - t0

    async def _until(self, event: asyncio.Event, timeout: float, what: str) -> None:
        """Wait for ``event``; a server that exits first (a crash in a native library, say) is
        reported at once with its exit status and the end of its stderr, not after ``timeout``."""
        from rest_lsp.errors import RestLspError

        deadline = time.perf_counter() + timeout
        while not event.is_set():
            process = self.client._server
            if process is not None and process.returncode is not None:
                tail = (await process.stderr.read())[-2000:].decode("utf-8", "replace") if process.stderr else ""
                raise RestLspError(f"server {self.name} exited with status {process.returncode} before it "
                                   f"{what}; its stderr ends: {tail or '(nothing)'}", server=self.name,
                                   status=process.returncode)
            if time.perf_counter() > deadline:
                raise TimeoutError(f"server {self.name} had not {what} after {timeout:.0f} s")
            try:
                await asyncio.wait_for(event.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                continue

    @property
    def pid(self) -> int:
        return self.client._server.pid

    def set_text(self, uri: str, text: str) -> None:
        """Open the document, or replace its whole text."""
        from lsprotocol import types as lsp

        if uri not in self.versions:
            self.versions[uri] = 1
            self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
            return
        self.versions[uri] += 1
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)]))

    def close(self, uri: str) -> None:
        """Close the document (the server drops its buffer)."""
        from lsprotocol import types as lsp

        if self.versions.pop(uri, None) is not None:
            self.client.text_document_did_close(lsp.DidCloseTextDocumentParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri)))

    def insert(self, uri: str, line: int, col: int, char: str) -> None:
        """Type one character at (line, col)."""
        from lsprotocol import types as lsp

        self.versions[uri] += 1
        pos = lsp.Position(line=line, character=col)
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[lsp.TextDocumentContentChangePartial(range=lsp.Range(start=pos, end=pos), text=char)]))

    async def complete(self, uri: str, line: int, col: int) -> tuple[float, list[str]]:
        """One automatic inline completion request: (seconds, items)."""
        from lsprotocol import types as lsp

        t0 = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic),
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=line, character=col)))
        items = [i.insert_text for i in (result.items if result else [])]
        return time.perf_counter() - t0, items

    def warm_count(self, uri: str) -> int:
        """How many times the server logged it warmed ``uri``."""
        return self.warmed_uris.count(uri)

    async def wait_warmed(self, uri: str, before: int, timeout: float) -> float | None:
        """Seconds until the server logs a warm-up of ``uri`` beyond the ``before`` seen; None
        when none comes within ``timeout`` (the user's pause ends then)."""
        t0 = time.perf_counter()
        while self.warm_count(uri) <= before:
            left = timeout - (time.perf_counter() - t0)
            if left <= 0:
                return None
            self.warm_logged.clear()
            try:
                await asyncio.wait_for(self.warm_logged.wait(), left)
            except asyncio.TimeoutError:
                return None
        return round(time.perf_counter() - t0, 3)

    async def last(self) -> dict[str, Any]:
        """The server's figures of its last completion."""
        from lsprotocol import types as lsp

        status = await self.client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.status"))
        return status.get("last_completion") or {}

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()
