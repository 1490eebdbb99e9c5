"""The dense-tier actions of ``rest-lsp index``: ``dense`` (build), the dense row of ``stats``, and
``query --dense`` (the neighbours of the model's hidden state at the end of TEXT)."""

from __future__ import annotations

import json

from rest_lsp.commands.index_common import _config, _progress_bar


def dense_stats(args) -> dict | None:
    """The workspace's dense index figures, when it has one (no model needed)."""
    import os

    from indexer.search.dense import DenseIndex
    from rest_lsp.drafting.dense import dense_path
    from rest_lsp.errors import DatastoreError

    path = dense_path(os.path.abspath(args.workspace or "."), _config(args).index)
    if not path.exists():
        return None
    try:
        return {"path": str(path), **DenseIndex.open(path).stats()}
    except DatastoreError as exc:
        return {"path": str(path), "error": str(exc)}


def _loaded_model(args):
    from rest_lsp.engine.model import load_model

    config = _config(args)
    if getattr(args, "model", ""):
        config.model.name = args.model
    return config, load_model(config.model)


def dense_neighbours(args, text: str) -> list[dict]:
    """The workspace dense index's neighbours of the model's hidden state at the end of ``text``."""
    import os

    from rest_lsp.drafting.dense import hidden_states_of, open_workspace_dense
    from rest_lsp.errors import DatastoreError

    config, loaded = _loaded_model(args)
    index, line = open_workspace_dense(os.path.abspath(args.workspace or "."), config, loaded)
    if index is None:
        raise DatastoreError(line)
    states = hidden_states_of(loaded.runner or loaded.model, loaded.tokenizer.encode(text, add_special_tokens=False))
    return [{"score": round(n.score, 4), "path": n.path, "tokens": list(n.tokens),
             "text": loaded.tokenizer.decode(list(n.tokens))}
            for n in index.neighbours(states[-1], config.retrieval.dense_neighbours)]


def run_dense(args) -> int:
    """Build the workspace's dense index with the configured (or named) model."""
    import os

    from rest_lsp.drafting.dense import build_workspace_dense, dense_path

    config, loaded = _loaded_model(args)
    workspace = os.path.abspath(args.workspace or ".")
    progress, close = _progress_bar(unit="tok")
    try:
        index = build_workspace_dense(workspace, config, loaded, progress)
    finally:
        close()
    stats = {"path": str(dense_path(workspace, config.index)), **index.stats()}
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"dense index {stats['path']}: {stats['entries']} entries from {stats['documents']} files, "
              f"{stats['bytes_per_entry']} bytes/entry, embedded at {stats['embed_tokens_per_s']} tokens/s")
    return 0
