"""The packed forward: same function as transformers', its static cache, and when it is chosen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_testing import VOCAB, single_thread, tiny_model  # noqa: F401
from rest_lsp.engine import kv_cache
from rest_lsp.engine.engine import Engine
from rest_lsp.engine.forward import prefill, verify_tree
from rest_lsp.engine.model import choose_forward
from rest_lsp.engine.packed_llama import SUPPORTED_TYPES, PackedLlama, StaticCache, supports
from rest_lsp.engine.tree_inputs import TreeInputs
from rest_lsp.errors import ModelError


def a_tree() -> TreeInputs:
    """Root with two children, the first with one child: 4 nodes, depths 0 1 1 2."""
    parents = np.array([-1, 0, 0, 1])
    mask = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 1]], dtype=bool)
    return TreeInputs(tokens=np.array([5, 9, 11, 7]), depths=np.array([0, 1, 1, 2]), parents=parents,
                      ancestor_mask=mask, child_of={(0, 9): 1, (0, 11): 2, (1, 7): 3})


@pytest.mark.parametrize("arch", SUPPORTED_TYPES)
def test_packed_tree_logits_equal_transformers(arch):
    hf = tiny_model(arch, "sdpa", seed=3)
    packed = PackedLlama(hf)
    prompt = [(7 * i + 1) % VOCAB for i in range(30)]
    logits = []
    for model in (hf, packed):
        cache = kv_cache.new_cache(model)
        prefill(model, cache, prompt)
        logits.append(verify_tree(model, cache, a_tree()))
        assert kv_cache.cache_length(cache) == len(prompt) + 4
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-4, atol=1e-4)


def test_packed_weights_are_packed_on_cpu_fp32():
    assert PackedLlama(tiny_model("llama")).packed
    assert not PackedLlama(tiny_model("llama"), pack=False).packed


def test_unpacked_forward_gives_the_same_logits():
    hf = tiny_model("qwen2", seed=5)
    out = []
    for model in (PackedLlama(hf, pack=True), PackedLlama(hf, pack=False)):
        cache = model.new_cache()
        prefill(model, cache, list(range(1, 20)))
        out.append(verify_tree(model, cache, a_tree()))
    torch.testing.assert_close(out[0], out[1], rtol=1e-4, atol=1e-4)


def test_static_cache_grows_past_its_capacity():
    hf = tiny_model("llama", seed=1)
    packed = PackedLlama(hf)
    prompt = [(3 * i + 2) % VOCAB for i in range(50)]
    small = packed.new_cache(capacity=4)
    prefill(packed, small, prompt, chunk=7)
    big = packed.new_cache()
    prefill(packed, big, prompt)
    assert small.length == big.length == 50 and small.capacity >= 50
    torch.testing.assert_close(small.keys[:, :, :50], big.keys[:, :, :50])
    torch.testing.assert_close(verify_tree(packed, small, a_tree()), verify_tree(packed, big, a_tree()))
    for cache in (small, big):  # the grown tensors were made inside a forward (inference tensors)
        kv_cache.keep_rows(cache, 50, [0, 2])
        assert kv_cache.cache_length(cache) == 52
    torch.testing.assert_close(small.keys[:, :, :52], big.keys[:, :, :52])


def filled_static(length=10) -> StaticCache:
    cache = StaticCache(layers=2, kv_heads=2, head_dim=4, dtype=torch.float32, device="cpu", capacity=16)
    for layer in range(2):
        rows = torch.arange(length, dtype=torch.float32) + 100 * layer
        cache.keys[layer, :, :length] = rows[None, :, None]
        cache.values[layer, :, :length] = -rows[None, :, None]
    cache.length = length
    return cache


def test_static_cache_crop_and_keep_rows():
    cache = filled_static()
    kv_cache.keep_rows(cache, 4, [0, 2, 5])
    assert kv_cache.cache_length(cache) == 7
    assert cache.keys[0, 0, :7, 0].tolist() == [0, 1, 2, 3, 4, 6, 9]
    assert cache.values[1, 1, :7, 2].tolist() == [-100, -101, -102, -103, -104, -106, -109]
    kv_cache.keep_rows(cache, 5, [0, 1])
    assert kv_cache.cache_length(cache) == 7
    kv_cache.crop(cache, 3)
    assert kv_cache.cache_length(cache) == 3
    with pytest.raises(ValueError):
        kv_cache.crop(cache, 4)


def test_kv_reuse_with_the_packed_forward_equals_a_cold_start():
    packed = PackedLlama(tiny_model("llama", seed=2))
    base = [(5 * i + 3) % VOCAB for i in range(40)]
    edited = base[:30] + [17] + base[31:]
    warm = Engine(packed, eos_ids=())
    warm.complete(base, 8, mode="greedy")
    second = warm.complete(edited, 12, mode="rest")
    cold = Engine(PackedLlama(tiny_model("llama", seed=2)), eos_ids=()).complete(edited, 12, mode="greedy")
    assert second.stats.reused_tokens == 30
    assert second.tokens == cold.tokens


def test_choose_forward():
    llama = tiny_model("llama")
    runner, name, why = choose_forward(llama, "auto")
    assert isinstance(runner, PackedLlama) and name == "packed" and "float32" in why
    assert choose_forward(llama, "transformers")[0] is llama
    gemma = tiny_model("gemma")
    runner, name, why = choose_forward(gemma, "auto")
    assert runner is gemma and name == "transformers" and "gemma" in why
    with pytest.raises(ModelError, match="gemma"):
        choose_forward(gemma, "packed")
    half = tiny_model("llama").to(torch.bfloat16)
    runner, name, why = choose_forward(half, "auto")
    assert runner is half and "bfloat16" in why
    assert isinstance(choose_forward(half, "packed")[0], PackedLlama)  # forced: runs unpacked


def test_supports_names_what_is_missing():
    assert supports(tiny_model("phi3"))[0] is False
    assert supports(tiny_model("llama", hidden_act="gelu")) == (False, "hidden_act 'gelu' is not silu")


def test_cost_benchmark_measures_every_forward():
    from rest_lsp.bench import cost as cost_bench

    lines = []
    results = cost_bench.run({"tiny": lambda: tiny_model("qwen2")}, ["packed", "unpacked", "transformers"],
                             context_len=16, repeats=1, say=lines.append)
    forwards = results["tiny"]["forwards"]
    assert set(forwards) == {"packed", "unpacked", "transformers"}
    for rows in forwards.values():
        assert list(rows["ms"]) == list(cost_bench.SIZES) and rows["relative"][1] == 1.0
    table = cost_bench.table(results)
    assert table.count("| tiny |") == 3 and "c(64)" in table
    gemma = cost_bench.run({"g": lambda: tiny_model("gemma")}, ["packed", "transformers"], 16, 1, say=lines.append)
    assert set(gemma["g"]["forwards"]) == {"transformers"}  # no packed forward for Gemma
