"""Pure tests of the draft trie, its best-budget cut and the tree-attention inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from draft_tree_reference import build_trie, leaf_paths, select_tree
from rest_lsp.engine.draft_tree import build_draft_tree
from rest_lsp.engine.drafter import Candidate
from rest_lsp.engine.source_weights import candidate_weights
from rest_lsp.engine.tree_inputs import tree_inputs

candidates_st = st.lists(
    st.builds(
        Candidate,
        tokens=st.lists(st.integers(0, 5), min_size=0, max_size=6).map(tuple),
        count=st.integers(0, 5).map(float),
        source=st.sampled_from(["context", "corpus", "workspace"]),
        suffix_len=st.integers(1, 4),
    ),
    max_size=12,
)


def c(tokens, count=1.0, source="corpus", suffix_len=2):
    return Candidate(tuple(tokens), count, source, suffix_len)


def test_trie_weights_are_counts_through_each_node():
    trie = build_trie([c([1, 2, 3], 3), c([1, 2, 4], 1), c([5], 2)], weights=[3, 1, 2])
    by_path = {}
    for node in range(1, len(trie.token)):
        path, n = [], node
        while n > 0:
            path.append(trie.token[n])
            n = trie.parent[n]
        by_path[tuple(reversed(path))] = trie.weight[node]
    assert by_path == {(1,): 4, (1, 2): 4, (1, 2, 3): 3, (1, 2, 4): 1, (5,): 2}


def test_cut_is_best_first_with_exact_budget():
    tree = build_draft_tree(9, [c([1, 2, 3], 3), c([1, 2, 4], 1), c([5], 2)], budget=3,
                            weights=[3, 1, 2])
    assert tree.tokens == (9, 1, 2, 3)
    assert tree.parents == (-1, 0, 1, 2)
    assert tree.depths == (0, 1, 2, 3)
    tree = build_draft_tree(9, [c([1, 2, 3], 3), c([1, 2, 4], 1), c([5], 2)], budget=4,
                            weights=[3, 1, 2])
    # (5,) weighs 2 > (1,2,4) weighs 1; BFS order puts depth 1 first
    assert tree.tokens == (9, 1, 5, 2, 3)
    assert tree.parents == (-1, 0, 0, 1, 3)


def test_ties_break_deterministically_on_depth_then_token():
    cands = [c([7, 1]), c([3, 2]), c([5])]
    a = build_draft_tree(0, cands, budget=3, weights=[1, 1, 1])
    b = build_draft_tree(0, list(reversed(cands)), budget=3, weights=[1, 1, 1])
    assert a.tokens == b.tokens == (0, 3, 5, 7)


def test_budget_zero_and_empty_give_a_root_only_tree():
    assert build_draft_tree(4, [], budget=8).tokens == (4,)
    assert build_draft_tree(4, [c([1, 2])], budget=0).tokens == (4,)
    assert build_draft_tree(4, [c([])], budget=8).tokens == (4,)


def test_max_depth_cuts_long_drafts():
    tree = build_draft_tree(0, [c(range(1, 200))], budget=64, max_depth=5)
    assert max(tree.depths) == 5 and len(tree) == 6


@settings(max_examples=150, deadline=None)
@given(candidates_st, st.integers(0, 20), st.sampled_from([1.0, 0.6, 0.1]))
def test_cut_is_prefix_closed_nested_and_bfs(cands, budget, decay):
    weights = candidate_weights(cands)
    tree = build_draft_tree(99, cands, budget, weights=weights, depth_decay=decay)
    trie = build_trie(cands, weights)
    assert len(tree) - 1 == min(budget, len(trie.token) - 1)
    for i in range(1, len(tree)):
        p = tree.parents[i]
        assert 0 <= p < i  # BFS: parents first
        assert tree.depths[i] == tree.depths[p] + 1
        assert tree.ranks[p] < tree.ranks[i]  # picked after its parent (prefix-closed)
        assert tree.weights[i] <= tree.weights[p] or p == 0
    # siblings hold distinct tokens (it is a trie)
    seen = set()
    for i in range(1, len(tree)):
        assert (tree.parents[i], tree.tokens[i]) not in seen
        seen.add((tree.parents[i], tree.tokens[i]))
    # nested: the cut at a smaller budget is the first picks of this one
    smaller = build_draft_tree(99, cands, max(budget - 3, 0), weights=weights, depth_decay=decay)

    def paths(t):
        out = set()
        for i in range(1, len(t)):
            out.add(tuple(t.tokens[j] for j in t.path(i)[1:]))
        return out

    picked_first = {tuple(tree.tokens[j] for j in tree.path(i)[1:]) for i in range(1, len(tree))
                    if tree.ranks[i] <= len(smaller) - 1}
    assert paths(smaller) == picked_first


@settings(max_examples=300, deadline=None)
@given(candidates_st, st.integers(0, 20), st.one_of(st.none(), st.integers(1, 7)), st.integers(1, 24),
       st.booleans(), st.sampled_from([1.0, 0.6, 0.25]))
def test_lazy_cut_equals_the_cut_of_the_whole_trie(cands, budget, max_depth, max_budget, equal_weights, decay):
    """``build_draft_tree`` expands only picked nodes; its tree is the full trie's best-first cut,
    node for node (tokens, parents, depths, ranks, weights), ties included, with any depth decay."""
    weights = [1.0] * len(cands) if equal_weights else candidate_weights(cands)
    tree = build_draft_tree(99, cands, budget, weights=weights, max_depth=max_depth, max_budget=max_budget,
                            depth_decay=decay)
    if budget <= 0 or not cands:
        assert tree.tokens == (99,)
        return
    depth = max(budget, max_budget) if max_depth is None else min(max_depth, max(budget, max_budget))
    assert tree == select_tree(build_trie(cands, weights, depth), 99, budget, depth_decay=decay)


def test_depth_decay_lets_a_second_first_token_in_before_a_long_chain_ends():
    """A heavy 6-token chain and a lighter alternative first token: without decay the chain
    takes a 4-node budget whole; with decay the alternative (depth 1) outranks the chain's 4th
    token (3 x 0.6^3 = 0.65 < 1)."""
    cands = [c([1, 2, 3, 4, 5, 6], 3), c([7], 1)]
    plain = build_draft_tree(0, cands, budget=4, weights=[3.0, 1.0])
    decayed = build_draft_tree(0, cands, budget=4, weights=[3.0, 1.0], depth_decay=0.6)
    assert plain.tokens == (0, 1, 2, 3, 4)
    assert decayed.tokens == (0, 1, 7, 2, 3)
    assert decayed.weights == (0.0, 3.0, 1.0, 3.0 * 0.6, 3.0 * 0.6**2)


def test_tree_inputs_mask_positions_and_leaf_paths():
    tree = build_draft_tree(9, [c([1, 2, 3], 3), c([1, 4], 1), c([5], 2)], budget=8,
                            weights=[3, 1, 2])
    # BFS: 0:9  1:1  2:5  3:2  4:4  5:3
    assert tree.tokens == (9, 1, 5, 2, 4, 3)
    inputs = tree_inputs(tree)
    expected = np.array(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0],
            [1, 1, 0, 1, 0, 0],
            [1, 1, 0, 0, 1, 0],
            [1, 1, 0, 1, 0, 1],
        ],
        dtype=bool,
    )
    assert (inputs.ancestor_mask == expected).all()
    assert inputs.position_ids(100).tolist() == [100, 101, 101, 102, 102, 103]
    rows = {tuple(int(x) for x in r if x >= 0) for r in leaf_paths(inputs)}
    assert rows == {(0, 2), (0, 1, 4), (0, 1, 3, 5)}
    assert leaf_paths(inputs).shape == (3, 4)
    assert inputs.children(1).tolist() == [3, 4]


def test_root_only_tree_inputs():
    inputs = tree_inputs(build_draft_tree(3, [], 0))
    assert inputs.ancestor_mask.tolist() == [[True]]
    assert leaf_paths(inputs).tolist() == [[0]]
    assert inputs.position_ids(7).tolist() == [7]


def test_tokens_outside_the_vocabulary_are_cut_with_their_subtrees():
    cands = [c((1, 9, 2), 5.0), c((99, 1), 9.0), c((-1, 4), 9.0), c((3, 4), 1.0)]
    tree = build_draft_tree(0, cands, 8, vocab_size=10)
    assert set(tree.tokens[1:]) <= set(range(10))
    assert tree.tokens[1:] == (1, 3, 9, 4, 2)  # 99 and -1 (and all below them) never picked
    assert {99, -1} <= set(build_draft_tree(0, cands, 8).tokens)  # without a vocabulary: as given
