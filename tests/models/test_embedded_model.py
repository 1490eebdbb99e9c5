"""The shipped model: small files that transformers loads, logits of the right shape."""

from __future__ import annotations

import pytest

from rest_lsp.embedded import model as embedded_model
from rest_lsp.embedded.model import EMBEDDED_DIR

#: shipped weights must stay small (the wheel carries them)
MAX_WEIGHT_BYTES = 40_000_000


@pytest.fixture(scope="module")
def model():
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(EMBEDDED_DIR), dtype=torch.float32).eval()


def test_weights_are_small_half_precision():
    summary = embedded_model.safetensors_summary(EMBEDDED_DIR / "model.safetensors")
    assert summary["file_bytes"] <= MAX_WEIGHT_BYTES
    assert summary["stored_dtypes"] in (["F16"], ["BF16"])


def test_logits_have_the_right_shape(model):
    import torch

    x = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    with torch.no_grad():
        logits = model(input_ids=x).logits
    assert logits.shape == (2, 4, model.config.vocab_size)
    assert torch.isfinite(logits).all()


def test_vocab_and_eos_match_the_tokenizer(model):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(embedded_model.tokenizer_path()))
    assert model.config.vocab_size == tok.get_vocab_size()
    assert model.config.eos_token_id == embedded_model.SPECIAL_TOKENS["<|endoftext|>"]


def test_description_from_files_alone():
    info = embedded_model.describe_embedded()
    assert info["architecture"] == "LlamaForCausalLM"
    assert info["parameters"] > 1_000_000
    assert info["train_tokens"] > 0 and info["held_out_loss"] > 0


def test_card_and_curve_ship():
    assert (EMBEDDED_DIR / "MODEL_CARD.md").is_file()
    assert (EMBEDDED_DIR / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (EMBEDDED_DIR / embedded_model.TRAINING_RECORD).is_file()


def test_describe_without_weights_is_a_model_error(tmp_path):
    from rest_lsp.errors import ModelError

    with pytest.raises(ModelError) as info:
        embedded_model.describe_embedded(tmp_path)
    assert info.value.path == str(tmp_path)
