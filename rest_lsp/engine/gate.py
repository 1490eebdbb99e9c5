"""A drafter asked only while its drafts pay for the time it takes (retrieval on demand).

A drafter's worth in a step is the accepted draft tokens that only it proposed: the longest
accepted prefix among its candidates beyond the longest among everyone else's (0 when another
source proposed as much), read off the step's per-source credit (``source_credit``).  Each such
token saves about one step's time per token.  Its cost is its own call, or more: its candidates
also cost weights, tree and bookkeeping downstream, so the gate compares the steps' time outside
the forward with and without it.  It keeps running means of the exclusive gain (over the steps it
ran), of those costs and of the seconds per generated token, and asks the drafter when gain x
seconds-per-token >= cost.  It still asks it every ``explore_every``-th step (and for its first
``warmup`` calls), and leaves it out every ``probe_every``-th (to know a step's cost without it),
so the means follow a change of workload: on the embedded model the corpus
datastore adds ~0.1-0.2 tokens per step on HumanEval for ~0.4 ms a step and more downstream (less
than it costs), and more on real repositories.  Drafts never change what is decoded, so the
output is the same with the gate open or shut.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from rest_lsp.engine.drafter import Candidate, Drafter


class GatedDrafter(Drafter):
    """Wraps a drafter; asks it only while its exclusive accepted tokens are worth its time."""

    def __init__(self, inner: Any, explore_every: int = 8, warmup: int = 16, rate: float = 0.05,
                 probe_every: int = 32) -> None:
        self.inner = inner
        self.explore_every = explore_every
        self.probe_every = probe_every
        self.warmup = warmup
        self.rate = rate
        #: running means: exclusive accepted tokens per step it ran, seconds per call, seconds
        #: per generated token (None until first seen)
        self.gain: float | None = None
        self.cost: float | None = None
        self.token_s: float | None = None
        #: running means of a step's seconds outside the forward with the drafter asked / not
        #: asked: its candidates also cost weights, tree and bookkeeping downstream
        self.step_open: float | None = None
        self.step_shut: float | None = None
        self.steps = 0
        self.calls = 0
        self._mine: list[Candidate] | None = None  # what it proposed this step (None: not asked)

    def open(self) -> bool:
        """Whether the drafter is worth asking now (its mean gain pays for its mean cost)."""
        if self.calls < self.warmup:
            return True
        if self.steps % self.probe_every == self.probe_every - 1:
            return False  # now and then a step without it: what a step costs when it is shut
        if self.steps % self.explore_every == 0:
            return True
        if self.gain is None or self.cost is None or self.token_s is None:
            return True
        return self.gain * self.token_s >= self.full_cost()

    def full_cost(self) -> float:
        """Seconds a step pays for asking the drafter: its own call, or more when the steps that
        asked it spent that much more outside the forward than those that did not."""
        cost = self.cost or 0.0
        if self.step_open is not None and self.step_shut is not None:
            cost = max(cost, self.step_open - self.step_shut)
        return cost

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        self.steps += 1
        if not self.open():
            self._mine = None
            return []
        t0 = time.perf_counter()
        found = self.inner.draft(context_ids)
        self.cost = self._mean(self.cost, time.perf_counter() - t0)
        self.calls += 1
        self._mine = found
        return found

    def step_done(self, credit: dict[str, int], step_s: float, new_tokens: int, overhead_s: float = 0.0) -> None:
        """Learn from one verified step: each source's accepted prefix (``source_credit``), the
        step's seconds, its seconds outside the forward, and its tokens.  The wrapped drafter's
        sources are those of its last candidates; no other drafter uses them (the datastore's
        tiers)."""
        if new_tokens > 0:
            self.token_s = self._mean(self.token_s, step_s / new_tokens)
        mine, self._mine = self._mine, None
        if mine is None:
            self.step_shut = self._mean(self.step_shut, overhead_s)
            return
        self.step_open = self._mean(self.step_open, overhead_s)
        own = {c.source for c in mine}
        ours = max((k for s, k in credit.items() if s in own), default=0)
        theirs = max((k for s, k in credit.items() if s not in own), default=0)
        self.gain = self._mean(self.gain, float(max(0, ours - theirs)))

    def stats(self) -> dict[str, Any]:
        """The gate's state (for status and benchmarks)."""
        return {"steps": self.steps, "calls": self.calls,
                "gain_tokens": None if self.gain is None else round(self.gain, 4),
                "cost_ms": None if self.cost is None else round(self.cost * 1e3, 4),
                "full_cost_ms": round(self.full_cost() * 1e3, 4),
                "token_ms": None if self.token_s is None else round(self.token_s * 1e3, 4)}

    @property
    def wants_hidden(self) -> bool:
        return self.inner.wants_hidden

    @property
    def wants_top_k(self) -> bool:
        return self.inner.wants_top_k

    def observe(self, tokens: Any, top_k: Any) -> None:
        self.inner.observe(tokens, top_k)

    def observe_hidden(self, state: Any, context_len: int) -> None:
        self.inner.observe_hidden(state, context_len)

    def __getattr__(self, name: str) -> Any:
        # the wrapped drafter's other surface (its store, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _mean(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.rate * (new - old)
