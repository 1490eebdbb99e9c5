"""The target distribution for sampling: temperature and top-p applied to logits.

``sampling_table`` computes on the logits' own device what the sampled acceptance walk needs
(each child's probability, each node's bonus draw) and copies only that to the host: whole rows
[n, vocab] never leave an accelerator.  ``acceptance.table_from_probs`` is its host reference.
"""

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


def device_probabilities(logits, params: SamplingParams, first_allowed: np.ndarray | None = None):
    """[n, vocab] float32 probabilities on the logits' device: tempered, top-p filtered, and row 0
    restricted to ``first_allowed`` when given (token healing)."""
    import torch

    probs = torch.softmax(logits.float() / params.temperature, dim=-1)  # [n, vocab]
    if params.top_p < 1.0:
        # a stable descending sort: ties keep id order (the smaller id is kept first)
        sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of strictly more probable tokens
        keep_sorted = before < params.top_p
        keep_sorted[:, 0] = True
        keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
        probs = torch.where(keep, probs, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    if first_allowed is not None:
        allowed = torch.as_tensor(first_allowed, dtype=torch.long, device=probs.device)
        row = torch.zeros_like(probs[0])
        row[allowed] = probs[0, allowed]
        if not bool(row.sum() > 0):  # no mass on the allowed tokens: uniform over them
            row[allowed] = 1.0
        probs[0] = row / row.sum()
    return probs


def sampling_table(logits, params: SamplingParams, kids: np.ndarray, generator,
                   first_allowed: np.ndarray | None = None):
    """The acceptance walk's ``SamplingTable`` from logits [n, vocab], in one copy to the host.

    ``kids`` [n, C]: each node's children's tokens, -1 padding (``acceptance.child_tokens``);
    ``generator``: a torch generator on the logits' device (the bonus draws).
    """
    import torch

    from rest_lsp.engine.acceptance import SamplingTable

    probs = device_probabilities(logits, params, first_allowed)  # [n, vocab]
    index = torch.as_tensor(kids, device=probs.device)  # [n, C]
    valid = index >= 0
    safe = index.clamp(min=0)
    child_p = torch.where(valid, probs.gather(1, safe), 0.0)  # [n, C]
    # the residual after every child is rejected: the children's tokens zeroed (padding writes
    # back the value it read, so it changes nothing)
    residual = probs.scatter(1, safe, torch.where(valid, 0.0, probs.gather(1, safe)))
    left = residual.sum(dim=1, keepdim=True)  # [n, 1]
    weights = torch.where(left > 0, residual, probs)
    bonus = torch.multinomial(weights, 1, generator=generator)  # [n, 1]
    total = probs.sum(dim=1, keepdim=True)
    packed = torch.cat((child_p, total, bonus.to(child_p.dtype)), dim=1).double().cpu().numpy()
    c = child_p.shape[1]
    return SamplingTable(child_p=packed[:, :c], total=packed[:, c], bonus=packed[:, c + 1].astype(np.int64))


def torch_generator(rng: np.random.Generator, device) -> "object":
    """A torch generator on ``device`` seeded from ``rng`` (a seeded request stays reproducible)."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(1 << 62)))
    return gen
