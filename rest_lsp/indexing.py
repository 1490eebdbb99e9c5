"""The server's background indexing (model, datastore, then the dense tier when asked and the
history warm-up), reported to the client with work-done progress (``$/progress``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from lsprotocol import types as lsp

log = logging.getLogger(__name__)


def warmup_wanted_of(service: Any) -> bool:
    """Whether ``service`` has history warm-up left (imported late: no work at import time)."""
    from rest_lsp.completion import warmup

    return warmup.wanted(service)


async def start_indexing(ls: Any, title: str, rebuild: bool = False, reload: bool = False) -> None:
    """Load the model and build/open the index in the background, reported with ``$/progress``."""
    if ls.service is None:
        return
    token = f"rest-lsp-index-{time.monotonic_ns()}"
    caps = ls.client_capabilities.window
    progress_ok = bool(caps and caps.work_done_progress)
    if progress_ok:
        try:
            await ls.work_done_progress.create_async(token)
            ls.work_done_progress.begin(token, lsp.WorkDoneProgressBegin(title=title, percentage=0, cancellable=False))
        except Exception:
            progress_ok = False

    def report(done: int, total: int, message: str) -> None:
        if progress_ok:
            pct = int(100 * done / total) if total else None
            ls._send(lambda: ls.work_done_progress.report(token, lsp.WorkDoneProgressReport(message=message, percentage=pct)))

    def end(message: str, logged: bool = False) -> None:
        if progress_ok:
            ls._send(lambda: ls.work_done_progress.end(token, lsp.WorkDoneProgressEnd(message=message)))
        if not logged:
            ls.log_line(message)

    def background(message: str) -> None:
        # the dense build (retrieval.dense = "on", no index yet), then the history warm-up, under
        # the same progress; completions are served meanwhile
        from rest_lsp.completion import warmup

        logged = True  # ``message`` (the ready line) was logged already
        try:
            if ls.service.wants_dense():
                message, logged = ls.service.build_dense(report), False
            if warmup.wanted(ls.service):
                if not logged:
                    ls.log_line(message)  # the warm-up's line ends the progress instead
                    logged = True
                line = warmup.run_warmup(ls.service, report)
                if line:
                    message, logged = line, False
        except Exception as exc:  # the daemon serves on without them
            log.exception("background work failed")
            message, logged = f"rest-lsp: background work failed: {exc}", False
        end(message, logged)

    def work() -> None:
        try:
            ls.service.start(progress=report, rebuild=rebuild, reload=reload)
            message = ls.service.ready_message()
            if ls.service.wants_dense() or warmup_wanted_of(ls.service):
                # completions work from now on; the rest follows on a thread of its own: saved
                # files' refreshes, which queue on this worker, must not wait for it
                ls.log_line(message)
                threading.Thread(target=background, args=(message,), name="rest-lsp-background", daemon=True).start()
                return
        except Exception as exc:
            log.exception("indexing failed")
            message = f"rest-lsp: indexing failed: {exc}"
            ls.show(message, lsp.MessageType.Error)
        end(message)

    ls.background.submit(work)
