"""Nearest-rank quantiles of a benchmark's measurements."""

from __future__ import annotations

from typing import Sequence


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank; 0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms_at(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of seconds ``values``, in ms to 0.1; None for none."""
    return round(nearest_rank(values, q) * 1000, 1) if values else None
