"""Incremental detokenization: the text of a growing token list equals its whole decode at every
length, for byte-level BPE (the embedded model, Qwen) and SentencePiece-style (byte fallback,
leading-space strip) tokenizers, at a decode per new token bounded by the window, not the output."""

from __future__ import annotations

import functools
import inspect
import json
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rest_lsp.completion import detokenizer
from rest_lsp.completion.detokenizer import IncrementalText

#: texts whose characters take several bytes, often split across tokens
MULTIBYTE = (
    "s = 'ünïcödé ✓ 漢字 🐍'  # café naïve\n",
    "🐍🐍👩‍👩‍👧 中文字符 ∑∫ Ωmega\n\tdef f(): return '日本語'\n",
    "x = b'\\x00\\xff'\n\x0c\n  \n",
)


@functools.lru_cache(maxsize=None)
def embedded_tokenizer():
    """The embedded model's tokenizer (byte-level BPE), as the service loads it."""
    from transformers import AutoTokenizer

    from rest_lsp.embedded.model import EMBEDDED_DIR

    return AutoTokenizer.from_pretrained(str(EMBEDDED_DIR))


@functools.lru_cache(maxsize=None)
def sentencepiece_tokenizer():
    """A tiny Llama-style tokenizer: "▁" for spaces, byte-fallback tokens for what its vocabulary
    lacks, and a decoder that strips the text's leading space (where a window must not start)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trained = Tokenizer(models.BPE())
    trained.normalizer = normalizer
    trained.train_from_iterator(["def add(a, b):\n    return a + b\n"] * 10 + ["hello world . 's n't"] * 5,
                                trainers.BpeTrainer(vocab_size=200, show_progress=False))
    model = json.loads(trained.to_str())["model"]
    vocab = dict(model["vocab"])
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges, byte_fallback=True))
    tok.normalizer = normalizer
    tok.add_special_tokens(["<s>", "</s>"])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


@functools.lru_cache(maxsize=None)
def qwen_tokenizer():
    """The real default model's tokenizer (its folder without weights: seconds once assembled)."""
    from transformers import AutoTokenizer

    from real_model_testing import NAME
    from rest_lsp.models.resolve import resolve

    return AutoTokenizer.from_pretrained(resolve(NAME, weights=False).folder)


def tokenizer_named(name: str):
    """One of the tokenizers under test, loaded once (Qwen's only where its model is installed)."""
    if name == "qwen":
        from real_model_testing import require_packaged_model

        require_packaged_model()
        return qwen_tokenizer()
    return {"embedded": embedded_tokenizer, "sentencepiece": sentencepiece_tokenizer}[name]()


TOKENIZERS = ["embedded", "sentencepiece", pytest.param("qwen", marks=pytest.mark.slow)]


def whole(tok, ids) -> str:
    """What the incremental text must equal: the tokenizer's decode of the whole list."""
    return tok.decode(list(ids), skip_special_tokens=True)


def assert_follows_every_prefix(tok, ids) -> None:
    """Extend one list in place a token at a time (as the engine does): text = whole decode."""
    text = IncrementalText(tok)
    grown: list[int] = []
    for n, token in enumerate(ids, 1):
        grown.append(token)
        assert text.text_of(grown) == whole(tok, grown), f"after {n} tokens {grown[-8:]}"


def interesting_ids(tok) -> list[int]:
    """Ids a generation may hold: special tokens and the tokens of multi-byte characters."""
    ids = set(tok.all_special_ids)
    for sample in MULTIBYTE:
        ids.update(tok.encode(sample, add_special_tokens=False))
    return sorted(ids)


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("sample", MULTIBYTE)
def test_multibyte_text_token_by_token(name, sample):
    tok = tokenizer_named(name)
    ids = tok.encode(sample, add_special_tokens=False)
    assert whole(tok, ids) == sample
    assert_follows_every_prefix(tok, ids)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_special_tokens_inside_multibyte_text(name):
    tok = tokenizer_named(name)
    ids = tok.encode(MULTIBYTE[1], add_special_tokens=False)
    special = tok.all_special_ids
    assert special
    for at in range(0, len(ids), 3):  # a special token between (or inside) characters
        assert_follows_every_prefix(tok, ids[:at] + [special[at % len(special)]] + ids[at:])


@pytest.mark.parametrize("name", TOKENIZERS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_token_lists(name, data):
    tok = tokenizer_named(name)
    token = st.one_of(st.integers(0, len(tok) - 1), st.sampled_from(interesting_ids(tok)))
    assert_follows_every_prefix(tok, data.draw(st.lists(token, max_size=60)))


@settings(max_examples=40, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80))
def test_encoded_unicode_text(text):
    tok = embedded_tokenizer()
    ids = tok.encode(text, add_special_tokens=False)
    assert_follows_every_prefix(tok, ids)
    assert IncrementalText(tok).text_of(ids) == text


def test_a_list_that_is_not_an_extension_is_decoded_whole():
    tok = embedded_tokenizer()
    ids = tok.encode(MULTIBYTE[0] + MULTIBYTE[1], add_special_tokens=False)
    text = IncrementalText(tok)
    grown = list(ids[:30])
    assert text.text_of(grown) == whole(tok, grown)
    grown[3] = ids[40]  # changed in place before the window
    assert text.text_of(grown) == whole(tok, grown)
    shorter = ids[:10]
    assert text.text_of(shorter) == whole(tok, shorter)
    other = tuple(reversed(ids))  # another sequence type, another order
    assert text.text_of(other) == whole(tok, other)
    assert text.text_of([]) == ""


class CountingTokenizer:
    """A tokenizer that counts its decode calls and the tokens they were given."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.calls = 0
        self.tokens = 0

    def decode(self, ids, **kwargs):
        self.calls += 1
        self.tokens += len(ids)
        return self.tok.decode(ids, **kwargs)


def decode_work(tok, ids) -> CountingTokenizer:
    """The decode work of following ``ids`` one token at a time, as the stop rule does."""
    counting = CountingTokenizer(tok)
    text = IncrementalText(counting)
    grown: list[int] = []
    for token in ids:
        grown.append(token)
        text.text_of(grown)
    assert text.text == whole(tok, ids)
    return counting


@pytest.mark.parametrize("source", ["code", "multibyte"])
def test_decode_work_per_token_is_bounded(source):
    tok = embedded_tokenizer()
    text = inspect.getsource(textwrap) if source == "code" else "".join(MULTIBYTE) * 40
    ids = tok.encode(text, add_special_tokens=False, verbose=False)
    n = 160
    assert len(ids) >= 4 * n
    short, long = decode_work(tok, ids[:n]), decode_work(tok, ids[:4 * n])
    per_token = detokenizer.WINDOW + 2 * detokenizer.CONTEXT
    assert short.tokens <= per_token * n and long.tokens <= per_token * 4 * n
    assert short.calls <= 2 * n and long.calls <= 2 * 4 * n
    # linear: four times the tokens, about four times the work (a whole decode per token: sixteen)
    assert long.tokens <= 4.5 * short.tokens
    assert short.tokens * 5 < n * (n + 1) // 2
