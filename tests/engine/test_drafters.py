"""Pure tests of the engine's own drafters (no indexer) and of candidate weighting."""

from __future__ import annotations

import numpy as np
import torch

from rest_lsp.engine.drafter import (
    Candidate,
    ContextSuffixDrafter,
    Drafter,
    MergedDrafter,
    NullDrafter,
    PromptLookupDrafter,
    RecyclingDrafter,
)
from rest_lsp.engine.source_weights import candidate_weights


def test_prompt_lookup_matches_transformers_candidate_generator():
    from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

    rng = np.random.default_rng(0)
    gen = PromptLookupCandidateGenerator(num_output_tokens=10, max_matching_ngram_size=2, max_length=10_000)
    ours = PromptLookupDrafter(span=10, max_ngram=2)
    for _ in range(200):
        ctx = rng.integers(0, 6, size=int(rng.integers(2, 40))).tolist()
        theirs, _ = gen.get_candidates(torch.tensor([ctx]))
        theirs = theirs[0, len(ctx):].tolist()
        got = ours.draft(ctx)
        assert (list(got[0].tokens) if got else []) == theirs, ctx


def test_context_suffix_drafter_prefers_long_recent_matches():
    ctx = [1, 2, 3, 9, 9, 7, 2, 3, 8, 8, 1, 2, 3]
    cands = ContextSuffixDrafter(span=3).draft(ctx)
    by_tokens = {c.tokens: c for c in cands}
    assert by_tokens[(9, 9, 7)].suffix_len == 3  # "1 2 3" matched at the start
    assert by_tokens[(8, 8, 1)].suffix_len == 2  # "2 3" matched in the middle
    assert all(c.source == "context" for c in cands)


def test_context_suffix_drafter_edge_cases():
    d = ContextSuffixDrafter()
    assert d.draft([]) == [] and d.draft([5]) == [] and d.draft([1, 2, 3]) == []
    # a run of one token: continuations overlap the suffix itself
    cands = d.draft([4, 4, 4, 4])
    assert cands and all(set(c.tokens) == {4} for c in cands)
    assert ContextSuffixDrafter(min_suffix=3).draft([1, 2, 5, 2]) == []


def test_merged_drafter_concatenates_and_protocol_holds():
    merged = MergedDrafter([ContextSuffixDrafter(), PromptLookupDrafter(), NullDrafter()])
    ctx = [1, 2, 3, 4, 1, 2]
    sources = {c.source for c in merged.draft(ctx)}
    assert sources == {"context", "prompt_lookup"}
    assert isinstance(merged, Drafter)


def test_weights_favour_current_text_and_longer_suffixes():
    cands = [
        Candidate((1,), 1000.0, "corpus", 3),
        Candidate((2,), 10.0, "corpus", 3),
        Candidate((3,), 1.0, "context", 3),
        Candidate((4,), 1.0, "corpus", 6),
    ]
    w = candidate_weights(cands)
    assert w[2] > w[0] > w[1]  # context above corpus at equal suffix length, counts normalised
    assert w[3] > w[0]  # a longer match weighs more
    assert candidate_weights([Candidate((1,), 0.0, "corpus", 2)]) == [0.0]


def test_recycling_drafter_grows_a_tree_from_the_models_top_k():
    d = RecyclingDrafter(vocab_size=10, k=2, widths=(2, 1), rank_decay=0.5)
    assert d.draft([3]) == []  # nothing observed yet
    d.observe(np.array([3, 4, 5]), np.array([[4, 5], [6, 7], [8, 9]]))
    got = {c.tokens: c.count for c in d.draft([1, 3])}
    assert got == {(4, 6): 1.0, (5, 8): 0.5}
    assert all(c.source == "recycle" for c in d.draft([3]))
    d.observe(np.array([3]), np.array([[9, 4]]))  # the latest top-k wins
    assert {c.tokens for c in d.draft([3])} == {(9,), (4, 6)}
    assert d.draft([42]) == []  # out-of-vocabulary root


def test_merged_drafter_forwards_observations():
    rec = RecyclingDrafter(vocab_size=10, k=2, widths=(1,))
    merged = MergedDrafter([ContextSuffixDrafter(), rec])
    merged.observe(np.array([1]), np.array([[2, 3]]))
    assert [c.tokens for c in merged.draft([1])] == [(2,)]
