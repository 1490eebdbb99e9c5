"""Every KV-cache call of the engine, in one place (the transformers cache API keeps changing).

transformers 5.24: ``DynamicCache()`` holds one ``DynamicLayer`` per decoder layer with
``keys``/``values`` of shape [batch, kv_heads, seq, head_dim]; ``crop(n)`` takes only a negative
``n`` (tokens to remove; earlier versions took the length to keep); models take the cache as the
``cache=`` keyword (``past_key_values=`` before).  The cache is built without the model config on
purpose: the engine passes its own full 4D mask, so every layer must keep every row.
The packed forward's ``StaticCache`` and llama.cpp's ``LlamaCppCache`` have the same four
operations as methods.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

import torch

from rest_lsp.engine.llama_cpp_runner import LlamaCppCache
from rest_lsp.engine.packed_llama import StaticCache

#: caches that keep their own rows (a length, ``crop`` and ``keep_rows`` of their own)
OWN_CACHES = (StaticCache, LlamaCppCache)


def new_cache(model: Any = None) -> Any:
    """An empty cache for ``model``: its own static cache if it has one, else a ``DynamicCache``."""
    if model is not None and hasattr(model, "new_cache"):
        return model.new_cache()
    from transformers import DynamicCache

    return DynamicCache()


def cache_length(cache: Any) -> int:
    """Tokens held in the cache."""
    if isinstance(cache, OWN_CACHES):
        return cache.length
    return int(cache.get_seq_length()) if cache is not None else 0


def crop(cache: Any, length: int) -> None:
    """Keep only the first ``length`` tokens of the cache."""
    if isinstance(cache, OWN_CACHES):
        cache.crop(length)
        return
    remove = cache_length(cache) - length
    if remove < 0:
        raise ValueError(f"cannot crop a cache of {cache_length(cache)} tokens to {length}")
    if remove:
        cache.crop(-remove)


def keep_rows(cache: Any, start: int, rows: Sequence[int]) -> None:
    """Keep rows ``start + rows[i]`` at ``start + i`` and drop everything after them.

    ``rows`` are the accepted tree nodes (increasing); a straight chain from row 0 needs no copy.
    """
    if isinstance(cache, OWN_CACHES):
        cache.keep_rows(start, rows)
        return
    rows = list(rows)
    if rows != list(range(len(rows))):
        index = torch.as_tensor([start + r for r in rows], dtype=torch.long)
        with torch.inference_mode():  # the cache tensors are inference tensors
            _gather_rows(cache, start, index)
    crop(cache, start + len(rows))


def _gather_rows(cache: Any, start: int, index: torch.Tensor) -> None:
    """Copy rows ``index`` of every layer to ``start, start + 1, ...``."""
    n = len(index)
    for layer in cache.layers:
        if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
            continue
        index = index.to(layer.keys.device)
        # [batch, kv_heads, n, head_dim]: the gather copies, so overlapping rows are safe
        layer.keys[..., start : start + n, :] = layer.keys.index_select(-2, index)
        layer.values[..., start : start + n, :] = layer.values.index_select(-2, index)


def cache_kwarg(model: Any) -> str:
    """The keyword under which ``model.forward`` takes the cache in this transformers version."""
    return _cache_kwarg_of(type(model))


@functools.lru_cache(maxsize=16)
def _cache_kwarg_of(model_type: type) -> str:
    params = inspect.signature(model_type.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
