"""The CUDA path (marked ``gpu``: skipped without CUDA; run by scripts/gpu-check.sh on a lent GPU).

What a CPU cannot show: REST token-identical to greedy in bf16 on the real model, CUDA graphs
replaying the eager step bit for bit, at most one host synchronisation per decoding step, the K/V
cache on the device, sdpa on a fused kernel rather than its math fallback, and sampling whose
rows never leave the device.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine_testing import VOCAB, ScriptedDrafter, tree_of_parents, tiny_model  # noqa: E402
from rest_lsp.engine import kv_cache  # noqa: E402
from rest_lsp.engine.budget import FixedBudget  # noqa: E402
from rest_lsp.engine.engine import Engine  # noqa: E402
from rest_lsp.engine.forward import prefill, verify_tree  # noqa: E402
from rest_lsp.engine.speculative import speculative_decode  # noqa: E402
from rest_lsp.engine.static_forward import StaticLlama  # noqa: E402
from rest_lsp.engine.stats import GenerationStats  # noqa: E402

pytestmark = pytest.mark.gpu


def cuda_tiny(arch="qwen2", seed=2, dtype=None):
    model = tiny_model(arch, seed=seed).to("cuda")
    return model.to(dtype) if dtype is not None else model


def test_the_graph_replays_the_eager_step_bit_for_bit():
    hf = cuda_tiny(dtype=torch.bfloat16)
    prompt = [(7 * i + 1) % VOCAB for i in range(40)]
    out = []
    for graphs in (False, True):
        static = StaticLlama(hf, buckets=(8,), graphs=graphs, capacity=128)
        cache = static.new_cache()
        prefill(static, cache, prompt)
        logits = verify_tree(static, cache, tree_of_parents()).clone()
        out.append((logits, cache.kv[:, :, :, : len(prompt) + 4].clone()))
        if graphs:
            assert static.captures == 1
            verify_tree(static, cache, tree_of_parents((3, 4), (-1, 0)))  # a second step replays, no new capture
            assert static.captures == 1
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_rest_equals_greedy_on_cuda_bf16_tiny():
    hf = cuda_tiny(dtype=torch.bfloat16)
    static = StaticLlama(hf, buckets=(16,))
    prompt = [(5 * i + 3) % VOCAB for i in range(24)]
    greedy = Engine(static, eos_ids=()).complete(prompt, 24, mode="greedy").tokens
    for seed in range(3):
        rest = Engine(static, drafter=ScriptedDrafter(len(prompt), greedy, seed=seed), eos_ids=()).complete(
            prompt, 24, mode="rest", budget=12)
        assert rest.tokens == greedy


def test_kv_cache_stays_on_the_device():
    static = StaticLlama(cuda_tiny(), buckets=(8,))
    engine = Engine(static, eos_ids=())
    engine.complete([1, 2, 3, 4], 6)
    assert engine._cache.kv.device.type == "cuda"


def test_attention_runs_on_a_fused_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    static = StaticLlama(cuda_tiny(dtype=torch.bfloat16), buckets=(8,), graphs=False)
    cache = static.new_cache()
    prefill(static, cache, list(range(1, 30)))
    # the math backend left out: sdpa raises instead of falling back to it
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION]):
        logits = verify_tree(static, cache, tree_of_parents())
    assert torch.isfinite(logits).all()


def count_syncs(fn):
    """(result, host synchronisations torch reports while ``fn`` runs)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("observe", [False, True])
def test_at_most_one_host_sync_per_step(observe):
    static = StaticLlama(cuda_tiny(dtype=torch.bfloat16), buckets=(16,))
    prompt = [(5 * i + 3) % VOCAB for i in range(24)]
    greedy = Engine(static, eos_ids=()).complete(prompt, 30, mode="greedy").tokens
    drafter = ScriptedDrafter(len(prompt), greedy, seed=0)
    if observe:  # a drafter that reads the model's top-k (Token Recycling): still one copy a step
        drafter.observe = lambda tokens, top: None
    cache = static.new_cache()
    prefill(static, cache, prompt[:-1])
    verify_tree(static, cache, tree_of_parents((prompt[-1],), (-1,)))  # capture outside the count
    kv_cache.crop(cache, len(prompt) - 1)
    stats = GenerationStats(mode="rest", prompt_tokens=len(prompt))
    _, syncs = count_syncs(lambda: speculative_decode(static, cache, list(prompt), 30, drafter, FixedBudget(12), stats))
    assert stats.steps > 0
    # the readout's copy; inputs and the kept rows' index go from pinned memory, without a wait
    assert syncs <= stats.steps, (syncs, stats.steps)


def test_sampling_copies_a_table_not_rows():
    from rest_lsp.engine.acceptance import child_tokens
    from rest_lsp.engine.sampling import SamplingParams, sampling_table

    inputs = tree_of_parents()
    logits = torch.randn(len(inputs), 151_936, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    table, syncs = count_syncs(lambda: sampling_table(logits, SamplingParams(0.8, 0.95), child_tokens(inputs), gen))
    assert syncs <= 1
    assert table.child_p.shape == (4, 2) and table.bonus.shape == (4,)


def test_top_tokens_break_ties_toward_the_smaller_id_on_cuda():
    from rest_lsp.engine.readout import top_tokens

    logits = torch.zeros((3, 151_936), device="cuda")
    logits[:, [7, 70_000, 3]] = 5.0
    assert top_tokens(logits, 4).tolist() == [[3, 7, 70_000, 0]] * 3


def real_model():
    """The real 0.5B on CUDA in bf16: $REST_LSP_GPU_MODEL_05B (a .gguf) or the packaged model."""
    from rest_lsp.config.schema import ModelConfig
    from rest_lsp.engine.model import load_model

    name = os.environ.get("REST_LSP_GPU_MODEL_05B", "")
    if not name:
        from real_model_testing import NAME, require_packaged_model

        require_packaged_model()
        name = NAME
    return load_model(ModelConfig(name=name, device="cuda", dtype="bfloat16"))


@pytest.mark.slow
def test_real_model_rest_is_token_identical_to_greedy_in_bf16():
    from rest_lsp.bench.humaneval import humaneval_prompts

    loaded = real_model()
    assert loaded.forward == "static" and loaded.dtype == torch.bfloat16
    engine = Engine.from_loaded(loaded)
    for prompt in humaneval_prompts(loaded.tokenizer, limit=8):
        greedy = engine.complete(prompt, 96, mode="greedy")
        rest = engine.complete(prompt, 96, mode="rest")
        assert rest.tokens == greedy.tokens
        assert rest.stats.steps <= greedy.stats.steps
    assert np.isfinite(engine.cost(1))
