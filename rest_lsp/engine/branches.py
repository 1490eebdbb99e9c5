"""A draft tree as sequences of a multi-sequence KV cache: one sequence per root-to-leaf branch.

Pure Python.  Backends whose attention mask is "a token sees the cached tokens that share one of
its sequence ids, at positions up to its own" (llama.cpp's) verify a whole draft tree in one
batch by giving each leaf a sequence id and each node the ids of every leaf below it: two nodes
then share an id exactly when one is an ancestor of the other, which is the tree mask.  Sequence 0
is the branch of first children, so a tree's chain of first children (a plain greedy step, or a
single draft chain) stays in sequence 0 with the committed context.
"""

from __future__ import annotations

from typing import Sequence


def branch_sequences(parents: Sequence[int]) -> list[list[int]]:
    """For each node (BFS order, parents first), the sorted sequence ids of the leaves below it.

    Leaves are numbered in depth-first order taking children in flat order, so the first-child
    branch from the root is sequence 0.
    """
    n = len(parents)
    children: list[list[int]] = [[] for _ in range(n)]
    for node, parent in enumerate(parents):
        if parent >= 0:
            if parent >= node:
                raise ValueError(f"node {node} comes before its parent {parent}: not in BFS order")
            children[parent].append(node)
    seqs: list[list[int]] = [[] for _ in range(n)]
    leaves = 0
    # iterative depth-first walk: a node's ids are its children's, in leaf order
    stack: list[tuple[int, bool]] = [(0, False)] if n else []
    while stack:
        node, done = stack.pop()
        if not children[node]:
            seqs[node] = [leaves]
            leaves += 1
        elif done:
            seqs[node] = [s for child in children[node] for s in seqs[child]]
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children[node]))
    return seqs


def leading_chain(rows: Sequence[int]) -> int:
    """How many accepted nodes ``rows`` (increasing, root first) sit at flat indices 0, 1, 2, ...

    Those rows already lie in the cache in position order right after the context; the accepted
    nodes after them must be written again to keep the cache in position order.
    """
    n = 0
    for i, row in enumerate(rows):
        if row != i:
            break
        n += 1
    return n
