"""The drafters of one workspace session: context, recycling, datastore, history and dense.

All of them feed one merged tree (``MergedDrafter``); this module also keeps what lives beside
them: the history source's file (loaded at start, saved every ``SAVE_EVERY`` completions and at
close), the dense tier's background refresher, and which completion an accepted item was.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any, Callable, Sequence

import msgpack

#: completions between two saves of the history source
SAVE_EVERY = 20
#: completions remembered for "the user accepted item i of request r"
REMEMBERED = 64


def _load_history(path: Path, max_tokens: int, span: int, log: Callable[[str], None]) -> Any:
    from rest_lsp.engine.drafter import HistoryDrafter

    history = HistoryDrafter(max_tokens, span=span)
    try:
        if path.exists():
            history.from_list(msgpack.unpackb(path.read_bytes()))
    except (OSError, ValueError, TypeError, msgpack.UnpackException) as exc:
        log(f"rest-lsp: history {path} not loaded ({exc}); starting empty")
    return history


class WorkspaceDrafting:
    """The merged drafter of a workspace and the sources' upkeep (history file, dense refresh)."""

    def __init__(self, folder: str | None, config: Any, loaded: Any, store: Any, engine_lock: Any,
                 log: Callable[[str], None]) -> None:
        from indexer import atomic
        from rest_lsp.dense import DenseDrafter, DenseRefresher, dense_path, history_path, open_workspace_dense
        from rest_lsp.drafters import DatastoreDrafter
        from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, RecyclingDrafter

        self._atomic = atomic
        self.log = log
        r = config.retrieval
        drafters: list[Any] = [
            ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix),
            RecyclingDrafter(int(loaded.model.config.vocab_size)),
            DatastoreDrafter(store, span=r.span),
        ]
        self.history = None
        self.history_file = history_path(folder, config.index)
        if r.history_tokens > 0:
            self.history = _load_history(self.history_file, r.history_tokens, r.span, log)
            drafters.append(self.history)
        self.dense = self.refresher = None
        if folder is not None:
            index, line = open_workspace_dense(folder, config, loaded)
            log(f"rest-lsp: {line}")
            if index is not None:
                self.dense = DenseDrafter(index, r.dense_neighbours)
                drafters.append(self.dense)
                self.refresher = DenseRefresher(index, loaded.runner or loaded.model, loaded.tokenizer, folder,
                                                engine_lock, dense_path(folder, config.index), log)
        self.drafter = MergedDrafter(drafters)
        self._outputs: collections.OrderedDict[int, tuple[int, ...]] = collections.OrderedDict()
        self._unsaved = 0

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
            self._atomic.write_file(self.history_file, msgpack.packb(self.history.to_list()), sync=False)
            self._unsaved = 0
        except OSError as exc:
            self.log(f"rest-lsp: history not saved ({exc})")

    def close(self) -> None:
        self.save()
        if self.refresher is not None:
            self.refresher.close()

    def stats(self) -> dict[str, Any]:
        """What the extra sources hold (for rest-lsp.status)."""
        out: dict[str, Any] = {}
        if self.history is not None:
            out["history_tokens"] = int(len(self.history.tokens))
        if self.dense is not None:
            index = self.dense.index
            out["dense"] = {"entries": index.entries, "refreshed_files": self.refresher.refreshed,
                            "searches": self.dense.searches,
                            "search_mean_ms": round(self.dense.search_s / self.dense.searches * 1e3, 4)
                            if self.dense.searches else None}
        return out
