"""The KV-cache wrapper: crop and keep-accepted-rows on transformers' DynamicCache."""

from __future__ import annotations

import pytest
import torch

from rest_lsp.engine import kv_cache


def filled(n_layers=2, length=10):
    cache = kv_cache.new_cache()
    for layer in range(n_layers):
        # [batch, kv_heads, seq, head_dim]; row i of layer l holds the value 100 * l + i
        rows = torch.arange(length, dtype=torch.float32) + 100 * layer
        k = rows[None, None, :, None].expand(1, 2, length, 4).clone()
        cache.update(k, -k, layer)
    return cache


def rows_of(cache, layer=0):
    return cache.layers[layer].keys[0, 0, :, 0].tolist()


def test_crop_keeps_a_prefix():
    cache = filled()
    kv_cache.crop(cache, 6)
    assert kv_cache.cache_length(cache) == 6 and rows_of(cache) == [0, 1, 2, 3, 4, 5]
    kv_cache.crop(cache, 6)
    assert kv_cache.cache_length(cache) == 6
    with pytest.raises(ValueError):
        kv_cache.crop(cache, 7)


def test_keep_rows_gathers_accepted_tree_nodes_into_place():
    cache = filled()
    # context of 4 tokens, then a 6-node tree; nodes 0, 2, 5 were accepted
    kv_cache.keep_rows(cache, 4, [0, 2, 5])
    assert rows_of(cache, 0) == [0, 1, 2, 3, 4, 6, 9]
    assert rows_of(cache, 1) == [100, 101, 102, 103, 104, 106, 109]
    assert cache.layers[1].values[0, 1, :, 2].tolist() == [-100, -101, -102, -103, -104, -106, -109]


def test_keep_rows_of_a_chain_only_crops():
    cache = filled()
    kv_cache.keep_rows(cache, 4, [0, 1, 2])
    assert rows_of(cache) == [0, 1, 2, 3, 4, 5, 6]
    kv_cache.keep_rows(cache, 7, [])
    assert kv_cache.cache_length(cache) == 7


def test_cache_kwarg_of_this_transformers():
    from transformers import LlamaForCausalLM

    assert kv_cache.cache_kwarg(LlamaForCausalLM.__new__(LlamaForCausalLM)) in ("cache", "past_key_values")
