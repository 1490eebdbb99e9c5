"""Drafters: where speculative continuations come from, behind one small interface.

A drafter gets the context (every accepted token, the last one being the root that the next
verification step starts from) and returns candidate continuations of it.  Every source, the
datastore's ``retrieve()`` included, returns the one ``Candidate`` type (``indexer.candidate``,
a value type: the engine imports nothing else of the indexer).  ``Drafter`` declares every hook
the engine calls; drafters subclass it and override what they use.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from indexer.candidate import Candidate


@runtime_checkable
class Drafter(Protocol):
    """A source of speculative continuations, and every hook the engine calls on one.

    Subclasses override ``draft`` and the hooks they use; the others do nothing.  The engine
    computes a step's hidden state only for a drafter that ``wants_hidden``, and its top-k only
    for one that ``wants_top_k``.
    """

    #: whether it queries with the model's hidden state (dense drafts): ``observe_hidden`` is called
    wants_hidden: bool = False
    #: whether it learns from the model's top-k of each accepted row (recycling): ``observe`` is called
    wants_top_k: bool = False

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        """Candidate continuations of ``context_ids`` (whose last token is the root)."""
        raise NotImplementedError

    def observe(self, tokens: np.ndarray, top_k: np.ndarray) -> None:
        """The accepted rows' tokens [n] and the model's top-k after each of them [n, k]."""

    def observe_hidden(self, state: Any, context_len: int) -> None:
        """The final-norm hidden state [hidden] that predicted the next root, at ``context_len``."""

    def step_done(self, credit: dict[str, int], step_s: float, new_tokens: int, overhead_s: float = 0.0) -> None:
        """A verified step's outcome: accepted drafts per source, its seconds, tokens gained, and
        the seconds spent outside the forward."""


class NullDrafter(Drafter):
    """A drafter that never proposes anything: speculative decoding degrades to greedy."""

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        return []


class PromptLookupDrafter(Drafter):
    """Prompt lookup as in transformers' ``prompt_lookup_num_tokens``: one chain from the context.

    The last ``n`` tokens (n from ``max_ngram`` down to 1) are searched for in the context; the
    first earlier occurrence with a non-empty continuation gives up to ``span`` tokens.
    """

    def __init__(self, span: int = 10, max_ngram: int = 2, source: str = "prompt_lookup") -> None:
        self.span = span
        self.max_ngram = max_ngram
        self.source = source

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        ctx = np.asarray(context_ids, dtype=np.int64)
        n = len(ctx)
        for size in range(min(self.max_ngram, n - 1), 0, -1):
            ngram = ctx[n - size :]
            windows = np.lib.stride_tricks.sliding_window_view(ctx[: n - 1], size)
            hits = np.flatnonzero((windows == ngram).all(axis=1))
            for start in hits:
                begin = int(start) + size
                end = min(begin + self.span, n)
                if begin < end:
                    tokens = tuple(int(t) for t in ctx[begin:end])
                    return [Candidate(tokens, 1.0, self.source, size)]
        return []


def suffix_continuations(
    haystack: np.ndarray,
    context: np.ndarray,
    ends: np.ndarray,
    span: int,
    min_suffix: int,
    max_suffix: int,
    max_matches: int,
    source: str,
) -> list[Candidate]:
    """Candidates from the positions ``ends`` of ``haystack`` that hold the context's root.

    Each such position's preceding tokens are matched backwards against the context's; those
    matching at least ``min_suffix`` tokens (root included) give the up to ``span`` tokens that
    follow them, cut before any negative id (a separator), longest matches first, then in the
    order of ``ends``.
    """
    n = len(context)
    if n == 0 or len(ends) == 0:
        return []
    # match lengths, all at once: row i compares the tokens before ends[i] with the context's
    depth = min(max_suffix, n)
    back = ends[:, None] - np.arange(depth)  # [m, depth] haystack positions, root first
    same = haystack[np.maximum(back, 0)] == context[n - 1 - np.arange(depth)]  # [m, depth]
    same[:, 0] = True  # ``ends`` hold the root: it counts as matched
    lengths = np.cumprod(same & (back >= 0), axis=1).sum(axis=1)  # [m]
    keep = np.flatnonzero(lengths >= min_suffix)
    if len(keep) == 0:
        return []
    order = keep[np.lexsort((np.arange(len(keep)), -lengths[keep]))][:max_matches]
    # the up to ``span`` tokens after each match, cut before the first separator or the end
    cols = ends[order, None] + 1 + np.arange(span)  # [k, span]
    windows = haystack[np.minimum(cols, len(haystack) - 1)]  # [k, span]
    stop = (cols >= len(haystack)) | (windows < 0)
    cuts = np.where(stop.any(axis=1), stop.argmax(axis=1), span)  # [k]
    counts: dict[tuple[tuple[int, ...], int], float] = {}
    for row, cut, length in zip(windows.tolist(), cuts.tolist(), lengths[order].tolist()):
        if cut:
            key = (tuple(row[:cut]), length)
            counts[key] = counts.get(key, 0.0) + 1.0
    return [Candidate(t, c, source, s) for (t, s), c in counts.items()]


class ContextSuffixDrafter(Drafter):
    """Continuations of every earlier occurrence of the context's own suffix (most recent first).

    Each earlier position whose preceding tokens match the context's suffix over at least
    ``min_suffix`` tokens gives one candidate of up to ``span`` tokens, tagged with its match
    length so that longer matches can be weighted up when drafts are merged.
    """

    def __init__(
        self,
        span: int = 16,
        min_suffix: int = 1,
        max_suffix: int = 16,
        max_matches: int = 64,
        source: str = "context",
    ) -> None:
        self.span = span
        self.min_suffix = min_suffix
        self.max_suffix = max_suffix
        self.max_matches = max_matches
        self.source = source

    #: up to this many earlier occurrences of the root are matched in plain Python, more in numpy
    #: (``suffix_continuations``, the same candidates): this runs every step, and right after a
    #: forward (caches cold) a dozen small numpy calls cost more than the Python loop (~180 vs
    #: ~45 us a step on HumanEval, where the root occurs ~12 times)
    LIST_MATCHES = 64

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        ctx = context_ids
        if type(ctx) is not list or (ctx and type(ctx[-1]) is not int):
            ctx = np.asarray(context_ids, dtype=np.int64).tolist()
        if len(ctx) < 2:
            return []
        ends = self._ends(ctx)
        if len(ends) > self.LIST_MATCHES:
            arr = np.asarray(ctx, dtype=np.int64)
            return suffix_continuations(arr, arr, np.asarray(ends, dtype=np.int64), self.span, self.min_suffix,
                                        self.max_suffix, self.max_matches, self.source)
        return self._continuations(ctx, ends)

    @staticmethod
    def _ends(ctx: list[int]) -> list[int]:
        """Earlier positions holding the root (the last token), most recent first.

        A continuation ends at the context's end: the root is never matched against itself.
        """
        root, stop, index = ctx[-1], len(ctx) - 1, ctx.index
        out: list[int] = []
        i = -1
        while True:
            try:
                i = index(root, i + 1, stop)  # a C scan from the last hit on
            except ValueError:
                break
            out.append(i)
        out.reverse()
        return out

    def _continuations(self, ctx: list[int], ends: list[int]) -> list[Candidate]:
        """``suffix_continuations(ctx, ctx, ends, ...)`` on Python lists: the same candidates."""
        n = len(ctx)
        depth = min(self.max_suffix, n)
        matched: list[tuple[int, int]] = []
        for end in ends:
            length, limit = 1, min(depth, end + 1)  # the root matches; nothing before position 0
            while length < limit and ctx[end - length] == ctx[n - 1 - length]:
                length += 1
            if length >= self.min_suffix:
                matched.append((length, end))
        # longest first; the sort is stable (also reversed), so ties keep the order of ``ends``
        matched.sort(key=lambda m: m[0], reverse=True)
        span = self.span
        counts: dict[tuple[tuple[int, ...], int], float] = {}
        for length, end in matched[: self.max_matches]:
            tokens = ctx[end + 1 : end + 1 + span]
            if tokens and min(tokens) < 0:  # cut before a separator
                tokens = tokens[: next(i for i, t in enumerate(tokens) if t < 0)]
            if tokens:
                key = (tuple(tokens), length)
                counts[key] = counts.get(key, 0.0) + 1.0
        return [Candidate(t, c, self.source, s) for (t, s), c in counts.items()]


class HistoryDrafter(Drafter):
    """The model's own recent outputs as one more exact-match source (SuffixDecoding's point).

    A bounded token history: each output is appended after a separator (-1) so that no
    continuation crosses from one output into the next; the oldest outputs are dropped first
    when ``max_tokens`` is exceeded.  Accepted completions are added twice, so that their
    continuations count double.  ``to_list``/``from_list`` persist it (plain ints: msgpack).
    """

    def __init__(self, max_tokens: int = 50_000, span: int = 16, min_suffix: int = 2,
                 max_suffix: int = 16, max_matches: int = 32, source: str = "history") -> None:
        self.max_tokens = max_tokens
        self.span, self.min_suffix, self.max_suffix = span, min_suffix, max_suffix
        self.max_matches = max_matches
        self.source = source
        self.tokens = np.zeros(0, dtype=np.int64)

    def add(self, tokens: Sequence[int], accepted: bool = False) -> None:
        """Remember one output (an accepted completion counts twice)."""
        if not len(tokens):
            return
        piece = np.append(np.asarray(tokens, dtype=np.int64), -1)
        parts = [self.tokens, piece, piece] if accepted else [self.tokens, piece]
        joined = np.concatenate(parts)
        if len(joined) > self.max_tokens:  # drop the oldest outputs, whole
            cut = len(joined) - self.max_tokens
            seps = np.flatnonzero(joined[cut - 1:] < 0)
            joined = joined[cut + int(seps[0]):] if len(seps) else joined[-self.max_tokens:]
        self.tokens = joined

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        ctx = np.asarray(context_ids, dtype=np.int64)
        tokens = self.tokens  # read once: ``add`` on another thread swaps in a new array
        if not len(ctx) or not len(tokens):
            return []
        ends = np.flatnonzero(tokens == ctx[-1])[::-1]  # most recent first
        return suffix_continuations(tokens, ctx, ends, self.span, self.min_suffix,
                                    self.max_suffix, self.max_matches, self.source)

    def to_list(self) -> list[int]:
        return self.tokens.tolist()

    def from_list(self, tokens: Sequence[int]) -> "HistoryDrafter":
        self.tokens = np.asarray(list(tokens)[-self.max_tokens:], dtype=np.int64)
        return self


class RecyclingDrafter(Drafter):
    """The model's own recent top-k next tokens, reused as a draft tree (Token Recycling).

    After every verification the engine reports, for each verified token, the model's top-k
    next tokens there (``observe``); the table keeps the latest top-k per token id.  A draft is
    the tree grown from the root through that table: ``widths[d]`` children per node at depth d,
    each path weighted by the product of ``rank_decay ** rank`` (a rank-based prior).
    """

    wants_top_k = True

    def __init__(
        self,
        vocab_size: int,
        k: int = 4,
        widths: Sequence[int] = (4, 2, 2, 1, 1, 1),
        rank_decay: float = 0.35,
        source: str = "recycle",
    ) -> None:
        self.k = k
        self.widths = tuple(min(w, k) for w in widths)
        self.rank_decay = rank_decay
        self.source = source
        self.vocab_size = vocab_size
        #: token -> the model's latest top-k next tokens after it (a dict: the drafting walk
        #: reads a few rows per step, and Python lists read faster than numpy rows)
        self.rows: dict[int, list[int]] = {}

    def observe(self, tokens: np.ndarray, top_k: np.ndarray) -> None:
        """Record ``top_k`` [n, k] next tokens after each of ``tokens`` [n]."""
        for token, row in zip(tokens.tolist(), top_k[:, : self.k].tolist()):
            if 0 <= token < self.vocab_size:
                self.rows[token] = row

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        if not len(context_ids) or not 0 <= context_ids[-1] < self.vocab_size:
            return []
        rows = self.rows
        out: list[Candidate] = []
        frontier = [((), int(context_ids[-1]), 1.0)]
        for width in self.widths:
            grown = []
            for path, last, weight in frontier:
                kids = [t for t in rows.get(last, ())[:width] if t >= 0]
                if not kids and path:
                    out.append(Candidate(path, weight, self.source, 1))
                for rank, tok in enumerate(kids):
                    grown.append((path + (tok,), tok, weight * self.rank_decay**rank))
            frontier = grown
        out.extend(Candidate(path, weight, self.source, 1) for path, _, weight in frontier)
        return out


class MergedDrafter(Drafter):
    """Several drafters side by side; their candidates are merged into one tree downstream.

    The merged drafter only concatenates; how much each candidate weighs (source, suffix length)
    is decided by ``candidate_weights`` so that every drafter is scored the same way.
    """

    def __init__(self, drafters: Sequence[Drafter]) -> None:
        self.drafters = list(drafters)

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        out: list[Candidate] = []
        for drafter in self.drafters:
            out.extend(drafter.draft(context_ids))
        return out

    @property
    def wants_hidden(self) -> bool:
        """Whether a drafter here queries with the model's hidden state (dense drafts)."""
        return any(d.wants_hidden for d in self.drafters)

    @property
    def wants_top_k(self) -> bool:
        """Whether a drafter here learns from the model's top-k (recycling)."""
        return any(d.wants_top_k for d in self.drafters)

    def observe_hidden(self, state: Any, context_len: int) -> None:
        """Pass the last accepted position's hidden state on to the drafters that query with it."""
        for drafter in self.drafters:
            if drafter.wants_hidden:
                drafter.observe_hidden(state, context_len)

    def observe(self, tokens: np.ndarray, top_k: np.ndarray) -> None:
        """Pass the model's top-k of a verification on to the drafters that learn from it."""
        for drafter in self.drafters:
            if drafter.wants_top_k:
                drafter.observe(tokens, top_k)

    def step_done(self, credit: dict[str, int], step_s: float, new_tokens: int, overhead_s: float = 0.0) -> None:
        """Pass a verified step's outcome on to every drafter (those that gate themselves use it)."""
        for drafter in self.drafters:
            drafter.step_done(credit, step_s, new_tokens, overhead_s)
