"""Pure tests of greedy acceptance and of exact speculative sampling over a draft tree."""

from __future__ import annotations

import itertools

import numpy as np

from rest_lsp.engine.acceptance import greedy_accept, sample_accept
from rest_lsp.engine.draft_tree import build_draft_tree
from rest_lsp.engine.drafter import Candidate
from rest_lsp.engine.tree_inputs import tree_inputs


def tree_of(root, paths, budget=64):
    cands = [Candidate(tuple(p), float(len(paths) - i), "corpus", 2) for i, p in enumerate(paths)]
    return build_draft_tree(root, cands, budget, weights=[float(len(paths) - i) for i in range(len(paths))])


def test_greedy_accepts_longest_matching_path_and_bonus():
    tree = tree_of(9, [[1, 2, 3], [1, 4], [5]])  # BFS: 9 1 5 2 4 3
    inputs = tree_inputs(tree)
    # the model would say: after 9 -> 1, after 1 -> 2, after 2 -> 7 (draft said 3)
    predicted = np.array([1, 2, 0, 7, 0, 0])
    acc = greedy_accept(inputs, predicted)
    assert acc.nodes == (0, 1, 3)
    assert acc.drafts == (1, 2)
    assert acc.bonus == 7
    assert acc.new_tokens == (1, 2, 7)


def test_greedy_rejects_everything():
    inputs = tree_inputs(tree_of(9, [[1, 2], [5]]))
    acc = greedy_accept(inputs, np.array([8, 0, 0, 0]))
    assert acc.nodes == (0,) and acc.drafts == () and acc.bonus == 8


def test_greedy_accepts_a_whole_path_and_takes_the_leaf_bonus():
    inputs = tree_inputs(tree_of(9, [[1, 2]]))
    acc = greedy_accept(inputs, np.array([1, 2, 6]))
    assert acc.nodes == (0, 1, 2) and acc.new_tokens == (1, 2, 6)


def test_root_only_tree_is_plain_greedy():
    inputs = tree_inputs(tree_of(9, []))
    acc = greedy_accept(inputs, np.array([4]))
    assert acc.nodes == (0,) and acc.new_tokens == (4,)


def _exact_two_token_distribution(p_root, p_child):
    """P(first, second) when p_child[t] is the distribution after first token t."""
    vocab = len(p_root)
    return {(a, b): p_root[a] * p_child[a][b] for a in range(vocab) for b in range(vocab)}


def test_sampling_over_a_tree_emits_exactly_the_model_distribution():
    rng = np.random.default_rng(0)
    vocab = 4
    p_root = np.array([0.5, 0.3, 0.15, 0.05])
    p_after = {t: rng.dirichlet(np.ones(vocab)) for t in range(vocab)}
    # drafts: two children of the root (1 and 0), a grandchild under 1
    tree = tree_of(3, [[1, 2], [0]])
    inputs = tree_inputs(tree)
    probs = np.stack([p_root] + [p_after[int(t)] for t in inputs.tokens[1:]])
    # each node's row is the distribution after its own token (the test's toy model is Markov)
    counts = {}
    n = 40_000
    for _ in range(n):
        acc = sample_accept(inputs, probs, rng)
        out = acc.new_tokens
        if len(out) == 1:
            # only the first token is emitted this step: draw the second from its true law
            second = int(rng.choice(vocab, p=p_after[out[0]]))
            out = (out[0], second)
        key = out[:2]
        counts[key] = counts.get(key, 0) + 1
    exact = _exact_two_token_distribution(p_root, p_after)
    chi2 = sum((counts.get(k, 0) - n * p) ** 2 / (n * p) for k, p in exact.items() if p > 0)
    # 15 degrees of freedom: p-value 1e-4 is at chi2 ~ 47
    assert chi2 < 47, (chi2, counts)


def test_sampling_with_point_mass_rejects_impossible_drafts():
    tree = tree_of(3, [[1], [2]])
    inputs = tree_inputs(tree)
    probs = np.array([[1.0, 0, 0, 0], [0.25] * 4, [0.25] * 4])
    for seed in range(50):
        acc = sample_accept(inputs, probs, np.random.default_rng(seed))
        assert acc.drafts == () and acc.bonus == 0


def test_restricted_renormalises_over_the_allowed_tokens_only():
    import torch

    from rest_lsp.engine.sampling import SamplingParams, device_probabilities

    def first_row(probs, allowed):
        logits = torch.log(torch.tensor([probs, probs], dtype=torch.float32))
        out = device_probabilities(logits, SamplingParams(1.0), np.array(allowed))
        assert np.allclose(out[1].numpy(), probs, atol=1e-6)  # only the first row is restricted
        return out[0].numpy()

    assert np.allclose(first_row([0.5, 0.2, 0.2, 0.1], [1, 3]), [0.0, 2 / 3, 0.0, 1 / 3], atol=1e-6)
    # no mass on the allowed tokens: uniform over them rather than a division by zero
    assert np.allclose(first_row([1.0, 0.0, 0.0], [1, 2]), [0.0, 0.5, 0.5])


def test_device_top_p_keeps_the_smallest_set_reaching_the_mass():
    import torch

    from rest_lsp.engine.sampling import SamplingParams, device_probabilities

    probs = np.array([[0.1, 0.4, 0.3, 0.2], [0.25, 0.25, 0.25, 0.25]])
    out = device_probabilities(torch.log(torch.tensor(probs, dtype=torch.float32)), SamplingParams(1.0, 0.6)).numpy()
    assert np.allclose(out[0], [0.0, 4 / 7, 3 / 7, 0.0], atol=1e-6)
    # ties: the smaller ids first (a stable sort), so 0.6 of mass takes tokens 0, 1, 2
    assert np.allclose(out[1], [1 / 3, 1 / 3, 1 / 3, 0.0], atol=1e-6)


def test_the_device_table_samples_exactly_the_model_distribution():
    """The engine's path: the table computed by torch (here on the CPU) from logits."""
    import torch

    from rest_lsp.engine.acceptance import child_tokens, walk_sampled
    from rest_lsp.engine.sampling import SamplingParams, sampling_table

    rng = np.random.default_rng(1)
    vocab = 4
    p_root = np.array([0.5, 0.3, 0.15, 0.05])
    p_after = {t: rng.dirichlet(np.ones(vocab)) for t in range(vocab)}
    inputs = tree_inputs(tree_of(3, [[1, 2], [0]]))
    probs = np.stack([p_root] + [p_after[int(t)] for t in inputs.tokens[1:]])
    logits = torch.log(torch.tensor(probs, dtype=torch.float32))
    kids = child_tokens(inputs)
    gen = torch.Generator().manual_seed(3)
    counts = {}
    n = 6_000  # fewer than the host test's draws: each is a few torch calls
    for _ in range(n):
        out = walk_sampled(inputs, sampling_table(logits, SamplingParams(1.0), kids, gen), rng).new_tokens
        if len(out) == 1:
            out = (out[0], int(rng.choice(vocab, p=p_after[out[0]])))
        counts[out[:2]] = counts.get(out[:2], 0) + 1
    exact = _exact_two_token_distribution(p_root, p_after)
    chi2 = sum((counts.get(k, 0) - n * p) ** 2 / (n * p) for k, p in exact.items() if p > 0)
    assert chi2 < 47, (chi2, counts)  # 15 degrees of freedom: p-value 1e-4 at ~47


def test_device_table_matches_its_host_reference():
    import torch

    from rest_lsp.engine.acceptance import child_tokens, table_from_probs
    from rest_lsp.engine.sampling import SamplingParams, sampling_table

    inputs = tree_inputs(tree_of(3, [[1, 2], [0]]))
    probs = np.random.default_rng(2).dirichlet(np.ones(6), size=len(inputs))
    table = sampling_table(torch.log(torch.tensor(probs, dtype=torch.float32)), SamplingParams(1.0),
                           child_tokens(inputs), torch.Generator().manual_seed(0))
    ref = table_from_probs(inputs, probs, np.random.default_rng(0))
    assert np.allclose(table.child_p, ref.child_p, atol=1e-6)
    assert np.allclose(table.total, 1.0, atol=1e-5)
    kids = child_tokens(inputs)
    for i, token in enumerate(table.bonus):  # a bonus is never one of its node's children
        assert token not in kids[i][kids[i] >= 0]


def test_argmax_among_takes_the_best_allowed_token_and_the_smaller_on_ties():
    import numpy as np
    import torch

    from rest_lsp.engine.readout import argmax_among

    logits = torch.tensor([[5.0, 1.0, 3.0, 3.0, 0.0]])
    assert argmax_among(logits, 0, np.array([1, 2, 3, 4])) == 2
    assert argmax_among(logits, 0, np.array([0, 1])) == 0
