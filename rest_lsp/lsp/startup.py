"""The server's background indexing (model, datastore, then the dense tier when asked), reported
to the client with work-done progress (``$/progress``), and the history warm-up after it.

A load counts as under way (``ls.loads_pending``) from ``start_indexing`` until the service's
``start`` returns or fails; its end wakes the completion requests waiting for readiness
(``server.ready_wait_s``)."""

from __future__ import annotations

import asyncio
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
    loop = asyncio.get_running_loop()
    ls.load_started()  # before the progress round trip: requests meanwhile wait for this load
    try:
        await _submit(ls, loop, title, rebuild, reload)
    except BaseException:
        ls.load_ended()
        raise


async def _submit(ls: Any, loop: asyncio.AbstractEventLoop, title: str, rebuild: bool, reload: bool) -> None:
    """Begin the progress and submit the load to the background worker (``start_indexing``)."""
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
        # under the same progress: completions are served meanwhile
        end(ls.service.build_dense(report))

    def warm_up() -> None:
        # no progress: the daemon is ready, and an editor must not show it as indexing (the
        # warm-up only runs while the user is idle); log lines and rest-lsp.status say how far
        from rest_lsp.completion import warmup

        def every_100(done: int, total: int, message: str) -> None:
            if done % 100 == 0 and done < total:
                ls.log_line(f"rest-lsp: {message}")

        try:
            line = warmup.run_warmup(ls.service, every_100)
        except Exception as exc:  # the daemon serves on without it
            log.exception("history warm-up failed")
            line = f"rest-lsp: history warm-up failed: {exc}"
        if line:
            ls.log_line(line)

    def background(dense: bool) -> None:
        if dense:
            build_dense()
        if warmup_wanted_of(ls.service):
            warm_up()

    def load_ended() -> None:
        try:
            loop.call_soon_threadsafe(ls.load_ended)
        except RuntimeError:  # the loop is closed: the server is exiting
            pass

    def work() -> None:
        try:
            try:
                ls.service.start(progress=report, rebuild=rebuild, reload=reload)
            finally:
                load_ended()  # ready or failed: the requests waiting for it go on
            message = ls.service.ready_message()
            dense = ls.service.wants_dense()
            if dense or warmup_wanted_of(ls.service):
                # completions work from now on; the dense build (retrieval.dense = "on", no dense
                # index yet; under this progress) and the history warm-up follow on a thread of
                # their own: saved files' refreshes, which queue on this worker, must not wait
                if dense:
                    ls.log_line(message)
                else:
                    end(message)
                threading.Thread(target=background, args=(dense,), name="rest-lsp-background", daemon=True).start()
                return
        except Exception as exc:
            log.exception("indexing failed")
            message = f"rest-lsp: indexing failed: {exc}"
            ls.show(message, lsp.MessageType.Error)
        end(message)

    ls.background.submit(work)
