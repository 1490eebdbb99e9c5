"""Tree-attention inputs of a draft tree: flat tokens, ancestor mask, positions, leaf paths.

Pure numpy.  The tree is already flattened in BFS order (``DraftTree``); every node attends to
the whole cached context, to itself and to its ancestors, and sits at position
``context_len + depth`` so that each root-to-leaf path sees exactly the positions a plain
left-to-right decode would give it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rest_lsp.engine.draft_tree import DraftTree


@dataclass(frozen=True)
class TreeInputs:
    """Arrays for one verification forward over a draft tree of ``n`` nodes."""

    #: [n] token ids, BFS order, root first
    tokens: np.ndarray
    #: [n] depth of each node
    depths: np.ndarray
    #: [n] parent of each node (-1 for the root)
    parents: np.ndarray
    #: [n, n] bool, ancestor_mask[i, j]: node i may attend to node j (ancestor or itself)
    ancestor_mask: np.ndarray
    #: (parent, token) -> node: the child of ``parent`` that drafts ``token`` (a trie: at most one)
    child_of: dict[tuple[int, int], int]

    def __len__(self) -> int:
        return len(self.tokens)

    def position_ids(self, context_len: int) -> np.ndarray:
        """[n] position of each node after ``context_len`` cached tokens."""
        return context_len + self.depths

    def children(self, node: int) -> np.ndarray:
        """Children of ``node`` in flat order."""
        return np.flatnonzero(self.parents == node)


def tree_inputs(tree: DraftTree) -> TreeInputs:
    """The attention inputs of ``tree`` (parents must precede children, as BFS order gives)."""
    n = len(tree)
    parents = np.asarray(tree.parents, dtype=np.int64)
    mask = np.zeros((n, n), dtype=bool)
    child_of: dict[tuple[int, int], int] = {}
    for i, (p, token) in enumerate(zip(tree.parents, tree.tokens)):
        if p >= 0:
            if p >= i:
                raise ValueError(f"node {i} comes before its parent {p}: not in BFS order")
            mask[i] = mask[p]
            child_of[(p, token)] = i
        mask[i, i] = True
    return TreeInputs(
        tokens=np.asarray(tree.tokens, dtype=np.int64),
        depths=np.asarray(tree.depths, dtype=np.int64),
        parents=parents,
        ancestor_mask=mask,
        child_of=child_of,
    )
