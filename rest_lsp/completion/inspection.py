"""What a ``CompletionService`` shows of itself: its status (``rest-lsp.status``: model, index,
last completion, drafting, context block, request figures) and what retrieval finds for a text
(``rest-lsp.query``, the debugging view of the index)."""

from __future__ import annotations

from typing import Any

#: a ``rest_lsp.completion.service.CompletionService`` (not imported: the service imports this module)
CompletionService = Any


def status_of(service: CompletionService) -> dict[str, Any]:
    """Model, device, index sizes per tier, last refresh, request figures."""
    out: dict[str, Any] = {"state": service.state, "folders": service.folders}
    if service.loaded is not None:
        from rest_lsp.engine.model import describe

        out["model"] = describe(service.loaded)
    if service.store is not None:
        out["index"] = service.store.stats()
    out["last_refresh"] = service.last_refresh
    out["last_completion"] = service.last
    if service.engine is not None:
        out["draft_budget"] = service.config.decoding.draft_budget or "adaptive"
        out["source_weights"] = {k: round(v, 3) for k, v in service.engine.source_weights.weights.items()}
    if service.drafting is not None:
        out.update(service.drafting.stats())
    out["context"] = {"setting": service.config.server.context, "last_block": service.last_context.describe(),
                      "sessions": service.context_session.started, "reused": service.context_session.reused}
    out["prompt"] = {"instruct": service.chat is not None,  # new function bodies asked in chat form
                     "warm_documents": {"on": service.config.server.warm_documents,
                                        "done": service.warmer.done, "stopped": service.warmer.stopped}}
    out["accepted_by_source"] = dict(service.figures.accepted_by_source)  # draft tokens, all requests
    out["requests"] = service.figures.to_dict()  # last: what an output panel shows first is its end
    return out


def query_of(service: CompletionService, text: str) -> dict[str, Any]:
    """What retrieval finds for the end of ``text``: the debugging view of the index."""
    if not service.ready():
        return {"state": service.state}
    tok = service.loaded.tokenizer
    ids = tok.encode(text, add_special_tokens=False, verbose=False)
    found = service.store.retrieve(ids)
    candidates = sorted(found.candidates, key=lambda c: (-c.suffix_len, -c.count, c.tokens))
    return {
        "query_tokens": len(ids),
        "suffix_len": found.suffix_len,
        "matched": tok.decode(ids[-found.suffix_len:]) if found.suffix_len else "",
        "latency_ms": round(found.seconds * 1000, 3),
        "candidates": [
            {
                "text": tok.decode(list(c.tokens)),
                "tokens": list(c.tokens),
                "count": c.count,
                "source": c.source,
                "suffix_len": c.suffix_len,
            }
            for c in candidates[:50]
        ],
    }

