"""Fixtures for the indexer tests: a tiny BPE tokenizer trained in seconds, sample workspaces.

Imported by ``tests/conftest.py``.  Nothing here depends on the embedded model's tokenizer.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

SAMPLE_CODE = textwrap.dedent('''
    import os
    import sys


    def add(a, b):
        """Return the sum."""
        return a + b


    def mul(a, b):
        return a * b


    class Point:
        def __init__(self, x, y):
            self.x = x
            self.y = y

        def norm(self):
            return (self.x ** 2 + self.y ** 2) ** 0.5


    for i in range(10):
        print(add(i, i), mul(i, i))
''')


def train_tiny_tokenizer(path: Path, vocab_size: int = 400, eos_only: bool = False) -> Path:
    """Train a byte-level BPE on a little Python and save it as tokenizer.json at ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["</s>"] if eos_only else ["<|endoftext|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [SAMPLE_CODE] * 4 + [SAMPLE_CODE.replace("a", "b"), "hello world\n" * 20]
    tok.train_from_iterator(corpus, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory) -> Path:
    """A tokenizer.json of a ~400-token byte-level BPE (separator ``<|endoftext|>``)."""
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path):
    """The tiny tokenizer loaded as an ``IndexTokenizer``."""
    from indexer.tokens import load_tokenizer

    return load_tokenizer(tiny_tokenizer_path)


def make_workspace(root: Path, files: dict[str, str | bytes]) -> Path:
    """Create files (text or bytes) under ``root``; returns ``root``."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    return root


@pytest.fixture
def index_env(tmp_path, monkeypatch):
    """Point the user cache dir (where indexes live by default) at a temp dir."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cache


def small_index_config(tmp_path: Path, **overrides):
    """An IndexConfig whose corpus is a small generated directory (not the stdlib)."""
    from rest_lsp.config.schema import IndexConfig

    corpus = tmp_path / "corpus"
    if not corpus.exists():
        make_workspace(corpus, {"lib/a.py": SAMPLE_CODE, "lib/b.py": SAMPLE_CODE.replace("Point", "Vec")})
    cfg = IndexConfig(corpus_roots=[str(corpus)])
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


__all__ = ["tiny_tokenizer_path", "tiny_tokenizer", "index_env", "make_workspace",
           "small_index_config", "train_tiny_tokenizer", "SAMPLE_CODE"]
