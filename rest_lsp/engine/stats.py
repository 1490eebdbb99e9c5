"""What one generation produced and where its time went."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class GenerationStats:
    """Counters and timers of one generation (seconds are wall clock)."""

    mode: str = "rest"
    prompt_tokens: int = 0
    #: prompt tokens whose K/V came from the previous request
    reused_tokens: int = 0
    prefill_tokens: int = 0
    new_tokens: int = 0
    #: verification forwards (one per step)
    steps: int = 0
    #: draft tokens verified, over all steps
    drafted_tokens: int = 0
    #: draft tokens accepted, over all steps
    accepted_drafts: int = 0
    prefill_s: float = 0.0
    #: asking the drafters (retrieval)
    draft_s: float = 0.0
    #: building the draft tree and its attention inputs
    tree_s: float = 0.0
    #: the verification forwards (model)
    forward_s: float = 0.0
    #: acceptance, KV-cache bookkeeping, stop checks
    other_s: float = 0.0
    total_s: float = 0.0
    #: "length", "eos", "stop", "cancelled"
    stop_reason: str = ""
    budgets: list[int] = field(default_factory=list)
    #: accepted draft tokens each source proposed (a token proposed by several counts for each)
    accepted_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def decode_s(self) -> float:
        """Seconds spent in decoding steps (prefill excluded)."""
        return self.draft_s + self.tree_s + self.forward_s + self.other_s

    @property
    def tokens_per_step(self) -> float:
        """Mean tokens added per verification step (tau)."""
        return self.new_tokens / self.steps if self.steps else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of decoding (prefill excluded)."""
        return self.new_tokens / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def overhead_share(self) -> float:
        """Share of decoding time spent outside the model forward."""
        return 1.0 - self.forward_s / self.decode_s if self.decode_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (budgets summarised, derived figures included)."""
        data = asdict(self)
        budgets = data.pop("budgets")
        data["mean_budget"] = sum(budgets) / len(budgets) if budgets else 0.0
        data["tokens_per_step"] = self.tokens_per_step
        data["tokens_per_s"] = self.tokens_per_s
        data["decode_s"] = self.decode_s
        data["overhead_share"] = self.overhead_share
        return data

    def summary(self) -> str:
        """One human-readable line."""
        return (
            f"{self.new_tokens} tokens in {self.steps} steps ({self.tokens_per_step:.2f} tokens/step), "
            f"{self.tokens_per_s:.1f} tokens/s; prefill {self.prefill_tokens} tokens "
            f"({self.reused_tokens} reused) {self.prefill_s * 1e3:.0f} ms; decode "
            f"{self.decode_s * 1e3:.0f} ms = model {self.forward_s * 1e3:.0f} + retrieval "
            f"{self.draft_s * 1e3:.0f} + tree {self.tree_s * 1e3:.0f} + other "
            f"{self.other_s * 1e3:.0f} ms; stop: {self.stop_reason}"
        )


@dataclass
class Generation:
    """The tokens one request produced (end-of-sequence excluded) and its statistics."""

    tokens: tuple[int, ...]
    stats: GenerationStats
