"""The model calls of the engine: prefill and one verification forward over a token tree.

Every decode step, plain greedy included, goes through ``verify_tree`` (a plain step is a
one-node tree), so greedy and speculative decoding share one numerics path.  The tree mask is a
bool mask [n, context + n]; the ``transformers`` path turns it into an additive float 4D mask
[1, 1, n, context + n]: transformers 5.24 passes a 4D mask through
``create_causal_mask`` untouched, and both its eager (adds the mask to the scores) and sdpa
(``attn_mask``) attention honour an additive mask, whereas eager would misread a boolean one.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

import numpy as np
import torch

from rest_lsp.engine import kv_cache
from rest_lsp.engine.packed_llama import PackedLlama
from rest_lsp.engine.static_forward import StaticLlama
from rest_lsp.engine.tree_inputs import TreeInputs
from rest_lsp.errors import ModelError

#: prompt tokens per prefill forward (bounds the mask and activation memory)
PREFILL_CHUNK = 512


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[1, 1, q, k] additive mask from a [q, k] bool mask: 0 where allowed, dtype min elsewhere."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def tree_allowed(ancestor_mask: np.ndarray, context_len: int, device: Any) -> torch.Tensor:
    """[n, context_len + n] bool: every node sees the whole context, itself and its ancestors."""
    n = ancestor_mask.shape[0]
    allowed = torch.ones((n, context_len + n), dtype=torch.bool, device=device)
    allowed[:, context_len:] = torch.as_tensor(ancestor_mask, device=device)
    return allowed


def causal_allowed(n: int, context_len: int, device: Any) -> torch.Tensor:
    """[n, context_len + n] bool: a causal chunk on top of ``context_len`` cached tokens."""
    allowed = torch.ones((n, context_len + n), dtype=torch.bool, device=device)
    allowed[:, context_len:] = torch.ones((n, n), dtype=torch.bool, device=device).tril()
    return allowed


@functools.lru_cache(maxsize=16)
def _takes_logits_to_keep(forward_type: type) -> bool:
    return "logits_to_keep" in inspect.signature(forward_type.forward).parameters


def model_forward(
    model: Any,
    cache: Any,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    allowed: torch.Tensor,
    logits: str = "all",
) -> torch.Tensor | None:
    """One forward of ``tokens`` [n] at ``positions`` [n] on top of ``cache``.

    ``allowed`` [n, context + n] bool says which rows each token attends to.  Returns logits
    [n, vocab] ("all"), [1, vocab] ("last"), None ("none": prefill, where the packed forward
    skips the LM head), the final-norm hidden states [n, hidden] ("hidden": what the LM head
    reads; the dense drafter's query and key) or both from the one forward ("both": a tuple).
    """
    if isinstance(model, PackedLlama):
        return model.forward(cache, tokens, positions, allowed, logits)
    if getattr(model, "own_attention", False):
        raise no_hidden_states(model)
    kwargs: dict[str, Any] = {kv_cache.cache_kwarg(model): cache}
    if logits in ("last", "none") and _takes_logits_to_keep(type(model)):
        kwargs["logits_to_keep"] = 1
    with torch.inference_mode():
        out = model(
            input_ids=tokens[None],  # [1, n]
            attention_mask=additive_mask(allowed, model_dtype(model)),  # [1, 1, n, context + n]
            position_ids=positions[None],  # [1, n]
            use_cache=True,
            output_hidden_states=logits in ("hidden", "both"),
            **kwargs,
        )
    if logits == "hidden":
        return out.hidden_states[-1][0]  # [n, hidden]: transformers appends it after the final norm
    if logits == "both":
        return out.logits[0], out.hidden_states[-1][0]  # [n, vocab], [n, hidden]
    return None if logits == "none" else out.logits[0]  # [n, vocab] (or [1, vocab])


def no_hidden_states(model: Any) -> ModelError:
    """The error of asking a runner that does its own attention (llama.cpp) for masked forwards or
    hidden states: it takes draft trees and chains only."""
    return ModelError(f"{model!r} gives no hidden states (dense drafts need a torch forward: "
                      "model.forward = packed)", forward=repr(model))


def model_dtype(model: Any) -> torch.dtype:
    """The dtype the model computes in (its first floating parameter's)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_device(model: Any) -> torch.device:
    """The device of the model's parameters (a runner without parameters names its own)."""
    if getattr(model, "own_attention", False):
        return model.device
    return next(model.parameters()).device


def prefill(model: Any, cache: Any, token_ids: Sequence[int], chunk: int = PREFILL_CHUNK) -> None:
    """Append ``token_ids`` to the cache (causally, in chunks); no logits are needed."""
    if getattr(model, "own_attention", False):
        model.prefill(cache, token_ids)
        return
    device = model_device(model)
    ids = torch.as_tensor(list(token_ids), dtype=torch.long, device=device)
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        past = kv_cache.cache_length(cache)
        positions = torch.arange(past, past + len(part), device=device)
        model_forward(model, cache, part, positions, causal_allowed(len(part), past, device), logits="none")


def verify_tree(model: Any, cache: Any, inputs: TreeInputs, hidden: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Logits [n, vocab] of every tree node; the cache grows by the n tree rows.

    ``hidden``: also return the final-norm hidden states [n, hidden] (the same forward: the
    logits are the LM head applied to them).  The static forward pads the tree to a fixed row
    count and runs it at fixed shapes (a CUDA graph on CUDA).
    """
    if isinstance(model, StaticLlama):
        return model.verify_tree(cache, inputs, hidden)
    if getattr(model, "own_attention", False):
        if hidden:
            raise no_hidden_states(model)
        return model.verify_tree(cache, inputs)  # [n, vocab]
    device = model_device(model)
    past = kv_cache.cache_length(cache)
    tokens = torch.as_tensor(inputs.tokens, device=device)  # [n]
    positions = torch.as_tensor(inputs.position_ids(past), device=device)  # [n]
    allowed = tree_allowed(inputs.ancestor_mask, past, device)  # [n, past + n]
    return model_forward(model, cache, tokens, positions, allowed, logits="both" if hidden else "all")


def hidden_states(model: Any, token_ids: Sequence[int], chunk: int = 256, overlap: int = 64,
                  guard: Any = None) -> torch.Tensor:
    """Final-norm hidden states [n, hidden] of a token sequence, causal, on fresh caches.

    Long sequences go in windows of ``chunk`` tokens; each window after the first re-reads the
    ``overlap`` tokens before it, so that every position sees at least ``overlap`` tokens of
    context and no position is further than ``chunk`` from its window's start (the positions a
    model was trained on).  ``guard``: a lock held around each window's forward (a background
    embedding then delays a completion by one window at most).
    """
    import contextlib

    device = model_device(model)
    ids = torch.as_tensor(list(token_ids), dtype=torch.long, device=device)
    out = []
    start = 0
    while start < len(ids):
        left = max(0, start - overlap)
        part = ids[left:start + chunk - (start - left)]
        with guard if guard is not None else contextlib.nullcontext():
            cache = kv_cache.new_cache(model)
            positions = torch.arange(len(part), device=device)
            states = model_forward(model, cache, part, positions, causal_allowed(len(part), 0, device), logits="hidden")
        out.append(states[start - left:])  # [new rows, hidden]
        start = left + len(part)
    return torch.cat(out) if out else torch.zeros((0, 0))
