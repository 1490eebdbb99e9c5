"""The static forward (fixed row buckets, whole-capacity attention; CUDA graphs on CUDA), run on
the CPU: its arithmetic is the function the graphs replay."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from engine_testing import VOCAB, ScriptedDrafter, tree_of_parents, reference_greedy, single_thread, tiny_model  # noqa: F401
from rest_lsp.engine import kv_cache
from rest_lsp.engine.budget import FixedBudget
from rest_lsp.engine.engine import Engine
from rest_lsp.engine.forward import prefill, verify_tree
from rest_lsp.engine.model import choose_forward
from rest_lsp.engine.packed_llama import SUPPORTED_TYPES, PackedLlama
from rest_lsp.engine.row_buckets import bucket_for, pack_step, packed_size, unpack_step
from rest_lsp.engine.static_forward import StaticLlama, buckets_from_env
from rest_lsp.errors import ModelError


# -- row buckets (pure) ---------------------------------------------------------------------------

def test_bucket_for_takes_the_smallest_that_holds():
    assert bucket_for(1, (1, 4, 16)) == 1
    assert bucket_for(3, (16, 1, 4)) == 4
    assert bucket_for(16, (1, 4, 16)) == 16
    with pytest.raises(ValueError, match="17 rows"):
        bucket_for(17, (1, 4, 16))


def test_pack_step_round_trip_and_padding():
    inputs = tree_of_parents()
    buf = pack_step(inputs, past=30, bucket=6)
    assert buf.shape == (packed_size(6),) and buf.dtype == np.int64
    tokens, positions, past, mask = unpack_step(buf, 6)
    assert tokens.tolist() == [5, 9, 11, 7, 0, 0]
    assert positions.tolist() == [30, 31, 31, 32, 30, 30]
    assert past == 30
    assert (mask[:4, :4] == inputs.ancestor_mask).all()
    assert not mask[:4, 4:].any() and not mask[4:, :4].any()  # real rows never see padding
    assert mask[4, 4] and mask[5, 5] and not mask[4, 5]  # padding sees itself only
    reused = np.full(packed_size(6), 99, dtype=np.int64)
    assert (pack_step(inputs, 30, 6, out=reused) == buf).all()  # a dirty buffer is fully rewritten
    with pytest.raises(ValueError):
        pack_step(inputs, 30, 3)


def test_buckets_from_env():
    assert buckets_from_env({}) == (64,)
    assert buckets_from_env({"REST_LSP_ROW_BUCKETS": "16, 1,4,4"}) == (1, 4, 16)


# -- the forward ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", SUPPORTED_TYPES)
def test_static_tree_logits_equal_the_packed_forward(arch):
    hf = tiny_model(arch, "sdpa", seed=3)
    prompt = [(7 * i + 1) % VOCAB for i in range(30)]
    out = []
    for model in (PackedLlama(hf, pack=False), StaticLlama(hf, buckets=(8,), capacity=64)):
        cache = kv_cache.new_cache(model)
        prefill(model, cache, prompt)
        logits, states = verify_tree(model, cache, tree_of_parents(), hidden=True)
        assert logits.shape == (4, VOCAB) and states.shape == (4, 64)
        assert kv_cache.cache_length(cache) == len(prompt) + 4
        out.append((logits.clone(), states.clone(), cache.keys[:, :, : len(prompt) + 4].clone()))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[1][2], out[0][2], rtol=1e-5, atol=1e-5)  # the tree's K/V rows landed


def test_a_row_does_not_depend_on_the_rest_of_its_bucket():
    """The exactness the buckets are for: a node's logits are the same bits whatever else the
    padded tree holds (here: greedy's one-node tree vs a tree of 6 nodes in the same bucket)."""
    static = StaticLlama(tiny_model("qwen2", seed=4), buckets=(8,), capacity=64)
    prompt = [(3 * i + 2) % VOCAB for i in range(20)]
    rows = []
    for tree in (tree_of_parents((5,), (-1,)), tree_of_parents((5, 9, 11, 7, 3, 8), (-1, 0, 0, 1, 3, 2))):
        cache = static.new_cache()
        prefill(static, cache, prompt)
        rows.append(verify_tree(static, cache, tree)[0].clone())
    assert torch.equal(rows[0], rows[1])


def test_static_greedy_equals_reference_and_rest_equals_greedy():
    hf = tiny_model("llama", seed=2)
    static = StaticLlama(hf, buckets=(16,), capacity=32)  # small capacity: the cache grows mid-run
    prompt = [(5 * i + 3) % VOCAB for i in range(24)]
    greedy = Engine(static, eos_ids=()).complete(prompt, 20, mode="greedy").tokens
    assert list(greedy) == reference_greedy(hf, prompt, 20)
    for seed in range(3):
        drafter = ScriptedDrafter(len(prompt), greedy, seed=seed)
        rest = Engine(static, drafter=drafter, eos_ids=()).complete(prompt, 20, mode="rest", budget=12)
        assert rest.tokens == greedy
        assert rest.stats.accepted_drafts > 0


def test_budgets_are_capped_to_the_largest_bucket():
    static = StaticLlama(tiny_model("llama", seed=2), buckets=(1, 4), capacity=32)
    assert static.max_rows == 4 and static.max_drafts == 3
    engine = Engine(static, eos_ids=())
    assert engine.capped(64) == 3
    prompt = [(5 * i + 3) % VOCAB for i in range(12)]
    gen = engine.complete(prompt, 10, mode="rest", budget=50)
    assert max(gen.stats.budgets) <= 3


def test_cache_buffers_are_pooled():
    static = StaticLlama(tiny_model("llama", seed=1), buckets=(4,), capacity=32)
    first = static.new_cache()
    buffer = first.kv
    second = static.new_cache()
    assert second.kv is not buffer  # both alive: two buffers
    del first
    gc.collect()
    third = static.new_cache()
    assert third.kv is buffer  # the dead cache's buffer (and its captured graphs) come back


def test_a_grown_cache_hands_back_its_grown_buffer():
    static = StaticLlama(tiny_model("llama", seed=1), buckets=(4,), capacity=8)
    cache = static.new_cache()
    prefill(static, cache, list(range(1, 20)))
    grown = cache.kv
    assert grown.shape[3] >= 19
    del cache
    gc.collect()
    assert static.new_cache(capacity=16).kv is grown


def test_eager_on_the_cpu_and_no_capture():
    static = StaticLlama(tiny_model("llama", seed=1), buckets=(4,))
    assert static.graphs is False  # CUDA graphs only on CUDA
    cache = static.new_cache()
    prefill(static, cache, [1, 2, 3])
    verify_tree(static, cache, tree_of_parents())
    assert static.captures == 0


def test_choose_forward_static():
    llama = tiny_model("llama")
    runner, name, why = choose_forward(llama, "static")
    assert isinstance(runner, StaticLlama) and name == "static"
    with pytest.raises(ModelError, match="gemma"):
        choose_forward(tiny_model("gemma"), "static")
    # auto keeps the packed forward on the CPU; the static one is auto's choice on CUDA only
    assert choose_forward(llama, "auto")[1] == "packed"


def test_cost_of_a_bucketed_forward_is_measured_at_the_buckets():
    from rest_lsp.engine.cost import bucket_sizes, measure_cost

    assert bucket_sizes((16, 1, 4)) == [1, 2, 4, 5, 16]
    assert bucket_sizes((64,)) == [64]
    static = StaticLlama(tiny_model("llama", seed=1), buckets=(1, 4), capacity=64)
    cost = measure_cost(static, context_len=8, repeats=1)
    assert cost.sizes == [1, 2, 4]


def test_cost_benchmark_measures_the_static_forward_at_its_buckets(monkeypatch):
    from rest_lsp.bench import cost as cost_bench

    monkeypatch.setenv("REST_LSP_ROW_BUCKETS", "1,4")
    results = cost_bench.run({"tiny": lambda: tiny_model("qwen2")}, ["packed", "static"],
                             context_len=16, repeats=1, say=lambda line: None)
    assert list(results["tiny"]["forwards"]["static"]["ms"]) == [1, 2, 4]
    table = cost_bench.table(results)
    assert "| tiny | static |" in table and "| - |" in table
