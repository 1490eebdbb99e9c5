"""Greedy speculative decoding is token-identical to plain greedy decoding (fp32, tiny models).

Every supported architecture, both attention implementations that honour a 4D mask (eager,
sdpa) and the packed forward for the architectures it supports, random prompts, and drafters from helpful to adversarial: none, noisy copies of the true
continuation, wrong tokens, repeated tokens, special tokens, ids outside the vocabulary, very long
drafts, budget 1.
"""

from __future__ import annotations

import random

import pytest

from engine_testing import ARCHS, VOCAB, FixedDrafter, ScriptedDrafter, reference_greedy, single_thread, tiny_model  # noqa: F401
from rest_lsp.engine.drafter import (Candidate, ContextSuffixDrafter, MergedDrafter, NullDrafter, PromptLookupDrafter,
                                     RecyclingDrafter)
from rest_lsp.engine.engine import Engine
from rest_lsp.engine.gate import GatedDrafter
from rest_lsp.engine.packed_llama import SUPPORTED_TYPES, PackedLlama
from rest_lsp.engine.drafter import Drafter

N_NEW = 24


IMPLS = [(a, i) for a in ARCHS for i in ("eager", "sdpa")] + [(a, "packed") for a in SUPPORTED_TYPES if a in ARCHS]


@pytest.fixture(scope="module", params=IMPLS, ids=lambda p: f"{p[0]}-{p[1]}")
def case(request):
    """(what the engine runs, prompts, reference greedy continuations of the transformers model)."""
    arch, attn = request.param
    hf = tiny_model(arch, "sdpa" if attn == "packed" else attn, seed=hash(arch) % 1000)
    model = PackedLlama(hf) if attn == "packed" else hf
    rng = random.Random(f"{arch}-{attn}")
    prompts = [[rng.randrange(VOCAB) for _ in range(rng.randint(1, 40))] for _ in range(3)]
    # a repetitive prompt, so the context drafters find matches
    unit = [rng.randrange(VOCAB) for _ in range(5)]
    prompts.append(unit * 6)
    refs = [reference_greedy(hf, p, N_NEW) for p in prompts]
    return model, prompts, refs


def test_plain_greedy_loop_matches_reference(case):
    model, prompts, refs = case
    engine = Engine(model, eos_ids=())
    for prompt, ref in zip(prompts, refs):
        engine.reset()
        gen = engine.complete(prompt, N_NEW, mode="greedy")
        assert list(gen.tokens) == ref
        assert gen.stats.steps == N_NEW and gen.stats.tokens_per_step == 1.0


@pytest.mark.parametrize("budget", [1, 4, 64])
def test_speculative_with_noisy_drafts_matches_reference(case, budget):
    model, prompts, refs = case
    for k, (prompt, ref) in enumerate(zip(prompts, refs)):
        drafter = MergedDrafter([
            ScriptedDrafter(len(prompt), ref, seed=k * 31 + budget, special=(0, 1, 2)),
            ContextSuffixDrafter(),
            PromptLookupDrafter(),
            RecyclingDrafter(VOCAB),
            GatedDrafter(PromptLookupDrafter(span=3), warmup=2, explore_every=3),  # open and shut
        ])
        engine = Engine(model, drafter=drafter, eos_ids=())
        gen = engine.complete(prompt, N_NEW, budget=budget)
        assert list(gen.tokens) == ref, (prompt, budget)
        assert gen.stats.steps <= N_NEW


def test_adversarial_drafters_match_reference(case):
    model, prompts, refs = case
    prompt, ref = prompts[0], refs[0]
    wrong = (ref[0] + 1) % VOCAB
    adversaries = {
        "none": NullDrafter(),
        "wrong": FixedDrafter([Candidate((wrong,) * 3, 5.0, "corpus", 2)]),
        "repeated": FixedDrafter([Candidate((ref[0],) * 50, 1.0, "context", 4),
                                  Candidate((ref[0], ref[0], wrong), 9.0, "corpus", 2)]),
        "special": FixedDrafter([Candidate((0, 1, 2, 3), 1.0, "corpus", 2),
                                 Candidate((VOCAB - 1,) * 4, 1.0, "live", 9)]),
        "very long": FixedDrafter([Candidate(tuple(random.Random(1).randrange(VOCAB) for _ in range(500)), 1.0, "corpus", 16)]),
        "empty candidates": FixedDrafter([Candidate((), 3.0, "corpus", 2), Candidate((5,), 0.0, "corpus", 2)]),
        # a drafter's bug (a separator read back as 0xFFFF) or another tokenizer's store: the ids
        # past the vocabulary are cut from the tree, the rest still verified
        "outside the vocabulary": FixedDrafter([Candidate((ref[0], VOCAB, ref[1]), 9.0, "dense", 1),
                                                Candidate((0xFFFF, ref[0]), 5.0, "corpus", 2),
                                                Candidate((-1, 3), 5.0, "history", 2),
                                                Candidate(tuple(ref[:4]), 1.0, "context", 2)]),
    }
    for name, drafter in adversaries.items():
        for budget in (1, 3, 64):
            gen = Engine(model, drafter=drafter, eos_ids=()).complete(prompt, N_NEW, budget=budget)
            assert list(gen.tokens) == ref, (name, budget)


def test_oracle_drafts_are_accepted_in_few_steps(case):
    model, prompts, refs = case
    prompt, ref = prompts[1], refs[1]

    class Oracle(Drafter):
        def draft(self, ctx):
            done = len(ctx) - len(prompt)
            return [Candidate(tuple(ref[done:done + 8]), 1.0, "corpus", 3)] if ref[done:] else []

    gen = Engine(model, drafter=Oracle(), eos_ids=()).complete(prompt, N_NEW, budget=8)
    assert list(gen.tokens) == ref
    assert gen.stats.steps == 3  # 8 accepted + 1 bonus per step: 9 + 9 + 6
    assert gen.stats.accepted_drafts == N_NEW - 3


def _constrained_reference(model, prompt, allowed, n):
    """Plain greedy with the first token's argmax taken over ``allowed`` only (token healing)."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1]
    first = max(sorted(allowed), key=lambda t: (float(logits[t]), -t))
    return [first] + reference_greedy(model, [*prompt, first], n - 1)


@pytest.mark.parametrize("budget", [None, 16])
def test_first_allowed_constrains_the_first_token_alike_in_greedy_and_rest(budget):
    """Token healing: the first token is the best among the allowed ones, in both modes, and the
    rest of the output is the model's greedy continuation of it."""
    hf = tiny_model("llama", "sdpa", seed=7)
    rng = random.Random(11)
    for k in range(3):
        prompt = [rng.randrange(VOCAB) for _ in range(12)]
        free = reference_greedy(hf, prompt, 1)[0]
        allowed = sorted({(free + 1 + j) % VOCAB for j in range(5)})  # the unconstrained choice left out
        ref = _constrained_reference(hf, prompt, allowed, N_NEW)
        engine = Engine(hf, eos_ids=(), drafter=MergedDrafter([ContextSuffixDrafter(), RecyclingDrafter(VOCAB)]))
        mode = "greedy" if budget is None else "rest"
        gen = engine.complete(prompt, N_NEW, mode=mode, budget=budget, first_allowed=allowed)
        assert gen.tokens[0] in allowed and gen.tokens[0] != free
        assert list(gen.tokens) == ref
