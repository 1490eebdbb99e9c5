"""The step overhead outside the forward, a + b*k: its online fit and what it does to the budget."""

from __future__ import annotations

import numpy as np
import pytest

from rest_lsp.engine.acceptance import Acceptance
from rest_lsp.engine.budget import AcceptanceModel, AdaptiveBudget, CostModel, OverheadModel, fit_line
from rest_lsp.engine.draft_tree import DraftTree

A, B = 0.5e-3, 20e-6  # seconds a step, seconds a tree row: host work of a GPU step


def chain(n: int) -> DraftTree:
    return DraftTree(tuple(range(n)), (-1,) + tuple(range(n - 1)), tuple(range(n)), tuple(range(n)), (0.0,) * n)


def fed(model: OverheadModel, ks, ys) -> OverheadModel:
    for k, y in zip(ks, ys):
        model.observe(int(k), float(y))
    return model


def test_fit_recovers_the_line_from_noiseless_steps():
    ks = [1 + (7 * i) % 65 for i in range(200)]
    ys = [A + B * k for k in ks]
    a, b = fed(OverheadModel(slope_prior=0.0), ks, ys).line()
    assert a == pytest.approx(A, rel=1e-9) and b == pytest.approx(B, rel=1e-9)
    # the default prior on the slope costs next to nothing once the sizes spread
    model = fed(OverheadModel(), ks, ys)
    assert model.line() == pytest.approx((A, B), rel=1e-3)
    assert model(33) == pytest.approx(A + 33 * B, rel=1e-3)
    assert model.curve(np.array([1, 65])) == pytest.approx([A + B, A + 65 * B], rel=1e-3)


def test_fit_recovers_the_line_from_noisy_steps():
    rng = np.random.default_rng(0)
    ks = rng.integers(1, 66, size=2000)
    ys = A + B * ks + rng.normal(0.0, 0.1e-3, size=ks.shape)  # noise of a fifth of a
    model = fed(OverheadModel(forget=0.99), ks, ys)
    a, b = model.line()
    assert a == pytest.approx(A, rel=0.15) and b == pytest.approx(B, rel=0.15)
    assert model(33) == pytest.approx(A + 33 * B, rel=0.05)


def test_old_steps_are_forgotten_when_the_slope_changes():
    ks = [1 + (5 * i) % 33 for i in range(400)]
    model = fed(OverheadModel(), ks[:300], [A + B * k for k in ks[:300]])
    assert model.line()[1] == pytest.approx(B, rel=0.01)
    fed(model, ks[300:], [A + 5 * B * k for k in ks[300:]])  # the drafter got slower per row
    assert model.line() == pytest.approx((A, 5 * B), rel=0.02)


def test_steps_of_one_size_give_their_mean():
    ys = [1e-3, 3e-3, 2e-3, 4e-3, 2.5e-3]
    plain = fed(OverheadModel(forget=1.0), [9] * len(ys), ys)
    assert plain.line() == (pytest.approx(np.mean(ys), rel=1e-12), 0.0)
    assert plain(1) == plain(64) == pytest.approx(np.mean(ys), rel=1e-12)
    forgetting = fed(OverheadModel(forget=0.5), [9] * len(ys), ys)
    weights = 0.5 ** np.arange(len(ys))[::-1]  # the last step weighs 1
    assert forgetting.line() == (pytest.approx(np.dot(weights, ys) / weights.sum(), rel=1e-12), 0.0)
    assert OverheadModel()(7) == 0.0  # nothing seen: no overhead


def loss(a, b, ks, ys, prior):
    ks, ys = np.asarray(ks, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    return float(np.sum((ys - a - b * ks) ** 2) + prior * b * b)


@pytest.mark.parametrize("prior", [0.0, 1.0])
@pytest.mark.parametrize("slope,intercept", [(-30e-6, 2e-3), (100e-6, -1e-3)])
def test_fit_stays_non_negative_and_is_the_best_such_line(slope, intercept, prior):
    ks = list(range(20, 61))
    ys = [intercept + slope * k for k in ks]  # every time positive, the line leaves the quadrant
    sums = (len(ks), sum(ks), sum(k * k for k in ks), sum(ys), sum(k * y for k, y in zip(ks, ys)))
    a, b = fit_line(*sums, slope_prior=prior)
    assert a >= 0.0 and b >= 0.0 and (a == 0.0 or b == 0.0)
    best = loss(a, b, ks, ys, prior)
    for da, db in [(1e-5, 0), (-1e-5, 0), (0, 1e-7), (0, -1e-7), (1e-5, -1e-7), (-1e-5, 1e-7)]:
        if a + da >= 0.0 and b + db >= 0.0:
            assert best <= loss(a + da, b + db, ks, ys, prior)


def choosing(overhead: OverheadModel) -> AdaptiveBudget:
    """A policy over a cheap flat forward (0.4 ms) whose acceptance keeps growing with the budget."""
    accept = AcceptanceModel(max_budget=32)
    accept.means = [3.0 * (1.0 - np.exp(-b / 8.0)) for b in range(33)]
    return AdaptiveBudget(CostModel(sizes=[1, 64], seconds=[0.4e-3, 0.4e-3]), max_budget=32, acceptance=accept,
                          overhead=overhead)


def test_a_steep_per_row_overhead_picks_a_smaller_budget_than_the_same_overhead_flat():
    ks = list(range(1, 34))
    steep = fed(OverheadModel(), ks, [0.1e-3 * k for k in ks])
    flat = fed(OverheadModel(), ks, [0.1e-3 * np.mean(ks)] * len(ks))  # the same seconds in all
    assert sum(steep.curve(np.array(ks))) == pytest.approx(sum(flat.curve(np.array(ks))), rel=1e-3)
    assert flat.line()[1] == 0.0
    steep_best, flat_best = choosing(steep).best(), choosing(flat).best()
    assert flat_best == 32  # a flat step: every accepted draft is free
    assert 0 < steep_best < flat_best / 2


def test_the_policy_learns_the_overhead_from_its_steps():
    policy = AdaptiveBudget(CostModel.flat(), max_budget=16, overhead=OverheadModel(slope_prior=0.0))
    for i in range(100):
        n = 1 + i % 17  # tree rows, the root included
        policy.observe(n - 1, chain(n), Acceptance((0,), (), 0), 1e-3, A + B * n)
    assert policy.overhead.line() == pytest.approx((A, B), rel=1e-9)
    assert AdaptiveBudget(CostModel.flat()).overhead is not AdaptiveBudget(CostModel.flat()).overhead


def test_the_chosen_budget_holds_between_choices():
    flat = fed(OverheadModel(), range(1, 34), [1e-3] * 33)
    policy = choosing(flat)
    policy.choose_every, policy.explore_every = 4, 1000
    first = policy.budget()
    fed(policy.overhead, range(1, 34), [1e-3 * k for k in range(1, 34)])  # now steep
    held = [policy.budget() for _ in range(3)]
    again = policy.budget()  # the fourth step since the choice: chosen anew
    assert first == 32 and held == [32, 32, 32]
    assert again == policy.best() < 32
