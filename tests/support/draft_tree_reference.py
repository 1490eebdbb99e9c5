"""The plain statements of the draft tree and its inputs that the engine's faster code must equal.

``build_trie`` + ``select_tree``: the whole trie of the candidates, then its best-first cut, as
``rest_lsp.engine.draft_tree.build_draft_tree`` computes lazily.  ``leaf_paths``: every
root-to-leaf path of a tree's inputs, as greedy acceptance once read them.
"""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np

from rest_lsp.engine.draft_tree import DraftTree
from rest_lsp.engine.drafter import Candidate
from rest_lsp.engine.source_weights import candidate_weights
from rest_lsp.engine.tree_inputs import TreeInputs


class Trie:
    """A mutable trie of weighted token sequences (built once per step, then cut)."""

    __slots__ = ("token", "parent", "depth", "weight", "children")

    def __init__(self) -> None:
        self.token: list[int] = [-1]
        self.parent: list[int] = [-1]
        self.depth: list[int] = [0]
        self.weight: list[float] = [0.0]
        self.children: list[dict[int, int]] = [{}]


def build_trie(
    candidates: Sequence[Candidate],
    weights: Sequence[float] | None = None,
    max_depth: int | None = None,
) -> Trie:
    """A trie of the candidates' tokens, each node weighted by the candidates through it."""
    if weights is None:
        weights = candidate_weights(candidates)
    trie = Trie()
    token, parent, depth, weight, children = trie.token, trie.parent, trie.depth, trie.weight, trie.children
    for cand, w in zip(candidates, weights):
        if w <= 0:
            continue
        node = 0
        for tok in cand.tokens if max_depth is None else cand.tokens[:max_depth]:
            kids = children[node]
            child = kids.get(tok)
            if child is None:
                child = len(token)
                kids[tok] = child
                token.append(tok)
                parent.append(node)
                depth.append(depth[node] + 1)
                weight.append(0.0)
                children.append({})
            weight[child] += w
            node = child
    return trie


def select_tree(trie: Trie, root_token: int, budget: int, depth_decay: float = 1.0) -> DraftTree:
    """The best ``budget`` nodes of ``trie`` (fewer if it is smaller), prefix-closed, in BFS order.

    A node at depth d is worth its trie weight times ``depth_decay ** (d - 1)``.
    Best-first from the frontier; ties break on depth (shallower first), then the pick rank of
    the parent, then the token id, so the cut is deterministic.
    """
    picked: list[int] = []  # trie node ids in pick order
    rank_of: dict[int, int] = {0: 0}
    frontier: list[tuple[float, int, int, int, int]] = []

    def worth(node: int) -> float:
        return trie.weight[node] * depth_decay ** (trie.depth[node] - 1)

    def push_children(node: int) -> None:
        for tok, child in trie.children[node].items():
            heapq.heappush(frontier, (-worth(child), trie.depth[child], rank_of[node], tok, child))

    push_children(0)
    while frontier and len(picked) < budget:
        _, _, _, _, child = heapq.heappop(frontier)
        picked.append(child)
        rank_of[child] = len(picked)
        push_children(child)

    # BFS order: by depth, then by pick rank; parents therefore precede children
    order = [0] + sorted(picked, key=lambda n: (trie.depth[n], rank_of[n]))
    flat_of = {node: i for i, node in enumerate(order)}
    return DraftTree(
        tokens=(int(root_token),) + tuple(trie.token[n] for n in order[1:]),
        parents=(-1,) + tuple(flat_of[trie.parent[n]] for n in order[1:]),
        depths=tuple(trie.depth[n] for n in order),
        ranks=tuple(rank_of[n] for n in order),
        weights=(0.0,) + tuple(worth(n) for n in order[1:]),
    )


def leaf_paths(inputs: TreeInputs) -> np.ndarray:
    """[n_leaves, max_depth + 1] node indices of each root-to-leaf path, padded with -1."""
    is_leaf = np.ones(len(inputs.parents), dtype=bool)
    is_leaf[inputs.parents[inputs.parents >= 0]] = False
    leaves = np.flatnonzero(is_leaf)
    paths = np.full((len(leaves), int(inputs.depths.max()) + 1), -1, dtype=np.int64)
    for row, leaf in enumerate(leaves):
        path = np.flatnonzero(inputs.ancestor_mask[leaf])  # ancestors come first: root-first
        paths[row, : len(path)] = path
    return paths
