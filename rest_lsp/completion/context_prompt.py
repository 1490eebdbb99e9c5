"""The context block of one prompt: whether there is one, its budget and format, and the block
chosen from the index (``context_sources``, ``context.choose_block``), kept for the completion
session (``context_session``) or chosen for one prompt alone.

``CompletionService.prompt_for`` builds a ``ContextPrompt`` from what it holds now (the store,
the server settings, the prompt template, the prompt's ``encode``, its log) and asks it for the
block of one prompt.
"""

from __future__ import annotations

from typing import Any, Callable

from rest_lsp.completion.context import EMPTY, Block
from rest_lsp.completion.context_session import ContextSession
from rest_lsp.completion.fim import FimTokens
from rest_lsp.completion.prompt import Encode, context_cap
from rest_lsp.completion.uris import path_of_uri


class ContextPrompt:
    """Chooses the context block of a prompt from ``store`` under the ``server`` settings."""

    def __init__(self, store: Any, server: Any, template: FimTokens | None, encode: Encode,
                 log: Callable[[str], None]) -> None:
        self.store = store  # indexer.datastore.Datastore, or None before the index is open
        self.server = server  # rest_lsp.config.schema's server section
        self.template = template
        self.encode = encode
        self.log = log

    def block(self, text: str, prefix: str, uri: str, repo: str, path: str, header: str, file_header: str,
              session: ContextSession[Block] | None, restart: bool = False) -> Block:
        """The context block of a prompt (``EMPTY`` when server.context is off or nothing fits).

        Its budget is ``server.context_tokens`` within ``prompt.context_cap``; in the model's
        repository format when the prompt has the template's header, else commented headers.
        ``session``: the completion session whose block is kept (chosen when one starts); None
        chooses one for this prompt alone; ``restart``: a new session's block in any case."""
        server, encode = self.server, self.encode
        if server.context != "auto" or server.context_tokens <= 0 or self.store is None:
            return EMPTY
        template = self.template
        fim = template if header and template is not None and template.repo_format else None
        cap = context_cap(server.max_prompt_tokens, len(encode(header)) + len(encode(file_header)))
        budget = min(server.context_tokens, cap)
        if budget <= 0:
            return EMPTY
        current = path or (path_of_uri(uri) or uri)

        def choose() -> Block:
            return self.choose(text, prefix, uri, repo, current, fim, budget)

        key = (budget, fim.name if fim is not None else None, repo, id(self.store))
        if session is None:
            return choose()
        return session.block_for(uri, prefix, key, choose, restart, per_document=server.warm_documents)

    def choose(self, text: str, prefix: str, uri: str, repo: str, current: str, fim: FimTokens | None,
               budget: int) -> Block:
        """A new context block from the index's live and workspace tiers (``context_sources``);
        ``EMPTY`` plus a log line when the search fails (the completion goes on without it)."""
        from rest_lsp.completion.context import choose_block, defined_names, imported_names, query_names
        from rest_lsp.completion.context_sources import definition_snippets, match_snippets, query_ids, sources_of

        store = self.store
        try:
            root = store.workspace.root if store.workspace is not None else None
            src = sources_of(store, uri, root)
            if not src.views:
                return EMPTY
            index_tok = store.tokenizer
            snippets = match_snippets(src, query_ids(prefix, index_tok.encode), index_tok.decode)
            near = query_names(prefix, defined_names(text))
            names = near + imported_names(prefix, skip=near)  # near the cursor first: ranked higher
            snippets += definition_snippets(src, names, index_tok.encode, index_tok.decode)
            return choose_block(snippets, budget, self.encode, fim, repo, current)
        except Exception as exc:  # context is an extra: a failed search must not cost the completion
            self.log(f"rest-lsp: no context block for {uri or 'the document'}: {exc!r}")
            return EMPTY
