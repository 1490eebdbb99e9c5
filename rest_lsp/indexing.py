"""The server's background indexing (model, datastore, then the dense tier when asked), reported
to the client with work-done progress (``$/progress``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from lsprotocol import types as lsp

log = logging.getLogger(__name__)


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

    def end(message: str) -> None:
        if progress_ok:
            ls._send(lambda: ls.work_done_progress.end(token, lsp.WorkDoneProgressEnd(message=message)))
        ls.log_line(message)

    def build_dense() -> None:
        end(ls.service.build_dense(report))

    def work() -> None:
        try:
            ls.service.start(progress=report, rebuild=rebuild, reload=reload)
            message = ls.service.ready_message()
            if ls.service.wants_dense():
                # retrieval.dense = "on" and no dense index yet: completions work from now on, and
                # the first dense build follows under the same progress, on a thread of its own:
                # saved files' refreshes, which queue on this worker, must not wait for it
                ls.log_line(message)
                threading.Thread(target=build_dense, name="rest-lsp-dense-build", daemon=True).start()
                return
        except Exception as exc:
            log.exception("indexing failed")
            message = f"rest-lsp: indexing failed: {exc}"
            ls.show(message, lsp.MessageType.Error)
        end(message)

    ls.background.submit(work)
