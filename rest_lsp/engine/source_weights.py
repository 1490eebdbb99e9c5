"""How much each candidate weighs in the draft tree, and per-source weights learned online.

``candidate_weights`` scores every drafter's candidates the same way (source, suffix length,
count); ``source_credit`` says which sources proposed the drafts a step accepted; ``SourceWeights``
moves the sources' weights toward those credited (the engine's default ``weigh``).
"""

from __future__ import annotations

from typing import Sequence

from rest_lsp.engine.drafter import Candidate

#: default weight of each source when several drafters are merged; the current text and the
#: workspace predict a completion better than a static corpus (DESIGN 2 and 5b)
DEFAULT_SOURCE_WEIGHTS: dict[str, float] = {
    "live": 4.0,
    "context": 4.0,
    "prompt_lookup": 4.0,
    "history": 3.0,
    "recycle": 1.0,
    "workspace": 2.0,
    "corpus": 1.0,
}


def candidate_weights(
    candidates: Sequence[Candidate],
    source_weights: dict[str, float] | None = None,
    length_base: float = 2.0,
) -> list[float]:
    """The weight each candidate adds to every trie node on its path.

    Counts are normalised within each (source, suffix length) group, so that a corpus with
    thousands of matches does not drown the current text; each group then weighs
    ``source_weight * length_base ** suffix_len``: longer matches are better evidence.
    """
    weights_of = DEFAULT_SOURCE_WEIGHTS if source_weights is None else source_weights
    # one pass for the keys and counts, then per group rather than per candidate: this runs
    # every step over ~140 candidates
    keys = [(c.source, c.suffix_len) for c in candidates]
    counts = [c.count if c.count > 0 else 0.0 for c in candidates]
    totals: dict[tuple[str, int], float] = {}
    for key, count in zip(keys, counts):
        totals[key] = totals.get(key, 0.0) + count
    scales = {key: weights_of.get(key[0], 1.0) * length_base ** min(key[1], 32) for key in totals}
    return [count / totals[key] * scales[key] if totals[key] > 0 else 0.0 for key, count in zip(keys, counts)]


def source_credit(candidates: Sequence[Candidate], drafts: Sequence[int]) -> dict[str, int]:
    """Accepted draft tokens each source proposed: per source, the longest prefix of ``drafts``
    that one of its candidates starts with (a token can be credited to several sources)."""
    if not drafts:
        return {}
    first = drafts[0]
    credit: dict[str, int] = {}
    for c in candidates:
        tokens = c.tokens
        if not tokens or tokens[0] != first:
            continue
        k = 1
        limit = min(len(tokens), len(drafts))
        while k < limit and tokens[k] == drafts[k]:
            k += 1
        if k > credit.get(c.source, 0):
            credit[c.source] = k
    return credit


class SourceWeights:
    """Per-source weights learned online from which sources' drafts were accepted.

    Each source keeps a running mean of the draft tokens it was credited with in the steps where
    it proposed anything (``source_credit``); its weight is its prior times that mean over the
    mean of all sources, clipped to [``floor``, ``ceiling``] times the prior.  A callable: it is
    the ``weigh`` of the decoding loop (``candidate_weights`` with the current weights).
    """

    def __init__(self, prior: dict[str, float] | None = None, rate: float = 0.05,
                 floor: float = 0.25, ceiling: float = 4.0, start: float = 1.0) -> None:
        self.prior = dict(DEFAULT_SOURCE_WEIGHTS if prior is None else prior)
        self.rate, self.floor, self.ceiling, self.start = rate, floor, ceiling, start
        self.means: dict[str, float] = {}
        self.weights: dict[str, float] = dict(self.prior)

    def __call__(self, candidates: Sequence[Candidate]) -> list[float]:
        return candidate_weights(candidates, self.weights)

    def observe(self, candidates: Sequence[Candidate], drafts: Sequence[int]) -> dict[str, int]:
        """Learn from one step: the candidates proposed and the draft tokens accepted."""
        credit = source_credit(candidates, drafts)
        present = {c.source for c in candidates}
        for source in present:
            old = self.means.get(source, self.start)
            self.means[source] = old + self.rate * (credit.get(source, 0) - old)
        if present:
            overall = sum(self.means.values()) / len(self.means)
            for source, mean in self.means.items():
                factor = (mean + 1e-3) / (overall + 1e-3)
                factor = min(max(factor, self.floor), self.ceiling)
                self.weights[source] = self.prior.get(source, 1.0) * factor
        return credit
