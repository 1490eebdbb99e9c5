"""Keeping the model and the index usable: a verified index, a tokenizer that fits, out-of-memory.

What the service does when something is damaged or does not fit: rebuild a damaged index (and
say so to the editor), refuse a tokenizer the model has no embeddings for, recognise and recover
from an out-of-memory error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from rest_lsp.config.schema import Config
from rest_lsp.errors import ModelError

#: progress(done, total, message) of a long start-up step
Progress = Callable[[int, int, str], None]


def open_verified(folder: str | None, config: Config, tokenizer: Any, progress: Progress,
                  send: Callable[[str], None], rebuild: bool = False) -> Any:
    """``open_or_build`` plus a full checksum pass; a damaged index is rebuilt, never used.

    Opening checks manifests, sizes, versions, the tokenizer and sampled checksums (and rebuilds
    on a failure); a flipped bit between the sampled blocks is only found by reading every byte,
    done here once per start (about 1 GB/s).  Every rebuild is told to the editor via ``send``.
    ``rebuild``: the workspace's index is built again from its files (``rest-lsp.reindex``).
    """
    from indexer.storage import indexdir
    from indexer.workspace_index import open_or_build
    from rest_lsp.errors import DatastoreError

    with _forwarded(logging.getLogger("indexer"), send):
        store = open_or_build(folder, config, tokenizer, progress=progress, watch=folder is not None,
                              rebuild=rebuild)
        damaged: dict[Path, str] = {}
        for shard in list(store.corpus) + (list(store.workspace.base) if store.workspace else []):
            try:
                shard.verify()
            except DatastoreError as exc:
                damaged.setdefault(shard.directory.parent, str(exc))
        if not damaged:
            return store
        store.close()
        for directory, problem in damaged.items():
            send(f"rest-lsp: index {directory} is damaged ({problem}): rebuilding")
            (directory / indexdir.POINTER).unlink(missing_ok=True)  # the next open rebuilds it
        return open_or_build(folder, config, tokenizer, progress=progress, watch=folder is not None)


def check_tokenizer_fits(loaded: Any) -> None:
    """``ModelError`` when the tokenizer can produce ids the model has no embedding for."""
    n_tokens = len(loaded.tokenizer)
    vocab = int(getattr(loaded.model.config, "vocab_size", n_tokens) or n_tokens)
    if n_tokens > vocab:
        raise ModelError(
            f"tokenizer mismatch: the tokenizer of {loaded.source} has {n_tokens} tokens but the "
            f"model's vocabulary has {vocab}; they do not belong together",
            source=loaded.source, tokenizer_tokens=n_tokens, vocab_size=vocab,
        )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an accelerator (or host) out-of-memory error from torch."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, (MemoryError, oom)) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def out_of_memory(exc: BaseException, device: Any) -> Exception:
    """The ``ModelError`` a completion that ran out of memory on ``device`` raises: what to lower."""
    from rest_lsp.errors import ModelError

    return ModelError(f"out of memory on {device} while completing: lower decoding.max_new_tokens or "
                      f"decoding.draft_budget, or set model.device = \"cpu\" ({exc})", device=str(device))


def release_memory() -> None:
    """Give cached accelerator memory back after an out-of-memory error."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _forwarded:
    """Forward WARNING records of ``logger`` to ``send`` (e.g. "index unusable: rebuilding")."""

    def __init__(self, logger: logging.Logger, send: Callable[[str], None]) -> None:
        self.logger, self.handler = logger, logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: send(f"rest-lsp: {record.getMessage()}")

    def __enter__(self) -> None:
        self.logger.addHandler(self.handler)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
