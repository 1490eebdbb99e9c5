"""A draft tree as the sequences of a multi-sequence KV cache (llama.cpp's tree verification)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rest_lsp.engine.branches import branch_sequences, leading_chain
from rest_lsp.engine.draft_tree import build_draft_tree
from rest_lsp.engine.drafter import Candidate
from rest_lsp.engine.tree_inputs import tree_inputs


def shared_sequence_mask(seqs: list[list[int]], depths: list[int]) -> np.ndarray:
    """What llama.cpp's mask gives: node i sees node j when they share a sequence and j is not deeper."""
    n = len(seqs)
    mask = np.zeros((n, n), dtype=bool)
    for i, j in itertools.product(range(n), range(n)):
        mask[i, j] = bool(set(seqs[i]) & set(seqs[j])) and depths[j] <= depths[i]
    return mask


def test_a_root_alone_is_sequence_zero():
    assert branch_sequences([-1]) == [[0]]


def test_a_chain_is_one_sequence():
    assert branch_sequences([-1, 0, 1, 2]) == [[0], [0], [0], [0]]


def test_leaves_are_numbered_first_child_first():
    # root 0 with children 1, 2; node 1 with children 3, 4; node 2 with child 5
    parents = [-1, 0, 0, 1, 1, 2]
    assert branch_sequences(parents) == [[0, 1, 2], [0, 1], [2], [0], [1], [2]]


def test_parents_after_children_are_refused():
    with pytest.raises(ValueError, match="BFS"):
        branch_sequences([-1, 2, 0])


@pytest.mark.parametrize("seed", range(20))
def test_shared_sequences_give_exactly_the_tree_mask(seed):
    rng = np.random.default_rng(seed)
    drafts = [Candidate(tuple(int(t) for t in rng.integers(0, 5, size=int(rng.integers(1, 6)))), float(rng.integers(1, 4)), "context", 2)
              for _ in range(int(rng.integers(1, 8)))]
    tree = build_draft_tree(7, drafts, int(rng.integers(1, 16)))
    inputs = tree_inputs(tree)
    seqs = branch_sequences(list(tree.parents))
    assert np.array_equal(shared_sequence_mask(seqs, list(tree.depths)), inputs.ancestor_mask)
    # the first-child chain from the root is sequence 0
    node = 0
    while True:
        assert 0 in seqs[node]
        kids = inputs.children(node)
        if not len(kids):
            break
        node = int(kids[0])


def test_leading_chain_counts_rows_in_place():
    assert leading_chain([0]) == 1
    assert leading_chain([0, 1, 2]) == 3
    assert leading_chain([0, 2, 5]) == 1
    assert leading_chain([0, 1, 4]) == 2
    assert leading_chain([]) == 0
