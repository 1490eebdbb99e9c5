"""The file watcher: watchdog events on the workspace, debounced, refreshing the workspace tier.

Events are collected into a set of paths; once no new event has arrived for ``debounce_ms``
(editors save through temp files and renames, several events per save), one worker thread
refreshes those paths, so saves are indexed in the background and in order.

Ignored directories are not watched (``sources.watch_plan``): a recursive watch on the root
would put an OS watch on every directory of a ``.venv`` or ``node_modules`` and overflow the
event queue when they change.  Directories created later under a directory watched alone get
a watch of their own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from indexer.building import sources
from indexer.workspace import RefreshResult, WorkspaceTier

log = logging.getLogger(__name__)

#: path fragments whose events are dropped before the debounce (busy and never indexed)
NOISY: tuple[str, ...] = (f"{os.sep}.git{os.sep}", f"{os.sep}__pycache__{os.sep}")


class Watcher:
    """Watches a workspace tier's root and refreshes it on changes."""

    def __init__(self, workspace: WorkspaceTier, debounce_ms: int = 50,
                 on_refresh: Callable[[RefreshResult], None] | None = None) -> None:
        self.workspace = workspace
        self.debounce = debounce_ms / 1000.0
        self.on_refresh = on_refresh
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._last_event = 0.0
        self._stopping = False
        self._observer = None
        self._thread: threading.Thread | None = None
        self.refreshes = 0  # completed refreshes (for waiting in tests)
        self.errors: list[str] = []
        self._handler = None
        self._alone: set[str] = set()  # directories watched without their subdirectories
        self.watched: dict[str, bool] = {}  # directory -> recursive

    def start(self) -> None:
        """Start watching (recursive) and the refresh worker."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # noqa: D401 - watchdog callback
                watcher._on_event(event)

        self._observer = Observer()
        self._handler = Handler()
        alone, trees = sources.watch_plan(self.workspace.root, self.workspace.rules)
        for d in alone:
            self._watch(d, recursive=False)
        for d in trees:
            self._watch(d, recursive=True)
        self._observer.daemon = True
        self._observer.start()
        self._thread = threading.Thread(target=self._run, name="index-watcher", daemon=True)
        self._thread.start()

    def _watch(self, directory: str, recursive: bool) -> None:
        if directory in self.watched:
            return
        try:
            self._observer.schedule(self._handler, directory, recursive=recursive)
        except OSError as exc:  # vanished meanwhile, or out of OS watches: log, keep the rest
            log.warning("cannot watch %s: %s", directory, exc)
            return
        self.watched[directory] = recursive
        if not recursive:
            self._alone.add(directory)

    def _watch_new_directory(self, path: str) -> None:
        """A directory appeared where no recursive watch covers it: watch it unless ignored."""
        if os.path.dirname(path) not in self._alone or not os.path.isdir(path):
            return
        if sources.pattern_skip(path, self.workspace.root, self.workspace.rules, is_dir=True) is None:
            self._watch(path, recursive=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; pending changes are dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_event(self, event) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return  # a directory's mtime changed: its files report their own events
        paths = [os.fsdecode(event.src_path)]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(os.fsdecode(dest))
        if event.is_directory and event.event_type in ("created", "moved"):
            self._watch_new_directory(paths[-1])
        paths = [p for p in paths if not any(n in p for n in NOISY)]
        if paths:
            self.enqueue(paths)

    def enqueue(self, paths) -> None:
        """Schedule paths for a debounced refresh."""
        with self._cond:
            self._pending.update(paths)
            self._last_event = time.monotonic()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                # quiet period: wait until no event arrived for ``debounce`` seconds
                while not self._stopping:
                    left = self._last_event + self.debounce - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stopping:
                    return
                paths, self._pending = self._pending, set()
            try:
                result = self.workspace.refresh(sorted(paths))
                if self.on_refresh is not None:
                    self.on_refresh(result)
            except Exception as exc:  # a refresh must never kill the watcher
                log.exception("workspace refresh failed for %d paths", len(paths))
                self.errors.append(repr(exc))
            with self._cond:
                self.refreshes += 1
                self._cond.notify_all()

    def wait_refreshes(self, count: int, timeout: float) -> bool:
        """Block until ``count`` refreshes have completed (or timeout); True when they have."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.refreshes < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True
