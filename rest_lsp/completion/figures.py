"""What one completion returned (``Outcome``) and the running request figures (``Figures``)."""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass, field
from typing import Any

from rest_lsp.completion.items import candidates_of

#: completions kept for the status figures
STATS_WINDOW = 200


@dataclass
class Outcome:
    """What one completion request produced."""

    request_id: int
    items: list[str]
    stats: dict[str, Any]
    latency_s: float
    prompt_tokens: int
    fim: bool

    def for_trigger(self, invoked: bool, max_items: int) -> "Outcome":
        """The same outcome with the items an automatic (one) or invoked (several) request offers.

        A request shares the result of one of the other kind: an automatic run kept one item, from
        which an invoked request gets its several again (they are cuts of the same text).
        """
        items = candidates_of(self.items[0], invoked, max_items) if self.items else []
        return Outcome(self.request_id, items, self.stats, self.latency_s, self.prompt_tokens, self.fim)

    def summary(self) -> str:
        """One log line of figures."""
        s = self.stats
        return (
            f"{s.get('new_tokens', 0)} tokens, {s.get('steps', 0)} steps, "
            f"{s.get('tokens_per_step', 0):.2f} tok/step, prompt {self.prompt_tokens} "
            f"(reused {s.get('reused_tokens', 0)}), stop={s.get('stop_reason', '')}"
        )


@dataclass
class Figures:
    """Running request figures for ``rest-lsp.status``."""

    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=STATS_WINDOW))
    tokens_per_step: collections.deque = field(default_factory=lambda: collections.deque(maxlen=STATS_WINDOW))
    drafted: int = 0
    accepted_drafts: int = 0
    requests: int = 0
    cancelled: int = 0
    failed: int = 0
    items_accepted: int = 0
    #: keystrokes answered with the rest of the completion on show (completion/type_through.py)
    typed_through: int = 0
    #: accepted draft tokens each source proposed, over all requests
    accepted_by_source: dict = field(default_factory=dict)

    def record(self, stats: Any, latency: float) -> None:
        """Add one completion (the engine's generation stats, its latency) to the running figures."""
        self.latencies.append(latency)
        if stats.steps:
            self.tokens_per_step.append(stats.tokens_per_step)
        self.drafted += stats.drafted_tokens
        self.accepted_drafts += stats.accepted_drafts
        for source, k in stats.accepted_by_source.items():
            self.accepted_by_source[source] = self.accepted_by_source.get(source, 0) + k

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

        return {
            "requests": self.requests,
            "cancelled": self.cancelled,
            "failed": self.failed,
            "accepted_items": self.items_accepted,
            "typed_through": self.typed_through,
            "latency_ms_p50": pct(0.5),
            "latency_ms_p95": pct(0.95),
            "tokens_per_step": round(statistics.fmean(self.tokens_per_step), 3) if self.tokens_per_step else None,
            "draft_acceptance_rate": round(self.accepted_drafts / self.drafted, 3) if self.drafted else None,
        }


def last_figures(outcome: Outcome, prompt: Any, template: Any, context: Any, healed: str) -> dict[str, Any]:
    """What ``rest-lsp.status`` shows of the last completion: its outcome's stats, the prompt's
    parts (``completion.prompt.Prompt``), the template's name, the context block's files."""
    return {"request_id": outcome.request_id, "latency_ms": round(outcome.latency_s * 1000, 2),
            "prompt_tokens": len(prompt.ids), "fim": prompt.fim, "framing": prompt.framing,
            "template": template.name if template else None,
            "header_tokens": prompt.header_tokens, "context_tokens": prompt.context_tokens,
            "context_files": sorted({s.path for s in context.snippets}) if prompt.context_tokens else [],
            "healed": healed, **outcome.stats}
