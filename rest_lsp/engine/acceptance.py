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


def sample_accept(inputs: TreeInputs, probs: np.ndarray, rng: np.random.Generator) -> Acceptance:
    """Walk the tree accepting drafts by recursive residual rejection; ``probs``: [n, vocab]."""
    node = 0
    nodes = [0]
    while True:
        residual = np.array(probs[node], dtype=np.float64)
        moved = False
        for child in inputs.children(node):
            token = int(inputs.tokens[child])
            mass = residual.sum()
            if mass <= 0:
                break
            if rng.random() * mass < residual[token]:
                node = int(child)
                nodes.append(node)
                moved = True
                break
            residual[token] = 0.0
        if not moved:
            bonus = _draw(residual if residual.sum() > 0 else probs[node], rng)
            return Acceptance(
                nodes=tuple(nodes),
                drafts=tuple(int(inputs.tokens[i]) for i in nodes[1:]),
                bonus=bonus,
            )


def _draw(weights: np.ndarray, rng: np.random.Generator) -> int:
    """A token drawn in proportion to ``weights``."""
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))
