"""Model loading: local directories, safetensors only, clear errors, tokenizer identity."""

from __future__ import annotations

import hashlib

import pytest

from engine_testing import save_tiny, single_thread  # noqa: F401
from rest_lsp.config.schema import ModelConfig
from rest_lsp.engine.engine import Engine
from rest_lsp.engine.model import check_tokenizer, describe, load_model, tokenizer_identity
from rest_lsp.errors import ModelError, TokenizerMismatchError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    save_tiny(path)
    return path


def test_load_local_model_and_generate(model_dir):
    loaded = load_model(ModelConfig(name=str(model_dir), device="cpu"))
    assert loaded.dtype.is_floating_point and str(loaded.dtype) == "torch.float32"
    assert loaded.device.type == "cpu" and loaded.source == str(model_dir)
    assert loaded.eos_token_ids == frozenset({0})
    assert loaded.tokenizer_id == hashlib.sha256((model_dir / "tokenizer.json").read_bytes()).hexdigest()
    info = describe(loaded)
    assert info["model_type"] == "llama" and info["parameters"] > 0
    engine = Engine.from_loaded(loaded)
    ids = loaded.tokenizer("t1 t2 t3 t1 t2", add_special_tokens=False)["input_ids"]
    gen = engine.complete(ids, 8)
    assert 0 not in gen.tokens and gen.stats.steps >= 1


def test_tokenizer_identity_agrees_with_the_indexer(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    by_file = tokenizer_identity(tok, model_dir)
    assert tokenizer_identity(tok) == by_file  # found through the tokenizer's name_or_path
    tok.name_or_path = ""
    by_object = tokenizer_identity(tok)
    assert len(by_file) == 64 and len(by_object) == 64
    try:
        from indexer.tokens import coerce_tokenizer, load_tokenizer
    except ImportError:
        pytest.skip("indexer not available")
    assert load_tokenizer(model_dir).identity == by_file
    assert coerce_tokenizer(tok).identity == by_object


def test_tokenizer_mismatch_is_reported_with_both_ids():
    check_tokenizer("a" * 64, "a" * 64)
    with pytest.raises(TokenizerMismatchError) as info:
        check_tokenizer("a" * 64, "b" * 64, index_dir="/idx")
    assert info.value.model_tokenizer == "a" * 64 and info.value.index_tokenizer == "b" * 64
    assert "/idx" in str(info.value)


def test_missing_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(ModelConfig(name=str(tmp_path / "nope"), device="cpu"))


def test_pickle_weights_are_refused(tmp_path):
    save_tiny(tmp_path, safetensors=False)
    assert not list(tmp_path.glob("*.safetensors"))
    with pytest.raises(ModelError):
        load_model(ModelConfig(name=str(tmp_path), device="cpu"))


def test_unavailable_cuda_is_a_model_error(model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ModelError, match="CUDA"):
        load_model(ModelConfig(name=str(model_dir), device="cuda"))


def test_embedded_model_without_weights_is_a_model_error(tmp_path, monkeypatch):
    from rest_lsp.engine import model as model_module

    monkeypatch.setattr(model_module, "EMBEDDED_DIR", tmp_path)
    with pytest.raises(ModelError, match="embedded model"):
        load_model(ModelConfig(device="cpu"))


def test_unsupported_attention_is_refused():
    from engine_testing import tiny_model

    model = tiny_model("llama", "sdpa")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ModelError, match="tree mask"):
        Engine(model)


def test_mixed_sliding_window_layers_are_refused():
    from engine_testing import tiny_model

    model = tiny_model("qwen2", "sdpa", use_sliding_window=True, sliding_window=8, max_window_layers=1)
    with pytest.raises(ModelError, match="sliding_attention"):
        Engine(model)
