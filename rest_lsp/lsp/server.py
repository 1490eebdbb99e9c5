"""The language server: pygls handlers that convert LSP messages and delegate to the service.

Handlers only convert and delegate (see ``rest_lsp.completion.service``).  The bytes on the
wire are read by ``rest_lsp.lsp.framing`` (framing, JSON-RPC envelope and lifecycle checks), not by
pygls's reader.  Four things live here because they are about the protocol: the choice between
inline and classic completion at ``initialize``, debounce and supersession of completion requests
(one completion runs at a time; a newer request stops the one in flight within one decoding step),
the wait of a request that arrives while the model or index loads (``server.ready_wait_s``, on the
event loop: ``rest_lsp.lsp.readiness``), and the conversion of errors to LSP results (a failed
completion is an empty result plus a log line).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from rest_lsp import __version__
from rest_lsp.completion.scheduler import Scheduler
from rest_lsp.config.schema import Config
from rest_lsp.config.sources import deep_merge, settings_of
from rest_lsp.errors import Cancelled, ModelError, ReportedError
from rest_lsp.lsp.framing import Edge, Gate
from rest_lsp.lsp.startup import start_indexing
from rest_lsp.lsp.protocol import RestProtocol
from rest_lsp.lsp.readiness import Readiness, ReadyWaiters, wait_until_ready
from rest_lsp.lsp.transport import Transports

log = logging.getLogger(__name__)

COMMAND_STATUS = "rest-lsp.status"
COMMAND_REINDEX = "rest-lsp.reindex"
COMMAND_QUERY = "rest-lsp.query"
COMMAND_ACCEPTED = "rest-lsp.accepted"
COMMAND_TOGGLE = "rest-lsp.toggle"


class RestLanguageServer(Transports, Readiness, LanguageServer):
    """The rest-lsp language server: LSP state plus the completion service."""

    def __init__(self, config_file_data: dict[str, Any] | None = None) -> None:
        super().__init__("rest-lsp", __version__, protocol_cls=RestProtocol)
        self.file_config = config_file_data or {}
        self.client_options: dict[str, Any] = {}
        self.config = Config()
        self.service = None  # the CompletionService, created at initialize
        #: one scheduler per request kind: a classic completion and an inline completion sent
        #: together (VS Code does) must not supersede each other; they share one result instead
        self.schedulers = {"inline": Scheduler(), "classic": Scheduler()}
        #: the completion running or last run, keyed by (uri, document version, offset)
        self.shared: dict[tuple[str, int | None, int], asyncio.Future] = {}
        # The decoder is single-threaded: one worker runs completions, in order of arrival.
        self.decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rest-lsp-decode")
        self.background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rest-lsp-index")
        self.loop: asyncio.AbstractEventLoop | None = None
        self.use_inline = True
        self.enabled = True
        self.edge = Edge(self.protocol, Gate(lambda: self.service is not None, lambda: self.protocol._shutdown))
        self._started = False  # the ``initialized`` notification was handled
        self.exit_code = 0  # the process's exit status once the transport ends
        #: completion requests waiting for the model and index (server.ready_wait_s)
        self.ready_waiters = ReadyWaiters()
        #: model/index loads started (``start_indexing``) and not yet ended (changed on the loop)
        self.loads_pending = 0
        self.shown_error: str | None = None  # the model error last shown (shown once, not per keystroke)

    # ----- configuration -------------------------------------------------------------------
    def effective_config(self) -> tuple[Config, list[str]]:
        """Defaults < config file < client options, validated."""
        return Config.from_dict(deep_merge(self.file_config, self.client_options))

    def apply_config(self) -> bool:
        """Recompute the config, report its problems and hand it to the service.

        True when the service must load the model again."""
        self.config, problems = self.effective_config()
        for problem in problems:
            self.show(f"rest-lsp: {problem}", lsp.MessageType.Warning)
        return self.service.apply_config(self.config) if self.service is not None else False

    # ----- messages to the client ----------------------------------------------------------
    def show(self, message: str, kind: lsp.MessageType = lsp.MessageType.Info) -> None:
        """``window/showMessage`` from any thread."""
        self._send(lambda: self.window_show_message(lsp.ShowMessageParams(type=kind, message=message)))
        log.info("%s", message)

    def log_line(self, message: str, kind: lsp.MessageType = lsp.MessageType.Log) -> None:
        """``window/logMessage`` from any thread."""
        self._send(lambda: self.window_log_message(lsp.LogMessageParams(type=kind, message=message)))
        log.info("%s", message)

    def _send(self, send) -> None:
        """Run a send on the event loop (pygls writes are not thread-safe)."""
        loop = self.loop
        try:
            if loop is None or not loop.is_running():
                send()
            elif _on_loop(loop):
                send()
            else:
                loop.call_soon_threadsafe(send)
        except Exception:  # a closed client must not kill the daemon
            log.debug("could not send to the client", exc_info=True)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called from the thread running ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def create_server(config_file_data: dict[str, Any] | None = None) -> RestLanguageServer:
    """A server with every handler registered."""
    server = RestLanguageServer(config_file_data)

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: RestLanguageServer, params: lsp.InitializeParams) -> None:
        ls.client_options = settings_of(params.initialization_options)
        ls.config, problems = ls.effective_config()
        ls.pending_problems = problems
        caps = params.capabilities.text_document
        ls.use_inline = bool(caps and caps.inline_completion is not None)
        if not ls.use_inline or ls.config.server.classic_completion:
            ls.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions())(_completion)
        from rest_lsp.completion.service import CompletionService

        folders = [to_fs_path(f.uri) for f in params.workspace_folders or []]
        if not folders and (params.root_uri or params.root_path):
            folders = [to_fs_path(params.root_uri) if params.root_uri else params.root_path]
        ls.service = CompletionService(ls.config, [f for f in folders if f], log=ls.log_line)

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: RestLanguageServer, params: lsp.InitializedParams) -> None:
        if ls._started:  # sent once per session; a repeat must not reload the model
            log.warning("ignored a repeated initialized notification")
            return
        ls._started = True
        ls.loop = asyncio.get_running_loop()
        for problem in getattr(ls, "pending_problems", []):
            ls.show(f"rest-lsp: {problem}", lsp.MessageType.Warning)
        await start_indexing(ls, "rest-lsp: loading model and index")

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: RestLanguageServer, params: Any) -> None:
        if ls.service is not None:
            ls.service.close()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: RestLanguageServer, params: lsp.DidChangeConfigurationParams) -> None:
        # synchronous: a request sent after the change must see it
        ls.client_options = deep_merge(ls.client_options, settings_of(params.settings))
        if ls.apply_config() and ls._started:  # a new (or fixed) model: load it in the background
            asyncio.ensure_future(start_indexing(ls, "rest-lsp: loading model", reload=True))

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: RestLanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        if ls.service is not None:
            ls.service.update_buffer(params.text_document.uri, params.text_document.text)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: RestLanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
        if ls.service is not None:
            doc = ls.workspace.get_text_document(params.text_document.uri)
            ls.service.update_buffer(doc.uri, doc.source)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: RestLanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
        if ls.service is not None:
            ls.service.drop_buffer(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: RestLanguageServer, params: lsp.DidSaveTextDocumentParams) -> None:
        if ls.service is not None:
            ls.background.submit(_guard, ls, ls.service.notify_changed, [to_fs_path(params.text_document.uri)])

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched(ls: RestLanguageServer, params: lsp.DidChangeWatchedFilesParams) -> None:
        if ls.service is not None:
            paths = [to_fs_path(change.uri) for change in params.changes]
            ls.background.submit(_guard, ls, ls.service.notify_changed, paths)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_folders(ls: RestLanguageServer, params: lsp.DidChangeWorkspaceFoldersParams) -> None:
        if ls.service is None:
            return
        added = [to_fs_path(f.uri) for f in params.event.added]
        removed = [to_fs_path(f.uri) for f in params.event.removed]
        ls.background.submit(_guard, ls, ls.service.change_folders, added, removed)

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def inline_completion(
        ls: RestLanguageServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList | None:
        invoked = params.context.trigger_kind == lsp.InlineCompletionTriggerKind.Invoked
        outcome = await run_completion(ls, params.text_document.uri, params.position, invoked, "inline")
        if outcome is None:
            return lsp.InlineCompletionList(items=[])
        pos = params.position
        items = [
            lsp.InlineCompletionItem(
                insert_text=text,
                range=lsp.Range(start=pos, end=pos),
                command=lsp.Command(title="Accept completion", command=COMMAND_ACCEPTED, arguments=[outcome.request_id, i]),
            )
            for i, text in enumerate(outcome.items)
        ]
        return lsp.InlineCompletionList(items=items)

    @server.command(COMMAND_STATUS)
    def status(ls: RestLanguageServer, *args: Any) -> dict[str, Any]:
        if ls.service is None:
            return {"state": "not initialized"}
        return {"enabled": ls.enabled, **ls.service.status()}

    @server.command(COMMAND_QUERY)
    def query(ls: RestLanguageServer, *args: Any) -> dict[str, Any]:
        text = _first_string(args)
        if text is None:
            raise JsonRpcInvalidParams("rest-lsp.query takes one argument: the text to look up")
        if ls.service is None:
            return {"state": "not initialized"}
        return ls.service.query(text)

    @server.command(COMMAND_REINDEX)
    async def reindex(ls: RestLanguageServer, *args: Any) -> dict[str, Any]:
        await start_indexing(ls, "rest-lsp: reindexing", rebuild=True)
        return {"started": True}

    @server.command(COMMAND_ACCEPTED)
    def accepted(ls: RestLanguageServer, *args: Any) -> None:
        if ls.service is not None:
            ls.service.record_accepted(args)

    @server.command(COMMAND_TOGGLE)
    def toggle(ls: RestLanguageServer, *args: Any) -> dict[str, Any]:
        ls.enabled = not ls.enabled
        return {"enabled": ls.enabled}

    return server


async def _completion(ls: RestLanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    """``textDocument/completion`` for clients without inline completion (registered at initialize).

    Each item inserts the whole (multi-line) completion at the cursor.
    """
    invoked = params.context is None or params.context.trigger_kind == lsp.CompletionTriggerKind.Invoked
    outcome = await run_completion(ls, params.text_document.uri, params.position, invoked, "classic")
    if outcome is None:
        return lsp.CompletionList(is_incomplete=True, items=[])
    pos = params.position
    items = []
    for i, text in enumerate(outcome.items):
        first = text.strip().splitlines()[0] if text.strip() else text
        items.append(
            lsp.CompletionItem(
                label=first[:60] + ("…" if len(first) > 60 or "\n" in text.strip() else ""),
                kind=lsp.CompletionItemKind.Text,
                detail="rest-lsp",
                documentation=text,
                sort_text=f"{i:04d}",
                filter_text="",
                text_edit=lsp.TextEdit(range=lsp.Range(start=pos, end=pos), new_text=text),
                insert_text_format=lsp.InsertTextFormat.PlainText,
                # the text carries its own indentation: a client must not add the line's again
                insert_text_mode=lsp.InsertTextMode.AsIs,
                command=lsp.Command(title="Accept completion", command=COMMAND_ACCEPTED, arguments=[outcome.request_id, i]),
            )
        )
    # incomplete: the client asks again as the user types instead of filtering stale items
    return lsp.CompletionList(is_incomplete=True, items=items)


async def run_completion(ls: RestLanguageServer, uri: str, position: lsp.Position, invoked: bool, kind: str):
    """Debounce, claim the decoder, run one completion; None when skipped, superseded or failed.

    A request for the same document version and offset as the completion running (or just run)
    shares its result instead of decoding again.
    """
    if ls.service is None or not ls.enabled:
        return None
    ticket = ls.schedulers[kind].claim(uri)
    ls.ready_waiters.wake()  # a request this one superseded may be waiting for readiness: it ends
    started = time.perf_counter()
    try:
        if not invoked and ls.config.server.debounce_ms > 0:
            await asyncio.sleep(ls.config.server.debounce_ms / 1000)
        if ticket.cancelled.is_set():
            ls.log_line(f"[req {ticket.request_id}] superseded during debounce")
            return None
        doc = ls.workspace.get_text_document(uri)
        language = doc.language_id or ""
        if language in ls.config.server.disabled_languages:
            return None
        try:
            text = doc.source  # an unopened document is read from disk
        except (OSError, UnicodeDecodeError) as exc:
            ls.log_line(f"[req {ticket.request_id}] no such document {uri}: {exc}", lsp.MessageType.Warning)
            return None
        offset = doc.offset_at_position(position)
        key = (uri, doc.version, offset)
        # the text and offset are taken before the wait: the position is of this version (an
        # edit meanwhile normally comes with a newer request, which supersedes this one)
        if not await wait_until_ready(ls, ticket):
            return None
        shared = ls.shared.get(key)
        if shared is not None:
            try:
                outcome = await asyncio.shield(shared)
            except ReportedError:  # Cancelled included
                outcome = None  # the shared run was superseded or failed: run our own
            if outcome is not None:
                ls.log_line(f"[req {ticket.request_id}] shares the result of req {outcome.request_id}")
                return outcome.for_trigger(invoked, ls.config.server.max_items)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            ls.decoder,
            ls.service.complete,
            text,
            offset,
            uri,
            invoked,
            ticket.cancelled.is_set,
            ticket.request_id,
        )
        ls.shared = {key: future}  # only the newest is worth sharing
        outcome = await future
        ls.shown_error = None
        ls.log_line(
            f"[req {ticket.request_id}] {len(outcome.items)} item(s) in "
            f"{(time.perf_counter() - started) * 1000:.0f} ms; {outcome.summary()}"
        )
        return outcome
    except asyncio.CancelledError:
        ticket.cancelled.set()
        ls.log_line(f"[req {ticket.request_id}] cancelled by the client")
        raise
    except Cancelled:
        ls.log_line(f"[req {ticket.request_id}] superseded")
        return None
    except ModelError as exc:  # out of memory, a broken model: the user must hear of it, once
        ls.log_line(f"[req {ticket.request_id}] failed: {exc}", lsp.MessageType.Error)
        if str(exc) != ls.shown_error:
            ls.shown_error = str(exc)
            ls.show(f"rest-lsp: {exc}", lsp.MessageType.Error)
        return None
    except ReportedError as exc:
        ls.log_line(f"[req {ticket.request_id}] failed: {exc}", lsp.MessageType.Warning)
        return None
    except Exception as exc:  # never a dead daemon
        log.exception("completion %s failed", ticket.request_id)
        ls.log_line(f"[req {ticket.request_id}] failed: {type(exc).__name__}: {exc}", lsp.MessageType.Error)
        return None
    finally:
        ls.schedulers[kind].release(ticket)


def _guard(ls: RestLanguageServer, func, *args) -> None:
    """Run ``func`` in the background, logging instead of raising."""
    try:
        func(*args)
    except Exception as exc:
        log.exception("background task failed")
        ls.log_line(f"rest-lsp: {type(exc).__name__}: {exc}", lsp.MessageType.Warning)


def _first_string(args: tuple[Any, ...]) -> str | None:
    """The first string among command arguments (clients nest them differently)."""
    for arg in args:
        if isinstance(arg, str):
            return arg
        if isinstance(arg, (list, tuple)):
            found = _first_string(tuple(arg))
            if found is not None:
                return found
        if isinstance(arg, dict) and isinstance(arg.get("text"), str):
            return arg["text"]
    return None
