"""Engine requests: KV reuse across requests, stop rules, cancellation, sampling, refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engine_testing import VOCAB, reference_greedy, single_thread, tiny_model  # noqa: F401
from rest_lsp.config.schema import DecodingConfig
from rest_lsp.engine.drafter import Candidate, ContextSuffixDrafter
from rest_lsp.engine.engine import Engine, common_prefix_len
from rest_lsp.errors import DecodingError
from rest_lsp.engine.drafter import Drafter


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", "sdpa", seed=3)


def rand_prompt(rng, n):
    return [rng.randrange(VOCAB) for _ in range(n)]


def test_common_prefix_len():
    assert common_prefix_len([], [1]) == 0
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([1, 2], [1, 2, 3]) == 2


def test_kv_reuse_gives_cold_start_outputs(model):
    rng = random.Random(0)
    warm = Engine(model, eos_ids=(), drafter=ContextSuffixDrafter())
    base = rand_prompt(rng, 30)
    first = warm.complete(base, 12, budget=4)
    follow_ups = [
        base + list(first.tokens[:5]) + rand_prompt(rng, 3),  # the user accepted part and typed on
        base + list(first.tokens),  # everything accepted
        base[:20],  # deleted the end
        base[:10] + rand_prompt(rng, 15),  # edited the middle
        base[:10] + rand_prompt(rng, 15),  # the same request again
        [base[0]],  # one token
    ]
    for prompt in follow_ups:
        reused = warm.complete(prompt, 12, budget=4)
        cold = Engine(model, eos_ids=(), drafter=ContextSuffixDrafter()).complete(prompt, 12, budget=4)
        assert reused.tokens == cold.tokens == tuple(reference_greedy(model, prompt, 12))
        assert reused.stats.prefill_tokens + reused.stats.reused_tokens == len(prompt) - 1
    again = base + list(first.tokens)
    warm.complete(again, 4, budget=4)
    assert warm.complete(again, 4, budget=4).stats.reused_tokens == len(again) - 1
    # the generated tokens of one request are reused by the next that extends them
    gen = warm.complete(base, 12, budget=4)
    assert warm.complete(base + list(gen.tokens[:8]), 4).stats.reused_tokens == len(base) + 7


def test_warm_prefills_ahead_and_a_request_then_reuses_it(model):
    rng = random.Random(4)
    prompt = rand_prompt(rng, 90)
    engine = Engine(model, eos_ids=(), drafter=ContextSuffixDrafter())
    warmed = engine.warm(prompt[:70])
    assert (warmed.prefill_tokens, warmed.reused_tokens) == (70, 0)
    assert engine.warm(prompt[:75]).reused_tokens == 70  # a warm reuses like a request
    gen = engine.complete(prompt, 10, budget=4)
    assert gen.stats.reused_tokens == 75 and gen.stats.prefill_tokens == len(prompt) - 1 - 75
    assert gen.tokens == tuple(reference_greedy(model, prompt, 10))


def test_warm_stops_between_chunks_and_keeps_what_it_prefilled(model):
    from rest_lsp.engine.engine import WARM_CHUNK

    prompt = rand_prompt(random.Random(5), 3 * WARM_CHUNK)
    engine = Engine(model, eos_ids=(), drafter=ContextSuffixDrafter())
    asked = []
    stats = engine.warm(prompt, should_stop=lambda: asked.append(1) or len(asked) > 1)  # a request after one chunk
    assert stats.prefill_tokens == WARM_CHUNK and stats.stop_reason == "cancelled"
    gen = engine.complete(prompt, 6, mode="greedy")
    assert gen.stats.reused_tokens == WARM_CHUNK
    assert gen.tokens == tuple(reference_greedy(model, prompt, 6))


def test_kv_reuse_off_prefills_everything(model):
    engine = Engine(model, DecodingConfig(kv_reuse=False), eos_ids=())
    prompt = list(range(20))
    engine.complete(prompt, 4, mode="greedy")
    assert engine.complete(prompt, 4, mode="greedy").stats.reused_tokens == 0


def test_eos_stop_and_length(model):
    prompt = rand_prompt(random.Random(1), 12)
    ref = reference_greedy(model, prompt, 16)
    eos = ref[6]
    gen = Engine(model, eos_ids=(eos,)).complete(prompt, 16, budget=8)
    assert list(gen.tokens) == ref[: ref.index(eos)] and gen.stats.stop_reason == "eos"
    gen = Engine(model, eos_ids=()).complete(prompt, 16, stop=lambda toks: len(toks) == 5, budget=8)
    assert list(gen.tokens) == ref[:5] and gen.stats.stop_reason == "stop"
    gen = Engine(model, eos_ids=()).complete(prompt, 7, budget=8)
    assert list(gen.tokens) == ref[:7] and gen.stats.stop_reason == "length"
    assert Engine(model).complete(prompt, 0).tokens == ()


def test_should_stop_cancels_within_one_step_and_engine_recovers(model):
    prompt = rand_prompt(random.Random(2), 12)
    engine = Engine(model, eos_ids=())
    cancelled = []

    def watch(tokens):  # the "user" cancels as soon as 3 tokens exist
        if len(tokens) >= 3:
            cancelled.append(True)
        return False

    gen = engine.complete(prompt, 30, stop=watch, should_stop=lambda: bool(cancelled), mode="greedy")
    assert gen.stats.stop_reason == "cancelled" and gen.stats.steps == 3
    assert list(gen.tokens) == reference_greedy(model, prompt, 3)
    cancelled.append(True)  # cancelled before it started: nothing is computed
    gen = engine.complete(prompt + [5], 30, should_stop=lambda: bool(cancelled))
    assert gen.tokens == () and gen.stats.stop_reason == "cancelled"
    # the next request is unaffected by the cancelled one
    assert list(engine.complete(prompt, 10).tokens) == reference_greedy(model, prompt, 10)


def test_bad_requests_raise_decoding_errors(model):
    engine = Engine(model)
    with pytest.raises(DecodingError):
        engine.complete([], 4)
    with pytest.raises(DecodingError):
        engine.complete([1, 2], 4, mode="beam")
    with pytest.raises(DecodingError):
        engine.complete([1, 2], 4, temperature=0.5, top_p=0.0)


def test_sliding_window_models_are_refused_beyond_the_window():
    model = tiny_model("mistral", "sdpa", sliding_window=16)
    engine = Engine(model, eos_ids=())
    prompt = list(range(8))
    assert list(engine.complete(prompt, 6).tokens) == reference_greedy(model, prompt, 6)
    with pytest.raises(DecodingError, match="sliding window"):
        engine.complete(list(range(20)), 4)


def test_sampling_is_exact_for_the_first_two_tokens():
    vocab = 4
    model = tiny_model("llama", "sdpa", seed=5, vocab=vocab, initializer_range=0.05)
    prompt = [0, 1, 2, 3, 1]
    temperature = 1.3
    with torch.no_grad():
        p1 = torch.softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1] / temperature, -1)
        p2 = {t: torch.softmax(model(input_ids=torch.tensor([prompt + [t]])).logits[0, -1] / temperature, -1)
              for t in range(vocab)}
    exact = {(a, b): float(p1[a] * p2[a][b]) for a in range(vocab) for b in range(vocab)}

    class AllPairs(Drafter):  # every token as a child of the root, each with two grandchildren
        def draft(self, ctx):
            return [Candidate((a, b), 1.0, "context", 2) for a in range(vocab) for b in (a, (a + 1) % vocab)]

    engine = Engine(model, eos_ids=(), drafter=AllPairs())
    n = 1500
    counts: dict = {}
    rng = np.random.default_rng(0)
    for i in range(n):
        gen = engine.complete(prompt, 2, temperature=temperature, budget=12, seed=int(rng.integers(1 << 30)))
        counts[gen.tokens] = counts.get(gen.tokens, 0) + 1
    chi2 = sum((counts.get(k, 0) - n * p) ** 2 / (n * p) for k, p in exact.items())
    assert chi2 < 47, (chi2, counts)  # 15 degrees of freedom, p = 1e-4
