"""The completion service: the model, the engine and the datastore behind one small API.

The server and ``rest-lsp complete`` both call it.  It knows nothing of LSP: positions arrive as
character offsets, cancellation as a ``should_stop`` callable, and problems leave as
``ReportedError``s.  ``start`` is slow (model load, index build) and runs in the background;
``complete`` before it has finished raises ``DecodingError`` ("still starting").
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rest_lsp.completion.context import EMPTY, Block
from rest_lsp.completion import request_prompt
from rest_lsp.completion.context_session import ContextSession
from rest_lsp.completion.detokenizer import IncrementalText
from rest_lsp.completion.document_warm import DocumentWarmer, warm_document
from rest_lsp.completion.figures import Figures, Outcome, last_figures
from rest_lsp.completion.health import (Progress, check_tokenizer_fits, is_out_of_memory, open_verified,
                                        out_of_memory, release_memory)
from rest_lsp.completion.inspection import query_of, status_of
from rest_lsp.completion.items import candidates_of
from rest_lsp.completion.fim import FimTokens, choose
from rest_lsp.completion.instruct import chat_renderer, instruct_model, model_names
from rest_lsp.completion.prompt import Prompt, visible
from rest_lsp.completion.stops import Cursor, cut, finish
from rest_lsp.completion.type_through import Shown, rest_after_typing
from rest_lsp.completion.uris import buffer_refused
from rest_lsp.config.schema import Config
from rest_lsp.errors import Cancelled, ConfigError, DecodingError

log = logging.getLogger(__name__)


class CompletionService:
    """Model + engine + datastore for one workspace, configured by one ``Config``."""

    def __init__(self, config: Config, folders: Sequence[str] = (), log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.folders = [os.path.abspath(f) for f in folders]
        self._log = log or (lambda message: logging.getLogger(__name__).info("%s", message))
        self.loaded = None  # rest_lsp.engine.model.LoadedModel
        self.engine = None  # rest_lsp.engine.engine.Engine
        self.store = None  # indexer.datastore.Datastore
        self.drafting = None  # rest_lsp.drafting.session.WorkspaceDrafting
        #: the model's prompt template (server.fim_template): its stop tokens and repository header
        self.template: FimTokens | None = None
        self.extensions = None  # rest_lsp.completion.healing.TokenExtensions (token healing)
        #: the template when fill-in-the-middle prompts are on (server.fim), else None
        self.fim: FimTokens | None = None
        #: the model's chat template when new function bodies are asked in chat form
        #: (server.instruct, completion/instruct.py), else None
        self.chat = None
        self.figures = Figures()
        self.state = "starting"
        self.last_refresh: float | None = None
        #: figures of the last completion (stats of the engine, latency, prompt size)
        self.last: dict[str, Any] | None = None
        #: time.monotonic() of the last completion request (the history warm-up waits for quiet)
        self.last_request_at = 0.0
        #: the context block of the current completion session (server.context; docs/server.md)
        self.context_session: ContextSession[Block] = ContextSession()
        #: prefills a document's next prompt while idle (server.warm_documents, document_warm)
        self.warmer = DocumentWarmer(lambda *args: warm_document(self, *args))
        #: the line each document's prompt window started at (kept while it fits: KV reuse)
        self._windows: dict[str, int] = {}
        #: the completion last shown, which a keystroke may type through (server.type_through)
        self._shown: Shown | None = None
        #: the context block of the last prompt
        self.last_context: Block = EMPTY
        self._ready = threading.Event()
        self._buffers: dict[str, str] = {}
        self._buffers_lock = threading.Lock()
        self._start_lock = threading.Lock()

    # ----- start-up -----------------------------------------------------------------------
    def start(self, progress: Progress | None = None, rebuild: bool = False, reload: bool = False) -> None:
        """Load the model (once, or again with ``reload``) and open or build the index.

        A failure leaves the service in state "failed" (completions answer empty) until a later
        ``start`` succeeds: the daemon stays up and recovers once the config is fixed.  A reload
        that fails keeps the model that was serving, if one was.
        """
        with self._start_lock:
            progress = progress or (lambda done, total, message: None)
            try:
                if self.loaded is None or reload:
                    self.state = "loading model"
                    progress(0, 0, "loading model")
                    self._load_model(progress)
                self.state = "indexing"
                self._open_index(progress, rebuild=rebuild)
            except BaseException:
                self.state = "ready" if self._ready.is_set() else "failed"
                raise
            self.state = "ready"
            self.last_refresh = time.time()
            self._ready.set()
            with self._buffers_lock:
                pending = dict(self._buffers)
            for uri, text in pending.items():
                self._index_buffer(uri, text)

    def wants_dense(self) -> bool:
        """Whether the workspace has no dense index and retrieval.dense = "on" asks for one."""
        return self.drafting is not None and self.drafting.dense_wanted

    def build_dense(self, progress: Progress) -> str:
        """Build the workspace's dense index and draft from it; returns a status line.

        Completions go on meanwhile (the build takes the model one window at a time).
        """
        return self.drafting.build_dense(progress)

    def _load_model(self, progress: Progress | None = None) -> None:
        """Load the configured model and build the engine around it."""
        from rest_lsp.completion.healing import TokenExtensions
        from rest_lsp.engine.engine import Engine
        from rest_lsp.engine.model import load_model

        loaded = load_model(self.config.model, progress=progress, log=self._log)
        self._log(f"rest-lsp: model {loaded.resolved.name} ({loaded.resolved.why})")
        check_tokenizer_fits(loaded)
        engine = Engine.from_loaded(loaded, self.config.decoding)
        engine.warm_up()  # c(k) measured (or read from its cache) now, not in the first request
        if engine.forward_note:
            self._log(f"rest-lsp: {engine.forward_note}")
        self._use_template(loaded, engine)
        extensions = TokenExtensions.of_tokenizer(loaded.tokenizer)
        # swapped only once the new model works
        self.loaded, self.engine, self.extensions = loaded, engine, extensions

    def _use_template(self, loaded: Any, engine: Any) -> None:
        """Pick the model's prompt template (server.fim_template, server.fim) and end generations
        at its stop tokens as well as at the model's end-of-sequence ids."""
        server = self.config.server
        try:
            template = choose(loaded.tokenizer.get_vocab(), server.fim_template)
        except ConfigError as exc:  # a named template the model lacks: completions go on without it
            self._log(f"rest-lsp: {exc}; using prefix prompts")
            template = None
        # the same set for greedy and REST decoding: both end where the engine's end ids say
        engine.eos_ids = frozenset(loaded.eos_token_ids) | (template.stop_ids if template else frozenset())
        self.template = template
        self.fim = template if server.fim in ("auto", "on") else None
        wanted = server.instruct == "on" or (server.instruct == "auto" and instruct_model(model_names(loaded)))
        self.chat = chat_renderer(loaded.tokenizer) if wanted else None
        if template is None:
            if server.fim == "on":
                self._log("rest-lsp: server.fim is on but the model has no FIM tokens; using prefix prompts")
            else:
                self._log("rest-lsp: no FIM template fits the model; using prefix prompts")
            return
        how = "detected" if server.fim_template == "auto" else "server.fim_template"
        header = "repository header" if template.header and server.repo_header == "auto" else "no repository header"
        self._log(f"rest-lsp: prompt template {template.name} ({how}); fill-in-the-middle "
                  f"{'on' if self.fim else 'off'}; {header}; {len(engine.eos_ids)} stop tokens")

    def _open_index(self, progress: Progress, rebuild: bool = False) -> None:
        """Open (building what is missing) the datastore of the first workspace folder; with
        ``rebuild``, its index is built again from the files."""
        from rest_lsp.drafting.session import WorkspaceDrafting

        if self.drafting is not None:
            self.drafting.close()
        if self.store is not None:
            self.store.close()
        folder = self.folders[0] if self.folders else None
        if len(self.folders) > 1:
            self._log(f"rest-lsp: indexing the first workspace folder only ({folder})")
        self.store = open_verified(folder, self.config, self._tokenizer_ref(), progress, self._log, rebuild=rebuild)
        self.context_session.reset()  # its block came from the index replaced
        # rest-lsp's default drafters (as `rest-lsp bench engine`), the history source and,
        # when the workspace has a dense index, dense drafts: one merged tree
        self.drafting = WorkspaceDrafting(folder, self.config, self.loaded, self.store, self.engine.lock, self._log)
        self.engine.drafter = self.drafting.drafter

    def _tokenizer_ref(self) -> Any:
        """What the indexer should tokenize with: the model's tokenizer files, or the tokenizer."""
        source = Path(self.loaded.source)
        if (source / "tokenizer.json").is_file():
            return str(source)
        return self.loaded.tokenizer

    def ready(self) -> bool:
        """True once the model and index are usable."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until ready (or the timeout); True when ready."""
        return self._ready.wait(timeout)

    def ready_message(self) -> str:
        """One line saying what is loaded and indexed."""
        stats = self.store.stats() if self.store is not None else {}
        tiers = ", ".join(
            f"{name} {stats[name]['tokens']:,} tokens" for name in ("live", "workspace", "corpus")
            if isinstance(stats.get(name), dict)
        )
        resolved = self.loaded.resolved
        name = resolved.name if resolved is not None else self.loaded.source
        return f"rest-lsp ready: model {name} on {self.loaded.device}; index: {tiers or 'none'}"

    def apply_config(self, config: Config) -> bool:
        """Take a new configuration; decoding settings apply at once, index settings at the next
        reindex.  True when the model must be (re)loaded: its settings changed, or it failed."""
        old = self.config
        self.config = config
        if self.engine is not None:
            self.engine.decoding = config.decoding  # the engine resets its budget policy
            s, o = config.server, old.server
            if (s.fim, s.fim_template, s.instruct) != (o.fim, o.fim_template, o.instruct) and self.loaded is not None:
                self._use_template(self.loaded, self.engine)
        reload = config.model != old.model or self.state == "failed"
        if reload:
            self._log("rest-lsp: model settings changed; reloading the model")
        if config.index != old.index or config.retrieval != old.retrieval:
            self._log("rest-lsp: index settings changed; they apply at the next reindex")
        return reload

    def log(self, message: str) -> None:
        """One line to the user's log (the server's window/logMessage)."""
        self._log(message)

    def close(self) -> None:
        """Stop the warm-up and the watcher (and save the history source)."""
        self.warmer.close()
        if self.drafting is not None:
            self.drafting.close()
        if self.store is not None:
            self.store.close()

    # ----- buffers and files --------------------------------------------------------------
    def update_buffer(self, uri: str, text: str) -> None:
        """An editor buffer changed: it feeds the live tier (once the index is open) and is warmed."""
        if self.config.server.warm_documents:
            self.warmer.touch(uri, text)
        reason = buffer_refused(uri, self.folders, self.config.index)
        if reason is not None:
            log.info("buffer %s stays out of the live tier: %s", uri, reason)
            return
        with self._buffers_lock:
            self._buffers[uri] = text
        if self.ready():
            self._index_buffer(uri, text)

    def _index_buffer(self, uri: str, text: str) -> None:
        """Put one buffer's tokens into the live tier."""
        # the datastore holds whole buffers; only the prompt is cut to the model's length
        ids = self.loaded.tokenizer.encode(text, add_special_tokens=False, verbose=False)
        self.store.set_buffer(uri, ids)

    def drop_buffer(self, uri: str) -> None:
        """An editor buffer closed."""
        self.warmer.forget(uri)
        self.keep_window(uri, None)
        with self._buffers_lock:
            self._buffers.pop(uri, None)
        if self.store is not None:
            self.store.drop_buffer(uri)

    def notify_changed(self, paths: Sequence[str]) -> None:
        """Files changed on disk (didSave, didChangeWatchedFiles): refresh the workspace tier."""
        if self.store is not None and self.ready():
            self.store.notify_changed(paths)
            self.last_refresh = time.time()
            if self.drafting is not None:
                self.drafting.changed(paths)

    def change_folders(self, added: Sequence[str], removed: Sequence[str]) -> None:
        """Workspace folders were added or removed: reopen the index when the first one changed."""
        first = self.folders[0] if self.folders else None
        self.folders = [f for f in self.folders if f not in {os.path.abspath(r) for r in removed}]
        self.folders += [os.path.abspath(a) for a in added if os.path.abspath(a) not in self.folders]
        if (self.folders[0] if self.folders else None) != first and self.ready():
            self._open_index(lambda *a: None)

    # ----- completion ---------------------------------------------------------------------
    def prompt_for(self, text: str, offset: int, uri: str = "", session: bool = True,
                   restart: bool = False) -> tuple[Prompt, Cursor, str]:
        """The prompt, the cursor, and the healed text of one request (``request_prompt.prompt_for``)."""
        return request_prompt.prompt_for(self, text, offset, uri, session, restart)

    def keep_window(self, uri: str, line: int | None) -> None:
        """Start ``uri``'s next prompt window at ``line`` while it fits (None: forget it)."""
        if line is None:
            self._windows.pop(uri, None)
        else:
            self._windows[uri] = line

    def window_line(self, uri: str) -> int | None:
        """The line ``uri``'s last prompt window started at (None: none kept)."""
        return self._windows.get(uri)

    def complete(
        self,
        text: str,
        offset: int,
        uri: str = "",
        invoked: bool = False,
        should_stop: Callable[[], bool] | None = None,
        request_id: int = 0,
    ) -> Outcome:
        """Complete ``text`` at character ``offset``; raises ``Cancelled`` when superseded."""
        if not self.ready():
            raise DecodingError(f"not ready yet ({self.state})", state=self.state)
        started = time.perf_counter()
        self.figures.requests += 1
        self.last_request_at = time.monotonic()
        self.warmer.busy()  # a warm-up in progress yields; none starts before ``idle``
        try:
            return self._complete(text, offset, uri, invoked, should_stop, request_id, started)
        finally:
            self.warmer.idle()

    def _complete(self, text: str, offset: int, uri: str, invoked: bool, should_stop: Callable[[], bool] | None,
                  request_id: int, started: float) -> Outcome:
        """``complete`` once the request is counted."""
        through = self.config.server.type_through and not invoked  # an invoked request wants its items
        rest = rest_after_typing(self._shown, uri, text, offset) if through else None
        if rest is not None:
            return self._typed_through(rest, uri, text, offset, request_id, started)
        prompt, cursor, removed = self.prompt_for(text, offset, uri)
        # the stop rule reads the output after every token: decoded incrementally, not whole
        detokenizer = IncrementalText(self.loaded.tokenizer)

        def shown(ids: Sequence[int]) -> str | None:
            return visible(detokenizer.text_of(ids), removed)

        def stop(ids: Sequence[int]) -> bool:
            text_now = shown(ids)
            return text_now is None or cut(text_now, cursor)[1]

        try:
            generation = self.engine.complete(
                prompt.ids,
                self.config.decoding.max_new_tokens,
                mode=self.config.decoding.mode,
                stop=stop,
                should_stop=should_stop,
                first_allowed=None if prompt.healed is None else self.extensions.extending(prompt.healed),
            )
        except Exception as exc:
            self.figures.failed += 1
            if is_out_of_memory(exc):
                release_memory()
                raise out_of_memory(exc, self.loaded.device) from exc
            raise
        stats = generation.stats
        if stats.stop_reason == "cancelled":
            self.figures.cancelled += 1
            raise Cancelled("completion superseded", request_id=request_id)
        text_out = shown(generation.tokens)
        full = finish(text_out, cursor, truncated=stats.stop_reason == "length") if text_out else ""
        items = candidates_of(full, invoked, self.config.server.max_items)
        latency = time.perf_counter() - started
        self.figures.record(stats, latency)
        if self.drafting is not None:
            self.drafting.completed(request_id, generation.tokens)
        if uri and self.config.server.warm_documents:  # an editor's document (not a one-off)
            self.warmer.touch(uri, text, offset)
        outcome = Outcome(request_id, items, stats.to_dict(), latency, len(prompt.ids), prompt.fim)
        self.last = last_figures(outcome, prompt, self.template, self.last_context, removed)
        self._shown = Shown(uri, text, offset, full) if uri and items else None
        return outcome

    def _typed_through(self, rest: str, uri: str, text: str, offset: int, request_id: int, started: float) -> Outcome:
        """The outcome of a keystroke that typed the beginning of the completion on show: its rest
        (``type_through``), decoded nothing."""
        latency = time.perf_counter() - started
        outcome = Outcome(request_id, [rest], {"mode": "type_through", "new_tokens": 0, "steps": 0,
                                                "prefill_tokens": 0, "reused_tokens": 0}, latency, 0, False)
        self.figures.typed_through += 1
        self.last = {"request_id": request_id, "latency_ms": round(latency * 1000, 2), "type_through": True,
                     **outcome.stats}
        self._shown = Shown(uri, text, offset, rest)
        if self.config.server.warm_documents:
            self.warmer.touch(uri, text, offset)
        return outcome

    def record_accepted(self, args: Any) -> None:
        """The user accepted an item (reported by the item's command)."""
        self.figures.items_accepted += 1
        if self.drafting is not None:
            self.drafting.accepted(args)

    # ----- inspection (rest_lsp.completion.inspection) ------------------------------------
    def status(self) -> dict[str, Any]:
        """Model, device, index sizes per tier, last refresh, request figures."""
        return status_of(self)

    def query(self, text: str) -> dict[str, Any]:
        """What retrieval finds for the end of ``text``: the debugging view of the index."""
        return query_of(self, text)
