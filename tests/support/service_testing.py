"""A completion service on the embedded model over a small workspace, for the service tests."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import pytest

from indexer_fixtures import make_workspace


@contextlib.contextmanager
def started_service(tmp: Path, files: dict[str, str], **sections: dict[str, Any]) -> Iterator[Any]:
    """A started ``CompletionService`` over a workspace of ``files`` (a one-file corpus, its own
    index and cache folders, no history), closed on exit; ``sections`` add to the config's
    sections (``decoding={...}``, ``server={...}``)."""
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config

    ws = make_workspace(tmp / "proj", files)
    corpus = make_workspace(tmp / "corpus", {"c.py": "x = 1\n"})
    data: dict[str, Any] = {
        "model": {"threads": 1}, "index": {"corpus_roots": [str(corpus)], "index_dir": str(tmp / "index")},
        "retrieval": {"history_warmup": 0, "history_tokens": 0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
        config, problems = Config.from_dict(data)
        assert not problems, problems
        service = CompletionService(config, [str(ws)])
        service.start()
        try:
            yield service
        finally:
            service.close()
