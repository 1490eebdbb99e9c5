"""Pure tests of the drafter gate: asked while its exclusive accepted tokens pay for its time."""

from __future__ import annotations

from rest_lsp.engine.drafter import Candidate, MergedDrafter
from rest_lsp.engine.source_weights import source_credit
from rest_lsp.engine.gate import GatedDrafter
from rest_lsp.engine.drafter import Drafter


def c(tokens, source="corpus"):
    return Candidate(tuple(tokens), 1.0, source, 2)


class Fixed(Drafter):
    """A drafter that always proposes the same candidates (and counts how often it was asked)."""

    def __init__(self, tokens, source):
        self.candidates = [c(tokens, source)]
        self.asked = 0

    def draft(self, context_ids):
        self.asked += 1
        return list(self.candidates)


def simulate(gate, other, drafts, steps=400, step_s=0.010, tokens=3):
    """Run ``steps`` steps of a merged drafter, accepting ``drafts`` each time."""
    merged = MergedDrafter([other, gate])
    for _ in range(steps):
        merged.step_done(source_credit(merged.draft([1]), drafts), step_s, tokens)


def test_a_redundant_drafter_is_asked_only_to_explore():
    # everything it proposes another source proposes too: no exclusive gain, so after the
    # warm-up it is asked every explore_every-th step only
    inner = Fixed([5, 6, 7], "corpus")
    gate = GatedDrafter(inner, explore_every=8, warmup=16)
    simulate(gate, Fixed([5, 6, 7], "context"), (5, 6, 7))
    assert gate.gain < 0.01
    assert inner.asked <= 16 + 400 // 8 + 1


def test_a_drafter_whose_tokens_pay_is_always_asked():
    # 2 exclusive tokens a step at ~3.3 ms a token far outweigh a call of microseconds: asked
    # at every step but the probes that leave it out (every 32nd after the warm-up)
    inner = Fixed([5, 6, 7], "corpus")
    gate = GatedDrafter(inner)
    simulate(gate, Fixed([5, 9], "context"), (5, 6, 7))
    assert inner.asked == 400 - len(range(31, 401, 32))
    assert abs(gate.gain - 2.0) < 1e-9


def test_a_closed_gate_reopens_when_the_drafter_starts_to_pay():
    inner = Fixed([5, 6, 7], "corpus")
    other = Fixed([5, 6, 7], "context")
    gate = GatedDrafter(inner, explore_every=4, warmup=4, probe_every=10**6)  # no probes here
    simulate(gate, other, (5, 6, 7), steps=200)
    asked = inner.asked
    simulate(gate, other, (5, 6, 7), steps=40)
    assert inner.asked - asked == 10  # shut but for every 4th step
    other.candidates = [c([9], "context")]  # the other source stops proposing the accepted text
    simulate(gate, other, (5, 6, 7), steps=400)
    asked = inner.asked
    simulate(gate, other, (5, 6, 7), steps=40)
    assert inner.asked - asked == 40  # open again: explorations saw its gain come back


def test_the_wrapped_drafters_other_surface_is_reachable():
    inner = Fixed([1], "corpus")
    inner.store = "the store"
    gate = GatedDrafter(inner)
    assert gate.store == "the store"
    assert getattr(gate, "wants_hidden", False) is False
    assert gate.stats()["calls"] == 0


def test_downstream_cost_counts_against_the_drafter():
    # its own call costs microseconds, but the steps that ask it spend 2 ms more outside the
    # forward than those that do not (seen on the probe steps that leave it out): more than its
    # 0.5 exclusive tokens x ~3.3 ms a token are worth, so it is shut but for explorations
    inner = Fixed([5, 6, 7], "corpus")
    gate = GatedDrafter(inner, explore_every=4, warmup=4, probe_every=16)
    merged = MergedDrafter([Fixed([5, 6], "context"), gate])
    for step in range(400):
        credit = source_credit(merged.draft([1]), (5, 6, 7))
        asked = gate._mine is not None
        # exclusive gain 1 token every other step it is asked: mean 0.5
        if asked and step % 2:
            credit["corpus"] = 2
        merged.step_done(credit, 0.010, 3, 0.003 if asked else 0.001)
    assert abs(gate.full_cost() - 0.002) < 1e-4
    asked = inner.asked
    for _ in range(40):
        merged.step_done(source_credit(merged.draft([1]), (5, 6, 7)), 0.010, 3, 0.001)
    assert inner.asked - asked == 10  # shut but for every 4th step
