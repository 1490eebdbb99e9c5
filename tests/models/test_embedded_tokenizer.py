"""The shipped tokenizer: exact round trips, special tokens at their ids, ids that fit u16."""

from __future__ import annotations

import json

import pytest

from rest_lsp.embedded.model import EMBEDDED_DIR, SPECIAL_TOKENS, tokenizer_path


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_path()))


SAMPLES = [
    "def f(x):\n    return x + 1\n",
    "\tclass  A :\r\n\t\tpass   \n\n\n",
    "s = 'ünïcödé ✓ 漢字 🐍'  # trailing spaces   \n",
    "    \n        \n",
    "x = b'\\x00\\xff'\n\x0c\n",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trips_exactly(tok, text):
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text


def test_round_trips_a_stdlib_file(tok):
    import inspect
    import textwrap

    text = inspect.getsource(textwrap)
    assert tok.decode(tok.encode(text).ids) == text


def test_special_tokens_at_declared_ids(tok):
    for token, token_id in SPECIAL_TOKENS.items():
        assert tok.token_to_id(token) == token_id
        assert tok.encode(token, add_special_tokens=False).ids == [token_id]


def test_vocab_fits_u16(tok):
    assert 256 < tok.get_vocab_size() <= 1 << 16


def test_config_declares_eos_and_pad():
    config = json.loads((EMBEDDED_DIR / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|endoftext|>"
    assert config["pad_token"] == "<|pad|>"


def test_loads_with_auto_tokenizer():
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(str(EMBEDDED_DIR))
    assert (t.eos_token_id, t.pad_token_id) == (0, 4)
    text = "if x:\n    y = 2\n"
    assert t.decode(t.encode(text, add_special_tokens=False)) == text
