"""The decoding loop: draft, verify the tree in one forward, accept, keep the accepted K/V rows.

``speculative_decode`` runs on a cache that holds every context token but the last (the root,
not yet verified).  A step asks the drafter, cuts the draft tree to the policy's budget, verifies
all of it in one forward, accepts (greedy or exact speculative sampling), keeps the accepted rows
of the cache and appends the accepted drafts plus the bonus token.  With budget 0 every step is a
one-node tree: that is our plain greedy loop, on the very same numerics path.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from rest_lsp.engine import kv_cache
from rest_lsp.engine.acceptance import Acceptance, child_tokens, greedy_accept, walk_sampled
from rest_lsp.engine.budget import BudgetPolicy
from rest_lsp.engine.draft_tree import build_draft_tree
from rest_lsp.engine.drafter import Candidate, Drafter
from rest_lsp.engine.source_weights import candidate_weights, source_credit
from rest_lsp.engine.forward import verify_tree
from rest_lsp.engine.readout import argmax_among, greedy_readout, top_k_rows
from rest_lsp.engine.sampling import SamplingParams, sampling_table, torch_generator
from rest_lsp.engine.stats import GenerationStats
from rest_lsp.engine.tree_inputs import tree_inputs
from rest_lsp.errors import DecodingError

#: stop(tokens generated so far) -> True to end the generation after the last of them
StopFn = Callable[[Sequence[int]], bool]
ShouldStopFn = Callable[[], bool]
#: next-token candidates per verified node handed to drafters that observe the model
TOP_K = 4


def speculative_decode(
    model: Any,
    cache: Any,
    context: list[int],
    max_new_tokens: int,
    drafter: Drafter | None,
    policy: BudgetPolicy,
    stats: GenerationStats,
    *,
    eos_ids: frozenset[int] = frozenset(),
    stop: StopFn | None = None,
    should_stop: ShouldStopFn | None = None,
    sampling: SamplingParams | None = None,
    rng: np.random.Generator | None = None,
    weigh: Callable[[Sequence[Candidate]], list[float]] = candidate_weights,
    window: int | None = None,
    depth_decay: float = 1.0,
    vocab_size: int | None = None,
    first_allowed: np.ndarray | None = None,
) -> list[int]:
    """Generate up to ``max_new_tokens`` after ``context`` (extended in place); returns them.

    End-of-sequence tokens end the generation and are not returned; ``stop`` is asked after
    every token and ``should_stop`` before every step (cancellation within one step).
    ``vocab_size``: draft tokens outside the model's vocabulary are cut from the tree.
    ``first_allowed``: the only tokens the first generated token may be (token healing: the
    prompt's last token was taken back, and the first token must begin with its text).
    """
    if sampling is not None and rng is None:
        rng = np.random.default_rng()
    out: list[int] = []
    generator = None  # the bonus draws' torch generator, on the logits' device (made at first use)
    # drafters that query with the model's hidden state (dense drafts) get it from the
    # verification forward itself; a learning ``weigh`` sees which sources were accepted
    wants_hidden = drafter is not None and drafter.wants_hidden
    learn = getattr(weigh, "observe", None)
    step_done = drafter.step_done if drafter is not None else None
    observe = drafter.observe if drafter is not None and drafter.wants_top_k else None
    while len(out) < max_new_tokens:
        if should_stop is not None and should_stop():
            stats.stop_reason = "cancelled"
            return out
        t0 = time.perf_counter()
        remaining = max_new_tokens - len(out)
        requested = policy.budget() if drafter is not None else 0
        candidates = drafter.draft(context) if requested > 0 and remaining > 1 else []
        t1 = time.perf_counter()
        # deeper drafts than the tokens still wanted would be verified for nothing
        tree = build_draft_tree(
            context[-1], candidates, requested, weights=weigh(candidates), max_depth=remaining - 1,
            max_budget=getattr(policy, "max_budget", requested), depth_decay=depth_decay,
            vocab_size=vocab_size,
        )
        inputs = tree_inputs(tree)
        past = kv_cache.cache_length(cache)
        if window is not None and past + max(tree.depths) + 1 > window:
            raise DecodingError(
                f"sequence of {past + max(tree.depths) + 1} tokens exceeds the model's sliding "
                f"window of {window}, which tree verification does not implement",
                window=window,
            )
        t2 = time.perf_counter()
        if wants_hidden:
            logits, states = verify_tree(model, cache, inputs, hidden=True)  # [n, vocab], [n, hidden]
        else:
            logits = verify_tree(model, cache, inputs)  # [n, vocab]
        top = None
        if sampling is None:
            # one copy to the host on an accelerator: argmax and, where observed, the top-k
            predicted, top = greedy_readout(logits, TOP_K if observe is not None else 0)  # [n], [n, k]
            if first_allowed is not None and not out:
                predicted[0] = argmax_among(logits, 0, first_allowed)
        else:
            if generator is None:
                generator = torch_generator(rng, logits.device)
            # computed where the logits are: only a few numbers per node reach the host
            table = sampling_table(logits, sampling, child_tokens(inputs), generator,
                                   first_allowed if not out else None)
        t3 = time.perf_counter()
        acc: Acceptance = (
            greedy_accept(inputs, predicted) if sampling is None else walk_sampled(inputs, table, rng)
        )
        if observe is not None:
            # drafters that recycle the model's own top-k (Token Recycling); the accepted rows
            # only, as top-k over the whole vocabulary costs about as much per row as argmax;
            # greedy acceptance already read each row's best token
            rows = list(acc.nodes)
            first = predicted if sampling is None else None
            best = top[rows] if top is not None else top_k_rows(logits, rows, TOP_K, first=first)
            observe(inputs.tokens[rows], best)  # [len(rows)], [len(rows), TOP_K]
        kv_cache.keep_rows(cache, past, acc.nodes)
        new = acc.new_tokens
        context.extend(new)
        credit: dict[str, int] = {}
        if candidates:
            credit = learn(candidates, acc.drafts) if learn is not None else source_credit(candidates, acc.drafts)
            for source, k in credit.items():
                stats.accepted_by_source[source] = stats.accepted_by_source.get(source, 0) + k
        if step_done is not None:
            # drafters that gate themselves learn what their drafts were worth this step
            step_s = time.perf_counter() - t0
            step_done(credit, step_s, len(new), step_s - (t3 - t2))
        if wants_hidden:
            # the last accepted node's state predicted the bonus token: the next dense query
            # a copy: the static forward's states are overwritten by its next step
            drafter.observe_hidden(states[acc.nodes[-1]].clone(), len(context))
        stats.steps += 1
        stats.drafted_tokens += tree.n_drafts
        stats.accepted_drafts += len(acc.drafts)
        stats.budgets.append(tree.n_drafts)
        reason = _append(out, new, max_new_tokens, eos_ids, stop)
        policy.observe(requested, tree, acc, t3 - t2, (time.perf_counter() - t3) + (t2 - t0))
        t4 = time.perf_counter()
        stats.draft_s += t1 - t0
        stats.tree_s += t2 - t1
        stats.forward_s += t3 - t2
        stats.other_s += t4 - t3
        if reason:
            stats.stop_reason = reason
            return out
    stats.stop_reason = "length"
    return out


def _append(
    out: list[int],
    new: Sequence[int],
    max_new_tokens: int,
    eos_ids: frozenset[int],
    stop: StopFn | None,
) -> str:
    """Append ``new`` to ``out`` token by token; the reason to stop, or "" to go on."""
    for token in new:
        if token in eos_ids:
            return "eos"
        out.append(token)
        if stop is not None and stop(out):
            return "stop"
        if len(out) >= max_new_tokens:
            return "length"
    return ""
