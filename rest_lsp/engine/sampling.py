"""The target distribution for sampling: temperature and top-p applied to logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rest_lsp.errors import DecodingError


@dataclass(frozen=True)
class SamplingParams:
    """Temperature (> 0) and nucleus mass of sampled decoding."""

    temperature: float
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise DecodingError(
                f"temperature={self.temperature} must be > 0 to sample (0 means greedy)",
                temperature=self.temperature,
            )
        if not 0 < self.top_p <= 1:
            raise DecodingError(f"top_p={self.top_p} must be in (0, 1]", top_p=self.top_p)


def probabilities(logits, params: SamplingParams) -> np.ndarray:
    """[n, vocab] float64 probabilities from [n, vocab] logits (a torch tensor)."""
    import torch

    scaled = logits.float() / params.temperature
    probs = torch.softmax(scaled, dim=-1).double().cpu().numpy()  # [n, vocab]
    if params.top_p < 1.0:
        probs = top_p_filter(probs, params.top_p)
    return probs


def top_p_filter(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest most-probable set whose mass reaches ``top_p`` (at least one token)."""
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=-1)
    before = np.cumsum(sorted_p, axis=-1) - sorted_p  # mass of strictly more probable tokens
    keep_sorted = before < top_p
    keep_sorted[..., 0] = True
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    out = np.where(keep, probs, 0.0)
    return out / out.sum(axis=-1, keepdims=True)


def restricted(probs: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """[vocab] ``probs`` renormalised over the ``allowed`` tokens only (all of them if none has mass)."""
    out = np.zeros_like(probs)
    out[allowed] = probs[allowed]
    total = out.sum()
    if total <= 0:
        out[allowed] = 1.0
        total = out.sum()
    return out / total
