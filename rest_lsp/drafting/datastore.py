"""Drafters that need the datastore: ``indexer`` retrieval as engine drafts.

Kept outside ``rest_lsp.engine`` so that the engine never imports the indexer's search.
"""

from __future__ import annotations

from typing import Any, Sequence

from rest_lsp.engine.drafter import Candidate, Drafter


class DatastoreDrafter(Drafter):
    """Continuations retrieved from every datastore tier (live buffers, workspace, corpus)."""

    def __init__(self, store: Any, span: int | None = None, mode: str = "all_lengths",
                 max_candidates: int | None = None) -> None:
        self.store = store
        self.span = span
        self.mode = mode
        self.max_candidates = max_candidates

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        found = self.store.retrieve(context_ids, span=self.span, mode=self.mode,
                                    max_candidates=self.max_candidates)
        return found.candidates  # the one Candidate type (indexer.candidate): nothing to convert


def datastore_drafter(store: Any, retrieval: Any) -> Any:
    """The datastore's drafter as rest-lsp's default drafting asks it (``RetrievalConfig``):
    behind a ``GatedDrafter`` when ``retrieval.gate`` is on."""
    from rest_lsp.engine.gate import GatedDrafter

    drafter = DatastoreDrafter(store, span=retrieval.span)
    return GatedDrafter(drafter) if retrieval.gate else drafter


def open_corpus_datastore(tokenizer_ref: Any, index_dir: str = "", config: Any = None) -> tuple[Any, str]:
    """The datastore at ``index_dir``, or the default corpus index if it was built; never builds.

    Returns ``(store or None, a line saying what was opened or why nothing was)``, so that
    commands can fall back to the context drafters and say so.
    """
    try:
        from indexer.datastore import Datastore
        from indexer.tokens import coerce_tokenizer
        from indexer.workspace_index import corpus_dir
    except ImportError as exc:  # the indexer is part of the package, but say it plainly
        return None, f"no datastore: the indexer cannot be imported ({exc})"
    from rest_lsp.config.schema import Config
    from rest_lsp.errors import ReportedError

    config = config or Config()
    try:
        tok = coerce_tokenizer(tokenizer_ref)
        path = index_dir or str(corpus_dir(config.index, tok))
        store = Datastore.open(path, tok, config.index, retrieval=config.retrieval)
    except ReportedError as exc:
        hint = "" if index_dir else " (build it with `rest-lsp index`)"
        return None, f"no datastore: {exc}{hint}"
    return store, f"datastore {path}"
