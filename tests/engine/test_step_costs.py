"""The cheaper per-step paths outside the forward give exactly what the plain ones give.

Each fast path (plain-Python context matching, top-k by blanking in place, K/V rows moved through
a numpy view) is compared with the straightforward computation it replaces, on random inputs
with many ties, separators and edge cases.
"""

from __future__ import annotations

import numpy as np
import torch

from rest_lsp.engine.drafter import ContextSuffixDrafter, suffix_continuations
from rest_lsp.engine.packed_llama import StaticCache
from rest_lsp.engine.readout import argmax_rows, top_k_rows


def numpy_context_draft(ctx, span, min_suffix, max_suffix, max_matches):
    """The context drafter as it was: every match in numpy (``suffix_continuations``)."""
    arr = np.asarray(ctx, dtype=np.int64)
    n = len(arr)
    if n < 2:
        return []
    ends = np.flatnonzero(arr[: n - 1] == arr[n - 1])[::-1]
    return suffix_continuations(arr, arr, ends, span, min_suffix, max_suffix, max_matches, "context")


def test_context_drafter_python_path_gives_the_numpy_candidates():
    rng = np.random.default_rng(0)
    settings = [{}, dict(span=3, min_suffix=2, max_suffix=4, max_matches=3),
                dict(span=1, min_suffix=3, max_suffix=2, max_matches=100)]
    for it in range(3000):
        low = -1 if it % 7 == 0 else 0  # -1: a separator, cut before
        ctx = rng.integers(low, int(rng.integers(1, 6)), size=int(rng.integers(0, 150 if it % 3 == 0 else 30)))
        ctx = ctx.tolist()
        kw = settings[it % 3]
        drafter = ContextSuffixDrafter(**kw)
        if it % 5 == 0:
            drafter.LIST_MATCHES = 3  # many occurrences of the root: the numpy path
        # the drafter's own settings (its defaults where ``kw`` leaves them)
        want = numpy_context_draft(ctx, drafter.span, drafter.min_suffix, drafter.max_suffix, drafter.max_matches)
        got = drafter.draft(ctx)
        assert got == want, (ctx, kw)  # the same candidates in the same order
        assert all(type(t) is int for c in got for t in c.tokens)
        assert drafter.draft(np.asarray(ctx, dtype=np.int64)) == want
        assert drafter.draft(tuple(ctx)) == want


def copied_top_k(logits, rows, k):
    """Top-k as it was: ``k`` argmax passes over a copy of the rows, blanking each find."""
    picked = logits.numpy()[list(rows)]
    k = min(k, picked.shape[1])
    out = np.empty((len(picked), k), dtype=np.int64)
    at = np.arange(len(picked))
    for j in range(k):
        best = picked.argmax(axis=1)
        out[:, j] = best
        picked[at, best] = -np.inf
    return out


def test_top_k_in_place_matches_the_copy_and_leaves_the_logits_as_they_were():
    rng = np.random.default_rng(1)
    for it in range(2000):
        n, vocab = int(rng.integers(1, 8)), int(rng.integers(1, 12))
        logits = torch.tensor(rng.integers(-3, 3, size=(n, vocab)).astype(np.float32))  # many ties
        if it % 10 == 0:
            logits[0] = -np.inf  # a row with nothing but -inf: the same token found again
        rows = sorted(set(rng.integers(0, n, size=int(rng.integers(0, n + 1))).tolist()))
        k = int(rng.integers(0, 6))
        before = logits.clone()
        want = copied_top_k(logits, rows, k)
        for got in (top_k_rows(logits, rows, k), top_k_rows(logits, rows, k, first=argmax_rows(logits))):
            assert got.shape == want.shape and (got == want).all(), (logits, rows, k)
        assert torch.equal(logits, before)


def cache_with_rows(length: int, dtype=torch.float32) -> StaticCache:
    cache = StaticCache(layers=2, kv_heads=2, head_dim=3, dtype=dtype, device="cpu", capacity=32)
    with torch.inference_mode():
        cache.kv.copy_(torch.randn(cache.kv.shape))
    cache.length = length
    return cache


def gathered(kv: torch.Tensor, start: int, rows: list[int]) -> torch.Tensor:
    """The rows ``keep_rows`` must leave: the first ``start``, then ``start + rows[i]``."""
    index = list(range(start)) + [start + r for r in rows]
    return kv[:, :, :, index].clone()


def test_keep_rows_moved_in_place_equals_the_gather():
    rng = np.random.default_rng(2)
    for it in range(300):
        start, tree = int(rng.integers(0, 10)), int(rng.integers(1, 15))
        accepted = sorted(set([0] + rng.integers(1, tree, size=int(rng.integers(0, tree))).tolist())) if tree > 1 else [0]
        for dtype in (torch.float32, torch.bfloat16):  # bfloat16: no numpy view, the torch gather
            cache = cache_with_rows(start + tree, dtype)
            want = gathered(cache.kv, start, accepted)
            cache.keep_rows(start, accepted)
            assert cache.length == start + len(accepted)
            assert torch.equal(cache.kv[:, :, :, : cache.length], want), (start, accepted)


def test_keep_rows_in_any_order_still_gathers():
    cache = cache_with_rows(8)
    want = gathered(cache.kv, 2, [3, 1, 4])
    cache.keep_rows(2, [3, 1, 4])  # not increasing: moving rows one by one would read overwritten rows
    assert torch.equal(cache.kv[:, :, :, :5], want)


def test_keep_rows_after_the_cache_grew_inside_inference_mode():
    cache = cache_with_rows(30)
    with torch.inference_mode():
        cache.reserve(40)  # the grown tensor is an inference tensor; its numpy view is renewed
    assert cache.capacity >= 40
    want = gathered(cache.kv, 20, [0, 2, 5, 9])
    cache.keep_rows(20, [0, 2, 5, 9])
    assert torch.equal(cache.kv[:, :, :, :24], want)


def test_budget_choice_follows_the_cost_model_it_caches():
    from rest_lsp.engine.budget import AdaptiveBudget, CostModel

    def cost():
        return CostModel(sizes=[1, 8, 64], seconds=[1.0, 1.0, 1.0])

    policy = AdaptiveBudget(cost(), max_budget=16)
    policy.acceptance.means = [0.0] + [b * 0.5 for b in range(1, 17)]
    first = policy.best()
    assert first == AdaptiveBudget(cost(), max_budget=16, acceptance=policy.acceptance).best() == 16
    for _ in range(100):
        # a measured size moves (the largest: a point above a larger size's is not believed,
        # CostModel.envelope): the cached curve must follow
        policy.cost.observe(64, 100.0)
    fresh = AdaptiveBudget(CostModel(sizes=[1, 8, 64], seconds=list(policy.cost.seconds)), max_budget=16,
                           acceptance=policy.acceptance)
    assert policy.best() == fresh.best() != first
    policy.cost.observe(5, 50.0)  # not a measured size: nothing moves
    assert policy.cost.seconds == fresh.cost.seconds
