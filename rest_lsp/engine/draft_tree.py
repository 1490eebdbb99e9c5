"""The draft tree: a trie of candidate continuations and its prefix-closed best-``budget`` cut.

Pure Python (no torch).  A node's weight is the summed weight of the candidates through it, so
weight never grows down a path; picking nodes best-first from the frontier therefore returns a
prefix-closed tree, and the pick order is nested: the tree for budget ``b`` is the first ``b``
picks of the tree for any larger budget (the adaptive budget relies on this).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

from rest_lsp.engine.drafter import Candidate
from rest_lsp.engine.source_weights import candidate_weights

#: the budget bound assumed when a caller does not give one (DecodingConfig.max_draft_budget)
DEFAULT_MAX_BUDGET = 64


@dataclass(frozen=True, slots=True)
class DraftTree:
    """A rooted token tree in BFS order; node 0 is the root (the last accepted token)."""

    tokens: tuple[int, ...]
    #: parent of each node (-1 for the root); parents come before children
    parents: tuple[int, ...]
    #: depth of each node (0 for the root)
    depths: tuple[int, ...]
    #: order in which each node was picked (0 for the root, then 1..n-1)
    ranks: tuple[int, ...]
    #: trie weight of each node (0 for the root)
    weights: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_drafts(self) -> int:
        """Draft tokens in the tree (the root is not a draft)."""
        return len(self.tokens) - 1

    def path(self, node: int) -> list[int]:
        """Node indices from the root down to ``node``."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]


def build_draft_tree(
    root_token: int,
    candidates: Sequence[Candidate],
    budget: int,
    weights: Sequence[float] | None = None,
    max_depth: int | None = None,
    max_budget: int = DEFAULT_MAX_BUDGET,
    depth_decay: float = 1.0,
    vocab_size: int | None = None,
) -> DraftTree:
    """The draft tree of at most ``budget`` draft tokens below ``root_token``.

    The best-first cut of the trie of all candidates (the tests hold it to a plain trie and cut,
    ``tests/support/draft_tree_reference.py``), built lazily: a node's children are counted only when the node is picked, so the work follows the
    candidates through the picked nodes instead of every token of every candidate (the trie was
    the largest part of a step's overhead: ~140 candidates of ~5 tokens for ~20 picked nodes).
    ``max_budget``: the largest budget this caller asks for (a tree is never deeper); the trees
    of any two budgets are nested whatever it is.
    ``depth_decay``: a node at depth d weighs ``depth_decay ** (d - 1)`` times its candidates'
    weight, a geometric prior that a deeper draft token is less likely to be reached: without
    it one long heavy chain takes the whole budget before the second-best first token.
    ``vocab_size``: candidates are cut before their first token outside ``[0, vocab_size)``
    (a drafter's bug, or a store of another tokenizer, must not reach the embedding lookup).
    """
    if budget <= 0 or not candidates:
        return DraftTree((int(root_token),), (-1,), (0,), (0,), (0.0,))
    max_budget = max(budget, max_budget)
    # a prefix-closed tree of ``max_budget`` nodes is at most ``max_budget`` deep
    max_depth = max_budget if max_depth is None else min(max_depth, max_budget)
    if weights is None:
        weights = candidate_weights(candidates)
    paths = [c.tokens for c in candidates]
    # nodes are numbered in pick order (the root is 0): a node's id is its pick rank
    token, parent, depth, weight = [-1], [-1], [0], [0.0]
    # (-weight, depth, parent's pick rank, token, parent, candidates through it): the ordering of
    # ``select_tree``; the first four fields already tell any two entries apart
    frontier: list[tuple[float, int, int, int, int, list[int]]] = []

    def push_children(node: int, members: list[int], d: int) -> None:
        scale = depth_decay**d  # the children are at depth d + 1
        groups: dict[int, list] = {}
        for i in members:
            path = paths[i]
            if len(path) > d:
                group = groups.get(path[d])
                if group is None:
                    groups[path[d]] = [weights[i], [i]]
                else:
                    group[0] += weights[i]
                    group[1].append(i)
        for tok, (w, through) in groups.items():
            if vocab_size is not None and not 0 <= tok < vocab_size:
                continue
            heapq.heappush(frontier, (-w * scale, d + 1, node, tok, node, through))

    push_children(0, [i for i, w in enumerate(weights) if w > 0], 0)
    while frontier and len(token) <= budget:
        neg_w, d, _, tok, par, through = heapq.heappop(frontier)
        node = len(token)
        token.append(tok)
        parent.append(par)
        depth.append(d)
        weight.append(-neg_w)
        if d < max_depth and node < budget:  # the last pick's children are never picked
            push_children(node, through, d)
    # BFS order: by depth, then by pick rank (a stable sort of nodes in pick order); parents
    # therefore precede children
    order = sorted(range(1, len(token)), key=depth.__getitem__)
    flat_of = [0] * len(token)
    for i, n in enumerate(order, 1):
        flat_of[n] = i
    return DraftTree(
        tokens=(int(root_token), *map(token.__getitem__, order)),
        parents=(-1, *[flat_of[parent[n]] for n in order]),
        depths=(0, *map(depth.__getitem__, order)),
        ranks=(0, *order),
        weights=(0.0, *map(weight.__getitem__, order)),
    )
