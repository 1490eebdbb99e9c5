"""The drafters of one workspace session: context, recycling, datastore, history and dense.

All of them feed one merged tree (``MergedDrafter``); this module also keeps what lives beside
them: the history source's file (loaded at start, saved every ``SAVE_EVERY`` completions and at
close), the dense tier's background refresher, and which completion an accepted item was.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import msgpack

#: completions between two saves of the history source
SAVE_EVERY = 20
#: completions remembered for "the user accepted item i of request r"
REMEMBERED = 64


class _Cancelled(Exception):
    """Raised inside a dense build whose workspace was closed meanwhile."""


#: the history file's layout: {"format", "model", "tokens", "warmed"} (format 1 was a bare list)
HISTORY_FORMAT = 2


def model_fingerprint(loaded: Any) -> str:
    """A cheap name for the model whose outputs a history holds: its configuration (vocabulary
    size included) and weight files' names, sizes and times (no hashing of gigabytes at every start)."""
    import hashlib

    h = hashlib.sha256(loaded.model.config.to_json_string().encode())
    source = Path(str(loaded.source))
    for f in sorted(source.glob("*.safetensors")) if source.is_dir() else []:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _load_history(path: Path, max_tokens: int, span: int, fingerprint: str, vocab: int,
                  log: Callable[[str], None]) -> tuple[Any, int]:
    """(the history source, warm-up positions already done) from ``path``; empty when the file
    is missing, unreadable or another model's (its token ids would mean other text)."""
    from rest_lsp.engine.drafter import HistoryDrafter

    history = HistoryDrafter(max_tokens, span=span)
    try:
        if not path.exists():
            return history, 0
        data = msgpack.unpackb(path.read_bytes())
        if isinstance(data, list):  # format 1: no model named; kept when its ids fit the vocabulary
            if all(isinstance(t, int) and t < vocab for t in data):
                history.from_list(data)
            return history, 0
        if data.get("model") != fingerprint:
            log(f"rest-lsp: history {path} is another model's; starting empty")
            return history, 0
        history.from_list(data["tokens"])
        return history, int(data.get("warmed", 0))
    except (OSError, ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException) as exc:
        log(f"rest-lsp: history {path} not loaded ({exc}); starting empty")
        return HistoryDrafter(max_tokens, span=span), 0


class WorkspaceDrafting:
    """The merged drafter of a workspace and the sources' upkeep (history file, dense refresh)."""

    def __init__(self, folder: str | None, config: Any, loaded: Any, store: Any, engine_lock: Any,
                 log: Callable[[str], None]) -> None:
        from indexer.storage import atomic
        from rest_lsp.drafting.dense import history_path, open_workspace_dense
        from rest_lsp.drafting.datastore import datastore_drafter
        from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, RecyclingDrafter

        self._atomic = atomic
        self.log = log
        r = config.retrieval
        drafters: list[Any] = [
            ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix),
            RecyclingDrafter(int(loaded.model.config.vocab_size)),
        ]
        #: the datastore's drafter (gated when retrieval.gate is on)
        self.datastore = datastore_drafter(store, r)
        drafters.append(self.datastore)
        self.history = None
        self.history_file = history_path(folder, config.index)
        self.fingerprint = model_fingerprint(loaded)
        #: warm-up positions completed so far (persisted with the history; see warmup.py)
        self.warmed = 0
        if r.history_tokens > 0:
            self.history, self.warmed = _load_history(self.history_file, r.history_tokens, r.span, self.fingerprint,
                                                      int(loaded.model.config.vocab_size), log)
            drafters.append(self.history)
        self.folder, self.config, self.loaded, self.engine_lock = folder, config, loaded, engine_lock
        self.dense = self.refresher = None
        self.drafter = MergedDrafter(drafters)
        #: the workspace has no usable dense index and retrieval.dense = "on": build_dense() builds it
        self.dense_wanted = False
        self._closed = False
        #: set when the workspace closes: background work (dense build, warm-up) stops
        self.closing = threading.Event()
        if folder is not None:
            index, line = open_workspace_dense(folder, config, loaded)
            log(f"rest-lsp: {line}")
            if index is not None:
                self.attach_dense(index)
            self.dense_wanted = index is None and r.dense == "on"
        self._outputs: collections.OrderedDict[int, tuple[int, ...]] = collections.OrderedDict()
        self._unsaved = 0

    def attach_dense(self, index: Any) -> None:
        """Draft from ``index`` from the next step on, and keep it fresh as files change."""
        from rest_lsp.drafting.dense import DenseDrafter, DenseRefresher, dense_path

        dense = DenseDrafter(index, self.config.retrieval.dense_neighbours)
        refresher = DenseRefresher(index, self.loaded.runner or self.loaded.model, self.loaded.tokenizer,
                                   self.folder, self.engine_lock, dense_path(self.folder, self.config.index), self.log)
        with self.engine_lock:  # the engine reads the drafter list while it decodes
            self.drafter.drafters.append(dense)
            self.dense, self.refresher = dense, refresher

    def build_dense(self, progress: Callable[[int, int, str], None]) -> str:
        """Embed the workspace into a new dense index, then draft from it; returns a status line.

        Runs on a background thread; the model is taken one 256-token window at a time under the
        engine's lock, so completions go on (each waits for one window at most) while it builds.
        """
        from rest_lsp.drafting.dense import build_workspace_dense

        self.dense_wanted = False

        def step(done: int, total: int, message: str) -> None:
            if self._closed:  # the workspace was reindexed or the daemon is stopping
                raise _Cancelled()
            progress(done, total, message)

        try:
            index = build_workspace_dense(self.folder, self.config, self.loaded, step, guard=self.engine_lock)
        except ValueError as exc:  # nothing to embed
            return f"rest-lsp: no dense index built ({exc})"
        except _Cancelled:
            return "rest-lsp: dense index build stopped (workspace closed)"
        except Exception as exc:  # the sparse tiers serve on: a failed build is a message
            self.log(f"rest-lsp: dense index build failed: {exc!r}")
            return f"rest-lsp: dense index build failed: {exc}"
        if self._closed:
            return "rest-lsp: dense index built, not used (workspace closed)"
        self.attach_dense(index)
        info = index.info or {}
        return (f"rest-lsp: dense index built ({index.entries} entries, "
                f"{info.get('embed_tokens_per_s', 0):.0f} tokens/s)")

    def completed(self, request_id: int, tokens: Sequence[int]) -> None:
        """A completion was decoded: the history learns it."""
        if self.history is None or not tokens:
            return
        self.history.add(tokens)
        self._outputs[request_id] = tuple(tokens)
        while len(self._outputs) > REMEMBERED:
            self._outputs.popitem(last=False)
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY:
            self.save()

    def accepted(self, args: Any) -> None:
        """The user accepted an item of a request (the command's arguments: request id, item)."""
        flat = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
        request_id = next((a for a in flat if isinstance(a, int)), None)
        tokens = self._outputs.get(request_id) if request_id is not None else None
        if self.history is not None and tokens:
            self.history.add(tokens, accepted=True)  # counted once more: accepted text counts double

    def changed(self, paths: Sequence[str]) -> None:
        """Files changed on disk: their dense entries are re-embedded in the background."""
        if self.refresher is not None:
            self.refresher.notify(paths)

    def save(self) -> None:
        """Persist the history source (atomically)."""
        if self.history is None:
            return
        try:
            self.history_file.parent.mkdir(parents=True, exist_ok=True)
            record = {"format": HISTORY_FORMAT, "model": self.fingerprint, "tokens": self.history.to_list(),
                      "warmed": self.warmed}
            self._atomic.write_file(self.history_file, msgpack.packb(record), sync=False)
            self._unsaved = 0
        except OSError as exc:
            self.log(f"rest-lsp: history not saved ({exc})")

    def close(self) -> None:
        self._closed = True
        self.closing.set()
        self.save()
        if self.refresher is not None:
            self.refresher.close()

    def stats(self) -> dict[str, Any]:
        """What the extra sources hold (for rest-lsp.status)."""
        out: dict[str, Any] = {}
        gate = getattr(self.datastore, "stats", None)
        if gate is not None:
            out["datastore_gate"] = gate()
        if self.history is not None:
            out["history_tokens"] = int(len(self.history.tokens))
            out["history_warmup"] = {"done": self.warmed, "target": self.config.retrieval.history_warmup}
        if self.dense is not None:
            index = self.dense.index
            out["dense"] = {"entries": index.entries, "refreshed_files": self.refresher.refreshed,
                            "searches": self.dense.searches,
                            "search_mean_ms": round(self.dense.search_s / self.dense.searches * 1e3, 4)
                            if self.dense.searches else None}
        return out
