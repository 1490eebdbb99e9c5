"""The draft budget: how many draft tokens to verify per step on this hardware.

Speed per step is (expected tokens per step) / (step time).  The step time is the measured cost
c(k) of verifying k = budget + 1 tree rows plus the step's overhead outside the model, learnt
online as a + b*k (drafting and building the tree grow with k); the expected tokens per step is
learnt online from the acceptance history.  Because the best-first cut is nested
(``draft_tree``), one step verified at budget B also tells what every budget b <= B would have
accepted: the accepted path nodes whose pick rank is <= b.  Larger budgets are explored now and
then.  Pure Python; the measuring of c(k) lives in ``cost``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rest_lsp.engine.acceptance import Acceptance
from rest_lsp.engine.draft_tree import DraftTree


class BudgetPolicy(Protocol):
    """Chooses the draft budget of the next step and learns from what happened."""

    def budget(self) -> int:
        """Draft tokens (tree nodes below the root) to ask for this step."""
        ...

    def observe(
        self, requested: int, tree: DraftTree, acceptance: Acceptance, forward_s: float, other_s: float
    ) -> None:
        """Learn from one verified step."""
        ...


@dataclass
class FixedBudget:
    """Always the same budget (config ``draft_budget > 0``, or 0 for plain greedy)."""

    value: int

    def budget(self) -> int:
        return self.value

    def observe(self, requested, tree, acceptance, forward_s, other_s) -> None:
        pass


def can_draft(policy: BudgetPolicy) -> bool:
    """Whether ``policy`` may ever ask for a draft (a fixed budget of 0, or an adaptive one capped
    at 0 by a forward that verifies one row only, never does)."""
    if isinstance(policy, FixedBudget):
        return policy.value > 0
    return getattr(policy, "max_budget", 1) > 0


@dataclass
class CostModel:
    """c(k): seconds one verification forward of k tree rows takes, piecewise linear in k."""

    #: measured row counts (ascending) and their seconds
    sizes: list[int]
    seconds: list[float]
    #: weight of a new online observation of a measured size
    learning_rate: float = 0.05
    #: the seconds as measured (before any online update): the curve's shape, which online
    #: updates of the sizes in use would bend (only those move)
    measured: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.measured:
            self.measured = list(self.seconds)

    def envelope(self) -> list[float]:
        """The measured seconds made non-decreasing in k: each the least of its own and every
        larger size's.  A tree of k rows costs at most what a larger one does (it could be padded
        to it), so a measured point above a larger one is noise: a measurement taken while the
        machine was busy, which the cache would otherwise keep (seen: c(2) = 1.26 s beside
        c(3) = 47 ms, so that budget 1 was never tried and never corrected)."""
        out = list(self.seconds)
        for i in range(len(out) - 2, -1, -1):
            out[i] = min(out[i], out[i + 1])
        return out

    def __call__(self, k: int) -> float:
        xs, ys = self.sizes, self.envelope()
        if k <= xs[0]:
            return ys[0]
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if k <= x1:
                return y0 + (y1 - y0) * (k - x0) / (x1 - x0)
        if len(xs) == 1:
            return ys[0]
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return ys[-1] + max(slope, 0.0) * (k - xs[-1])

    def curve(self, ks: np.ndarray) -> np.ndarray:
        """c(k) for many k at once (the same piecewise-linear curve as ``__call__``)."""
        return np.array([self(int(k)) for k in ks]) if len(self.sizes) < 2 else _interp(self, ks)

    def observe(self, k: int, seconds: float) -> None:
        """Move the measured point of size ``k``, if there is one, toward an observed time."""
        if k in self.sizes:
            i = self.sizes.index(k)
            self.seconds[i] += self.learning_rate * (seconds - self.seconds[i])

    def relative(self) -> dict[int, float]:
        """c(k) / c(1) for every measured k."""
        return {k: s / self.seconds[0] for k, s in zip(self.sizes, self.seconds)}

    def to_dict(self) -> dict:
        return {"sizes": list(self.sizes), "seconds": list(self.seconds)}

    @classmethod
    def from_dict(cls, data: dict) -> "CostModel":
        return cls(sizes=[int(k) for k in data["sizes"]], seconds=[float(s) for s in data["seconds"]])

    @classmethod
    def flat(cls) -> "CostModel":
        """A cost model where every size costs the same (an idealised GPU)."""
        return cls(sizes=[1, 64], seconds=[1.0, 1.0])


def _interp(cost: CostModel, ks: np.ndarray) -> np.ndarray:
    xs = np.asarray(cost.sizes, dtype=np.float64)
    ys = np.asarray(cost.envelope(), dtype=np.float64)
    out = np.interp(ks, xs, ys)
    slope = max((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), 0.0)
    beyond = ks > xs[-1]
    out[beyond] = ys[-1] + slope * (ks[beyond] - xs[-1])
    return out


def fit_line(
    w: float, wk: float, wkk: float, wy: float, wky: float, slope_prior: float = 0.0
) -> tuple[float, float]:
    """(a, b) >= 0 minimising sum w (y - a - b k)^2 + slope_prior b^2, from the weighted sums.

    The sums are of the weights w, and of w k, w k^2, w y, w k y.  No weight: (0, 0).  All
    observations at one k: their mean, flat.
    """
    if w <= 0.0:
        return 0.0, 0.0
    mean_k, mean_y = wk / w, wy / w
    spread = wkk - wk * mean_k  # sum w (k - mean k)^2
    if spread <= 1e-9 * wkk:  # one k (up to rounding, or long forgotten others): no slope to fit
        return max(mean_y, 0.0), 0.0
    covariance = wky - wk * mean_y  # sum w (k - mean k)(y - mean y)
    b = covariance / (spread + slope_prior)
    a = mean_y - b * mean_k
    if a >= 0.0 and b >= 0.0:
        return a, b
    # outside the quadrant the best fit inside lies on one of its edges: flat, or through 0
    flat = (max(mean_y, 0.0), 0.0)
    through_zero = (0.0, max(wky / (wkk + slope_prior), 0.0))

    def loss(ab: tuple[float, float]) -> float:  # the objective less its constant sum w y^2
        a, b = ab
        return a * a * w + 2 * a * b * wk + b * b * (wkk + slope_prior) - 2 * a * wy - 2 * b * wky

    return min(flat, through_zero, key=loss)


@dataclass
class OverheadModel:
    """overhead(k) = a + b*k: a step's seconds outside the verification forward of k tree rows.

    Fitted by exponentially weighted least squares to (rows, seconds) observations: drafting,
    building the tree and accepting grow with the tree, and where a forward is cheap (~0.4 ms on
    a GPU) that growth, not the forward, decides the best budget.
    """

    #: weight the past keeps at each new observation (~1 / (1 - forget) steps remembered)
    forget: float = 0.95
    #: squared-row spread, in observations, that holds the slope at 0 until the tree sizes seen
    #: differ: one exploration step must not set a slope that then outlives its own weight
    slope_prior: float = 1.0
    #: the weighted sums of 1, k, k^2, y, k*y
    w: float = 0.0
    wk: float = 0.0
    wkk: float = 0.0
    wy: float = 0.0
    wky: float = 0.0

    def observe(self, k: int, seconds: float) -> None:
        """Add one step of ``k`` rows that spent ``seconds`` outside the forward."""
        f = self.forget  # a step's hot loop: plain floats
        self.w = f * self.w + 1.0
        self.wk = f * self.wk + k
        self.wkk = f * self.wkk + k * k
        self.wy = f * self.wy + seconds
        self.wky = f * self.wky + k * seconds

    def line(self) -> tuple[float, float]:
        """(a, b): the intercept in seconds and the seconds per row."""
        return fit_line(self.w, self.wk, self.wkk, self.wy, self.wky, self.slope_prior)

    def __call__(self, k: int) -> float:
        """Seconds outside the forward expected for a step of ``k`` rows."""
        a, b = self.line()
        return a + b * k

    def curve(self, ks: np.ndarray) -> np.ndarray:
        """overhead(k) for many k at once."""
        a, b = self.line()
        return a + b * np.asarray(ks, dtype=np.float64)


def prior_accepted(budget: int) -> float:
    """A prior for expected accepted drafts at ``budget`` (shape of DESIGN 5b's oracle rows)."""
    return 0.0 if budget <= 0 else 0.3 + 0.13 * math.log2(budget)


@dataclass
class AcceptanceModel:
    """Online estimate of expected accepted drafts per step as a function of the budget."""

    max_budget: int
    #: weight of one new step in the running means (recent steps matter most)
    learning_rate: float = 0.05
    #: pseudo-steps the prior counts for
    prior_weight: float = 2.0
    means: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.means:
            self.means = [prior_accepted(b) for b in range(self.max_budget + 1)]
            self.weights = [self.prior_weight] * (self.max_budget + 1)

    def observe(self, requested: int, tree: DraftTree, acceptance: Acceptance) -> None:
        """Record what each budget b <= ``requested`` would have accepted in this step."""
        ranks = tree.ranks
        accepted_ranks = sorted(ranks[i] for i in acceptance.nodes[1:])
        n_accepted = len(accepted_ranks)
        means, weights, floor = self.means, self.weights, self.learning_rate  # a step's hot loop
        count = 0
        for b in range(1, min(requested, self.max_budget) + 1):
            while count < n_accepted and accepted_ranks[count] <= b:
                count += 1
            rate = max(1.0 / (weights[b] + 1.0), floor)
            means[b] += rate * (count - means[b])
            weights[b] += 1.0

    def expected_tokens(self, budget: int) -> float:
        """Expected tokens per step (accepted drafts + the bonus token) at ``budget``."""
        # accepting more can never hurt: keep the estimate monotone in the budget
        return 1.0 + max(self.means[: budget + 1])


@dataclass
class AdaptiveBudget:
    """Chooses the budget maximising expected tokens per second under the measured c(k)."""

    cost: CostModel
    max_budget: int = 64
    #: every this many steps, try twice the chosen budget to learn about larger trees
    explore_every: int = 8
    #: the same while the best budget is 0 (drafting does not pay): such a probe costs a whole
    #: tree for nothing where verification is steep (llama.cpp on 2 cores: c(3) ~ 2.3 c(1))
    idle_explore_every: int = 32
    acceptance: AcceptanceModel | None = None
    #: the step's seconds outside the forward, a + b*k for k tree rows
    overhead: OverheadModel = field(default_factory=OverheadModel)
    steps: int = 0
    #: steps between two choices of the best budget
    choose_every: int = 4
    #: drafting stays off, unexplored, while even drafts that were all accepted would make a step
    #: at most this much faster than one-token steps under the measured costs (``ceiling``):
    #: gains predicted that small were within the budget's own error (on the 2-core EPYC a
    #: predicted 1.03-1.14x at budget 2 was 0.97-1.0x of greedy measured, and its probes of a
    #: 3-row tree every 32nd step cost ~3 % of the decoding time for the tokens they gained)
    min_ceiling: float = 1.10
    #: the budget chosen last (re-chosen every ``choose_every`` steps)
    _chosen: int | None = field(default=None, init=False, repr=False)
    #: (what it was computed from, c(k) for k = 1 .. max_budget + 1): the cost model moves only
    #: when a step's tree has one of its measured sizes
    _curve: tuple | None = field(default=None, init=False, repr=False)
    #: c(k) for k = 1 .. max_budget + 1 on the curve as measured (it never moves)
    _measured_curve: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.acceptance is None:
            self.acceptance = AcceptanceModel(self.max_budget)

    def _step_seconds(self) -> np.ndarray:
        """[max_budget + 1] a step's expected seconds at budgets 0 .. max_budget (forward and overhead)."""
        ks = np.arange(1, self.max_budget + 2)  # rows of budgets 0 .. max_budget
        return self._forward_curve() + self.overhead.curve(ks)

    def ceiling(self) -> float:
        """The most drafting could speed a step up here: max over budgets b of (1 + b) tokens
        per step-seconds(b), over one token per step-seconds(0), as if every draft were accepted.

        On the c(k) curve as measured, not as updated online: while drafting is off only c(1) is
        observed, at the real contexts (longer than the measurement's), and the curve would seem
        to flatten; a longer context makes every row count dearer alike (``rest-lsp bench llama``
        at 700 tokens gives the start-up ratios)."""
        if self._measured_curve is None:
            self._measured_curve = CostModel(list(self.cost.sizes), list(self.cost.measured)).curve(
                np.arange(1, self.max_budget + 2))
        seconds = self._measured_curve + self.overhead.curve(np.arange(1, self.max_budget + 2))
        perfect = np.arange(1, len(seconds) + 1) / seconds
        return float(perfect.max() / perfect[0])

    def best(self) -> int:
        """The budget with the highest expected tokens per second right now."""
        seconds = self._step_seconds()  # [max_budget + 1]
        # monotone: a larger tree never accepts less
        accepted = np.maximum.accumulate(np.maximum(np.asarray(self.acceptance.means), 0.0))
        speed = (1.0 + accepted) / seconds[: len(accepted)]
        return int(np.argmax(speed))  # the first best: ties go to the smaller budget

    def _forward_curve(self) -> np.ndarray:
        """[max_budget + 1] c(k) for k = 1 .. max_budget + 1 rows, recomputed only when it moved."""
        key = (self.max_budget, tuple(self.cost.sizes), tuple(self.cost.seconds))
        if self._curve is None or self._curve[0] != key:
            self._curve = (key, self.cost.curve(np.arange(1, self.max_budget + 2)))
        return self._curve[1]

    def budget(self) -> int:
        # the means move by a few percent a step: choosing again every ``choose_every`` steps
        # saves most of the choice's cost (~0.07 ms a step on the CPU, caches cold after a forward)
        if self._chosen is None or self.steps % self.choose_every == 0:
            self._chosen = self.best() if self.ceiling() >= self.min_ceiling else -1
        b = self._chosen
        self.steps += 1
        if b < 0:  # drafting cannot pay here even at its best: no probes either
            return 0
        if self.steps % (self.explore_every if b > 0 else self.idle_explore_every) == 0:
            b = min(self.max_budget, max(2 * b, 4))
        return b

    def observe(self, requested, tree, acceptance, forward_s, other_s) -> None:
        self.acceptance.observe(requested, tree, acceptance)
        self.cost.observe(len(tree), forward_s)
        self.overhead.observe(len(tree), other_s)
