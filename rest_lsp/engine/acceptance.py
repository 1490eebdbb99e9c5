"""Which draft tokens a verification pass accepts: greedy and exact speculative sampling.

Pure numpy.  Greedy: along each root-to-leaf path, a draft token is accepted while it equals the
argmax of its parent's logits; the longest accepted path wins and the bonus token is the argmax at
its last node.  The output is therefore what plain greedy decoding would have produced.

Sampling with a tree of deterministic drafts (each draft is a point mass q(x) = 1): at a node with
target distribution p and children x1..xm (distinct tokens, a trie), child xi is accepted with
probability r(xi) / sum(r), where r starts as p and every rejected child is zeroed out before the
next one is tried (the residual norm(max(p - q, 0)) of a point mass is p with x removed,
renormalised).  If every child is rejected the bonus token is drawn from the final residual r; on
acceptance the walk continues at the child with that child's own distribution.  Sequentially asking
"is it x1? else is it x2? ... else draw from the rest" yields token x with probability exactly p(x),
so each emitted token has exactly the model's (tempered, top-p-filtered) distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rest_lsp.engine.tree_inputs import TreeInputs


@dataclass(frozen=True)
class Acceptance:
    """The outcome of verifying one draft tree."""

    #: accepted node indices from the root (always node 0) down; their K/V rows are kept
    nodes: tuple[int, ...]
    #: accepted draft tokens (the tokens of ``nodes[1:]``)
    drafts: tuple[int, ...]
    #: the token the model produced after the last accepted node
    bonus: int

    @property
    def new_tokens(self) -> tuple[int, ...]:
        """Tokens this step adds to the output: accepted drafts, then the bonus token."""
        return self.drafts + (self.bonus,)


def greedy_accept(inputs: TreeInputs, predicted: np.ndarray) -> Acceptance:
    """Longest path whose drafts equal the argmax of their parents; ``predicted``: [n] argmax ids.

    Siblings hold distinct tokens (a trie), so at most one child of a node matches its argmax:
    walking down from the root finds the longest accepted path.
    """
    wanted = predicted.tolist()
    child_of = inputs.child_of
    nodes = [0]
    drafts: list[int] = []
    node = 0
    while True:
        child = child_of.get((node, wanted[node]))
        if child is None:
            break
        nodes.append(child)
        drafts.append(wanted[node])
        node = child
    return Acceptance(nodes=tuple(nodes), drafts=tuple(drafts), bonus=wanted[node])


@dataclass(frozen=True)
class SamplingTable:
    """What the sampled walk reads of a verified tree: a few numbers per node, not whole rows.

    Built on the device (``sampling.sampling_table``: one copy to the host) or from host rows
    (``table_from_probs``).  ``bonus[i]`` is a draw from node i's distribution with all of its
    children's tokens removed (the residual when every child is rejected), or from the whole
    distribution where the children held all of its mass.
    """

    #: [n, C] probability of each child's token at its parent, children in flat order (0 padding)
    child_p: np.ndarray
    #: [n] total mass of each node's row (1 up to rounding)
    total: np.ndarray
    #: [n] the bonus token drawn at each node
    bonus: np.ndarray


def child_tokens(inputs: TreeInputs) -> np.ndarray:
    """[n, C] int64: each node's children's tokens in flat order, -1 padding (C >= 1)."""
    n = len(inputs)
    kids = [inputs.children(i) for i in range(n)]
    out = np.full((n, max([1] + [len(k) for k in kids])), -1, dtype=np.int64)
    for i, k in enumerate(kids):
        out[i, : len(k)] = inputs.tokens[k]
    return out


def sample_accept(inputs: TreeInputs, probs: np.ndarray, rng: np.random.Generator) -> Acceptance:
    """Walk the tree accepting drafts by recursive residual rejection; ``probs``: [n, vocab]."""
    return walk_sampled(inputs, table_from_probs(inputs, probs, rng), rng)


def table_from_probs(inputs: TreeInputs, probs: np.ndarray, rng: np.random.Generator) -> SamplingTable:
    """The ``SamplingTable`` of host rows ``probs`` [n, vocab] (the reference of the device one)."""
    kids = child_tokens(inputs)
    valid = kids >= 0
    child_p = np.where(valid, np.take_along_axis(probs, np.maximum(kids, 0), axis=1), 0.0)
    bonus = np.empty(len(inputs), dtype=np.int64)
    for i in range(len(inputs)):
        residual = np.array(probs[i], dtype=np.float64)
        residual[kids[i][valid[i]]] = 0.0
        bonus[i] = _draw(residual if residual.sum() > 0 else probs[i], rng)
    return SamplingTable(child_p=child_p, total=probs.sum(axis=1), bonus=bonus)


def walk_sampled(inputs: TreeInputs, table: SamplingTable, rng: np.random.Generator) -> Acceptance:
    """Recursive residual rejection over the tree, from its ``SamplingTable``.

    At a node, children are tried in order: child j is accepted with probability
    p(x_j) / (mass left), each rejection removing its p(x_j) from the mass; when every child is
    rejected (or no mass is left) the node's bonus draw ends the step.
    """
    node = 0
    nodes = [0]
    while True:
        mass = float(table.total[node])
        moved = False
        for j, child in enumerate(inputs.children(node)):
            if mass <= 0:
                break
            p = float(table.child_p[node, j])
            if rng.random() * mass < p:
                node = int(child)
                nodes.append(node)
                moved = True
                break
            mass -= p
        if not moved:
            return Acceptance(
                nodes=tuple(nodes),
                drafts=tuple(int(inputs.tokens[i]) for i in nodes[1:]),
                bonus=int(table.bonus[node]),
            )


def _draw(weights: np.ndarray, rng: np.random.Generator) -> int:
    """A token drawn in proportion to ``weights``."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))
