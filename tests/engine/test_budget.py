"""The adaptive draft budget: cost curve, acceptance estimates, choice; c(k) measured for real."""

from __future__ import annotations

import pytest

from engine_testing import single_thread, tiny_model  # noqa: F401
from rest_lsp.config.schema import DecodingConfig
from rest_lsp.engine.acceptance import Acceptance
from rest_lsp.engine.budget import AcceptanceModel, AdaptiveBudget, CostModel, FixedBudget
from rest_lsp.engine.cost import cached_cost, measure_cost
from rest_lsp.engine.draft_tree import DraftTree
from rest_lsp.engine.engine import Engine


def chain(ranks):
    n = len(ranks)
    return DraftTree(tuple(range(n)), (-1,) + tuple(range(n - 1)), tuple(range(n)), tuple(ranks), (0.0,) * n)


def test_cost_model_interpolates_and_extrapolates():
    cost = CostModel(sizes=[1, 2, 8], seconds=[1.0, 2.0, 2.6])
    assert cost(1) == 1.0 and cost(2) == 2.0
    assert abs(cost(5) - 2.3) < 1e-9
    assert abs(cost(14) - 3.2) < 1e-9
    assert CostModel.from_dict(cost.to_dict()).seconds == cost.seconds


def test_acceptance_model_learns_what_smaller_budgets_would_have_accepted():
    model = AcceptanceModel(max_budget=8, learning_rate=1.0, prior_weight=0.0)
    # tree picked ranks 1, 2, 5 along the accepted path (other nodes elsewhere)
    tree = chain([0, 1, 2, 5])
    model.observe(6, tree, Acceptance(nodes=(0, 1, 2, 3), drafts=(1, 2, 3), bonus=0))
    assert model.means[:7] == [0.0, 1, 2, 2, 2, 3, 3]
    assert model.means[7] > 0  # untouched (prior), b > requested is unknown
    assert model.expected_tokens(6) == 4.0


def test_adaptive_budget_follows_the_hardware():
    accept = AcceptanceModel(max_budget=64)
    for _ in range(50):  # every step, the first 6 picks are accepted
        accept.observe(64, chain(list(range(65))), Acceptance(tuple(range(7)), tuple(range(6)), 0))
    flat = AdaptiveBudget(CostModel.flat(), max_budget=64, acceptance=accept)
    steep = AdaptiveBudget(CostModel(sizes=[1, 2, 8, 64], seconds=[1.0, 1.9, 2.5, 6.0]), max_budget=64,
                           acceptance=accept)
    assert steep.best() == 6  # the first useful draft costs 0.9 of a step but brings 6 tokens
    assert 6 <= flat.best()
    # when nothing is ever accepted, drafting is not worth paying for on a steep curve
    none = AcceptanceModel(max_budget=16)
    for _ in range(200):
        none.observe(16, chain(list(range(17))), Acceptance((0,), (), 0))
    assert AdaptiveBudget(CostModel(sizes=[1, 2], seconds=[1.0, 1.5]), 16, acceptance=none).best() == 0


def test_fixed_budget():
    assert FixedBudget(7).budget() == 7


def test_measured_cost_through_the_real_verification_forward(tmp_path):
    model = tiny_model("llama", "sdpa")
    cost = measure_cost(model, sizes=(1, 4, 16), context_len=32, repeats=1)
    assert cost.sizes == [1, 4, 16] and all(s > 0 for s in cost.seconds)
    first = cached_cost(model, tmp_path, sizes=(1, 2), context_len=16, repeats=1)
    again = cached_cost(model, tmp_path, sizes=(1, 2), context_len=16, repeats=1)
    assert first.seconds == again.seconds and len(list(tmp_path.iterdir())) == 1


def test_engine_with_adaptive_budget_stays_exact(tmp_path):
    from engine_testing import reference_greedy

    model = tiny_model("qwen2", "sdpa", seed=9)
    prompt = [3, 4, 5, 6] * 5
    engine = Engine(model, DecodingConfig(draft_budget=0, max_draft_budget=16), eos_ids=(),
                    cost=CostModel(sizes=[1, 2, 16], seconds=[1.0, 1.2, 2.0]))
    gen = engine.complete(prompt, 30)
    assert list(gen.tokens) == reference_greedy(model, prompt, 30)
    assert len(set(gen.stats.budgets)) >= 1


def test_warm_up_measures_the_cost_once(tmp_path, monkeypatch):
    from rest_lsp.engine import cost as cost_module

    monkeypatch.setattr(cost_module, "default_cache_dir", lambda: tmp_path)
    model = tiny_model("llama", "sdpa")
    engine = Engine(model, DecodingConfig(draft_budget=0), eos_ids=())
    engine.warm_up()
    assert isinstance(engine.policy(), AdaptiveBudget) and len(list(tmp_path.iterdir())) == 1
    assert engine.complete([1, 2, 3], 2).stats.reused_tokens == 0


def test_a_noisy_cached_point_above_a_larger_size_is_not_believed():
    """A c(2) measured while the machine was busy (1.26 s beside c(3) = 47 ms) would keep budget 1
    from ever being tried, so never corrected: the curve is non-decreasing in k."""
    import numpy as np

    from rest_lsp.engine.budget import AdaptiveBudget, CostModel

    cost = CostModel(sizes=[1, 2, 3], seconds=[0.030, 1.255, 0.047])
    assert cost.envelope() == [0.030, 0.047, 0.047]
    assert cost(2) == 0.047 and cost(3) == 0.047
    assert np.allclose(cost.curve(np.array([1, 2, 3])), [0.030, 0.047, 0.047])
    assert cost.seconds[1] == 1.255  # the measured points themselves are kept (online updates move them)
    policy = AdaptiveBudget(cost, max_budget=2)
    policy.acceptance.means = [0.0, 0.9, 0.9]  # one draft is accepted 90% of the time
    assert policy.best() == 1  # 1.9 tokens for 47 ms beats 1 token for 30 ms
    # where no larger size contradicts it, a high point is believed: budget 1 is not chosen
    steep = AdaptiveBudget(CostModel([1, 2], [0.030, 2.0]), max_budget=1)
    steep.acceptance.means = [0.0, 0.9]
    assert steep.best() == 0


def test_drafting_stays_off_unexplored_where_even_perfect_drafts_could_not_pay():
    """The EPYC's llama.cpp curve (c(2) ~ 2.3 c(1), c(3) ~ 2.9 c(1)): three tokens a step at best
    for 2.9 steps' time, a gain of ~3 %, under the margin: budget 0 and no probes."""
    from rest_lsp.engine.budget import AdaptiveBudget, CostModel

    steep = AdaptiveBudget(CostModel([1, 2, 3], [0.0186, 0.0427, 0.0541]), max_budget=2)
    steep.acceptance.means = [0.0, 1.0, 1.98]  # drafts nearly always accepted
    assert steep.ceiling() == pytest.approx(3 * 0.0186 / 0.0541)
    assert steep.best() == 2  # the means alone would draft (a predicted ~3 % gain)...
    assert [steep.budget() for _ in range(100)] == [0] * 100  # ...the ceiling keeps it off, probes too
    # one-token steps learnt dearer online (longer contexts than the measurement's) do not make
    # the curve look flatter: the ceiling reads the curve as measured
    for _ in range(200):
        steep.cost.observe(1, 0.025)
    assert steep.cost(1) == pytest.approx(0.025, rel=0.01)
    assert steep.ceiling() == pytest.approx(3 * 0.0186 / 0.0541)
    assert [steep.budget() for _ in range(8)] == [0] * 8
    # the Xeon's flatter curve (c(2) 1.19, c(3) 1.33 c(1)) leaves the budget free, probes included
    flat = AdaptiveBudget(CostModel([1, 2, 3], [0.0365, 0.0434, 0.0485]), max_budget=2)
    flat.acceptance.means = [0.0, 0.0, 0.0]
    assert flat.ceiling() > 2 and flat.best() == 0
    assert any(b > 0 for b in (flat.budget() for _ in range(64)))  # idle probes still run


def test_a_policy_that_can_never_draft_leaves_the_drafter_unasked():
    from rest_lsp.engine.budget import can_draft
    from rest_lsp.engine.drafter import ContextSuffixDrafter

    assert not can_draft(FixedBudget(0)) and can_draft(FixedBudget(2))
    assert not can_draft(AdaptiveBudget(CostModel.flat(), max_budget=0))
    assert can_draft(AdaptiveBudget(CostModel.flat(), max_budget=2))

    class Spy(ContextSuffixDrafter):
        asked = 0

        def draft(self, context):
            Spy.asked += 1
            return super().draft(context)

    model = tiny_model("llama", "sdpa")
    prompt = [3, 4, 5, 6] * 5
    engine = Engine(model, DecodingConfig(draft_budget=0, max_draft_budget=0), Spy(), eos_ids=(),
                    cost=CostModel(sizes=[1, 2], seconds=[1.0, 1.0]))
    capped = engine.complete(prompt, 12)  # the adaptive budget capped at 0: greedy's loop
    assert Spy.asked == 0 and capped.stats.budgets == [0] * 12
    assert list(capped.tokens) == list(engine.complete(prompt, 12, mode="greedy").tokens)
    engine.complete(prompt, 12, budget=2)  # a fixed budget above 0 asks it
    assert Spy.asked > 0
