"""The engine the server calls: one model, its KV cache kept across requests, a drafter, a budget.

``Engine.complete(prompt_ids, ...)`` returns a ``Generation``.  Consecutive requests usually share
most of their prompt (the same file, edited a little): the cache keeps the K/V rows of the longest
common token prefix with the previous request and only the rest is prefilled.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Sequence

import numpy as np

from rest_lsp.config.schema import DecodingConfig
from rest_lsp.engine import kv_cache
from rest_lsp.engine.budget import AdaptiveBudget, BudgetPolicy, CostModel, FixedBudget, can_draft
from rest_lsp.engine.drafter import ContextSuffixDrafter, Drafter
from rest_lsp.engine.source_weights import SourceWeights, candidate_weights
from rest_lsp.engine.forward import prefill
from rest_lsp.engine.sampling import SamplingParams
from rest_lsp.engine.speculative import ShouldStopFn, StopFn, speculative_decode
from rest_lsp.engine.stats import Generation, GenerationStats
from rest_lsp.errors import DecodingError

log = logging.getLogger(__name__)

MODES = ("rest", "greedy")
#: prefill chunk of ``Engine.warm``: a request that arrives waits at most one chunk's forward
WARM_CHUNK = 32


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    x = np.asarray(a[:n], dtype=np.int64)
    y = np.asarray(b[:n], dtype=np.int64)
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if len(diff) else n


class Engine:
    """A causal LM decoding token prompts with retrieval-based speculative decoding."""

    def __init__(
        self,
        model: Any,
        decoding: DecodingConfig | None = None,
        drafter: Drafter | None = None,
        *,
        eos_ids: Sequence[int] | None = None,
        cost: CostModel | None = None,
        window: int | None = None,
    ) -> None:
        from rest_lsp.engine.model import attention_window, check_supported

        check_supported(model)
        self.model = model
        self._policy: BudgetPolicy | None = None
        self.decoding = decoding or DecodingConfig()
        self.drafter: Drafter = drafter if drafter is not None else ContextSuffixDrafter()
        if eos_ids is None:
            eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
            eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = frozenset(int(t) for t in eos_ids)
        self.window = window if window is not None else attention_window(model)
        #: draft tokens at or above it are cut from the tree before they reach the embedding
        self.vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
        self._cost = cost
        #: what the engine changed in the forward's setting at start-up, and why ("" if nothing)
        self.forward_note = ""
        #: per-source draft weights, learned across requests (decoding.source_weights)
        self.source_weights = SourceWeights()
        self._cache = kv_cache.new_cache(self.model)
        self._cached_ids: list[int] = []
        self._lock = threading.Lock()

    @classmethod
    def from_loaded(cls, loaded: Any, decoding: DecodingConfig | None = None, drafter: Drafter | None = None, **kw: Any) -> "Engine":
        """An engine over a ``LoadedModel`` (its tokenizer's end-of-sequence ids included)."""
        runner = loaded.runner if loaded.runner is not None else loaded.model
        return cls(runner, decoding, drafter, eos_ids=sorted(loaded.eos_token_ids), **kw)

    @property
    def lock(self) -> threading.Lock:
        """Held while the engine uses the model: other users of the model (the dense tier's
        background embedding) take it one short forward at a time."""
        return self._lock

    @property
    def decoding(self) -> DecodingConfig:
        """The decoding settings; setting new ones also resets the budget policy."""
        return self._decoding

    @decoding.setter
    def decoding(self, value: DecodingConfig) -> None:
        self._decoding = value
        self._policy = None

    # -- budget ---------------------------------------------------------------------------

    @property
    def cost(self) -> CostModel:
        """c(k) on this device: given, cached from an earlier start, or measured now."""
        if self._cost is None:
            from rest_lsp.engine.cost import cached_cost

            self._cost = cached_cost(self.model)
        return self._cost

    def policy(self) -> BudgetPolicy:
        """The budget policy of speculative steps (fixed, or adaptive when draft_budget is 0)."""
        if self._policy is None:
            d = self.decoding
            if d.draft_budget > 0:
                self._policy = FixedBudget(self.capped(d.draft_budget))
            else:
                policy = AdaptiveBudget(self.cost, max_budget=self.capped(d.max_draft_budget))
                if policy.max_budget > 0 and policy.ceiling() < policy.min_ceiling and self._one_row_steps(policy):
                    policy = AdaptiveBudget(self.cost, max_budget=self.capped(d.max_draft_budget))  # now 0
                self._policy = policy
        return self._policy

    def _one_row_steps(self, policy: AdaptiveBudget) -> bool:
        """Let the forward take its fastest one-row-only setting (llama.cpp's own K/V cache),
        since drafting cannot pay on this machine anyway; whether it did."""
        switch = getattr(self.model, "one_row_cache", None)
        if switch is None:
            return False
        with self._lock:  # no request is using the cache while the context is replaced
            switched = bool(switch())
        if switched:
            self.forward_note = (
                f"drafting cannot pay here: at most {policy.ceiling():.2f}x over one-token steps even if every "
                f"draft were accepted (c(k) {', '.join(f'{1000 * s:.1f}' for s in self.cost.measured)} ms); "
                f"decoding one token a step with {getattr(self.model, 'cache_description', 'its fastest setting')} "
                "(model.kv_cache = \"exact\" keeps drafting possible)")
            log.info(self.forward_note)
        return switched

    def capped(self, budget: int) -> int:
        """``budget`` cut to the most drafts one verification may hold on this model's forward
        (llama.cpp's exactness limit; unlimited elsewhere)."""
        limit = getattr(self.model, "max_drafts", None)
        return budget if limit is None else min(budget, int(limit))

    def warm_up(self) -> None:
        """Do the start-up work now rather than in the first request: c(k) and a first forward."""
        if self.decoding.draft_budget == 0:
            self.policy()
        self.complete([0, 0], 1, mode="greedy")
        self.reset()

    # -- requests -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the cached K/V of earlier requests."""
        with self._lock:
            self._cache = kv_cache.new_cache(self.model)
            self._cached_ids = []

    def complete(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int | None = None,
        *,
        mode: str = "rest",
        drafter: Drafter | None = None,
        budget: int | None = None,
        stop: StopFn | None = None,
        should_stop: ShouldStopFn | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        first_allowed: Sequence[int] | None = None,
    ) -> Generation:
        """Generate a continuation of ``prompt_ids``.

        ``mode="greedy"`` is the plain loop (one token per forward); ``"rest"`` drafts with
        ``drafter`` (default: the engine's).  ``budget`` overrides the policy with a fixed draft
        budget.  ``stop(tokens)`` is asked after each token; ``should_stop()`` before each step
        (the generation then ends early with ``stats.stop_reason == "cancelled"``).
        Temperature 0 (the default config) is greedy; > 0 samples exactly from the model.
        ``first_allowed``: the tokens the first generated one must be among (token healing).
        """
        if mode not in MODES:
            raise DecodingError(f"mode={mode!r} must be one of {MODES}", mode=mode)
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise DecodingError("empty prompt: at least one token is needed", prompt_tokens=0)
        d = self.decoding
        max_new = d.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if max_new < 0:
            raise DecodingError(f"max_new_tokens={max_new} must be >= 0", max_new_tokens=max_new)
        temp = d.temperature if temperature is None else float(temperature)
        sampling = SamplingParams(temp, d.top_p if top_p is None else float(top_p)) if temp > 0 else None
        if mode == "greedy":
            policy: BudgetPolicy = FixedBudget(0)
        elif budget is not None:
            policy = FixedBudget(self.capped(int(budget)))
        else:
            policy = self.policy()
        stats = GenerationStats(mode=mode, prompt_tokens=len(prompt))
        with self._lock:
            start = time.perf_counter()
            try:
                self._prefill(prompt[:-1], stats, should_stop)
                if stats.stop_reason:  # cancelled during prefill
                    return Generation((), stats)
                context = list(prompt)
                tokens = speculative_decode(
                    self.model,
                    self._cache,
                    context,
                    max_new,
                    # a policy that can never draft decodes as greedy does: no drafter asked, no
                    # top-k observed for it (~0.1 ms a token where drafting cannot pay)
                    None if mode == "greedy" or not can_draft(policy) else (drafter or self.drafter),
                    policy,
                    stats,
                    eos_ids=self.eos_ids,
                    stop=stop,
                    should_stop=should_stop,
                    sampling=sampling,
                    rng=np.random.default_rng(seed) if sampling is not None else None,
                    window=self.window,
                    weigh=self.source_weights if d.source_weights == "learned" else candidate_weights,
                    depth_decay=d.depth_decay,
                    vocab_size=self.vocab_size,
                    first_allowed=None if first_allowed is None else np.unique(np.asarray(first_allowed, dtype=np.int64)),
                )
                self._cached_ids = context[: kv_cache.cache_length(self._cache)]
            except BaseException:
                # the cache may hold rows of a half-done step: start the next request cold
                self._cache = kv_cache.new_cache(self.model)
                self._cached_ids = []
                raise
            finally:
                stats.total_s = time.perf_counter() - start
        stats.new_tokens = len(tokens)
        if max_new == 0:
            stats.stop_reason = "length"
        return Generation(tuple(tokens), stats)

    def warm(self, prompt_ids: Sequence[int], should_stop: ShouldStopFn | None = None) -> GenerationStats:
        """Prefill the cache with ``prompt_ids`` ahead of a request that will begin with them (the
        daemon's idle work, ``completion.document_warm``); nothing is decoded.

        Reuses the cached common prefix like a request; prefills in chunks of ``WARM_CHUNK``
        tokens and stops between two when ``should_stop()`` says so (a request came): what was
        prefilled stays cached.  The stats say how many tokens were reused and prefilled."""
        ids = [int(t) for t in prompt_ids]
        stats = GenerationStats(mode="warm", prompt_tokens=len(ids))
        if not ids or not self.decoding.kv_reuse:
            return stats
        with self._lock:
            try:
                self._prefill(ids, stats, should_stop, chunk=WARM_CHUNK)
            except BaseException:
                self._cache = kv_cache.new_cache(self.model)
                self._cached_ids = []
                raise
        return stats

    def _prefill(self, held: list[int], stats: GenerationStats, should_stop: ShouldStopFn | None,
                 chunk: int = 256) -> None:
        """Bring the cache to hold ``held`` (a request's prompt but its last token, which the first
        step feeds; a warm-up's whole prompt), reusing the previous request's common prefix."""
        t0 = time.perf_counter()
        keep = common_prefix_len(self._cached_ids, held) if self.decoding.kv_reuse else 0
        if keep:
            kv_cache.crop(self._cache, keep)
        else:
            self._cache = kv_cache.new_cache(self.model)
        self._cached_ids = self._cached_ids[:keep]
        stats.reused_tokens = keep
        if self.window is not None and len(held) + 1 > self.window:  # a prompt: ``held`` and one more
            raise DecodingError(
                f"prompt of {len(held) + 1} tokens exceeds the model's sliding window of {self.window}",
                prompt_tokens=len(held) + 1,
                window=self.window,
            )
        rest = held[keep:]
        for i in range(0, len(rest), chunk):
            if should_stop is not None and should_stop():
                stats.stop_reason = "cancelled"
                break
            prefill(self.model, self._cache, rest[i : i + chunk])
            self._cached_ids.extend(rest[i : i + chunk])
            stats.prefill_tokens += len(rest[i : i + chunk])
        stats.prefill_s = time.perf_counter() - t0
