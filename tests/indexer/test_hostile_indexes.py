"""Hostile indexes: truncated, bit-flipped, wrong-version, wrong-tokenizer or garbled index files are
detected when the server opens them and rebuilt with a message, never loaded as garbage.

``tests/indexer/test_shard.py`` checks each detection at the shard level; here the server's own open path
(``rest_lsp.completion.health.open_verified``) meets every kind of damage, including a flipped bit
between the sampled checksum blocks, which only the full pass at start finds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.storage import indexdir
from indexer.storage import shard as shard_mod
from indexer.tokens import load_tokenizer
from indexer_fixtures import SAMPLE_CODE, make_workspace, train_tiny_tokenizer
from rest_lsp.completion.health import open_verified
from rest_lsp.config.schema import Config

REPO = Path(__file__).resolve().parents[2]
EMBEDDED = str(REPO / "rest_lsp" / "embedded")


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def truncate_tokens(shard: Path) -> None:
    data = (shard / "tokens.bin").read_bytes()
    (shard / "tokens.bin").write_bytes(data[: len(data) // 2])


def flip_between_samples(shard: Path) -> None:
    """A flipped bit that the sampled check on open cannot see (the last byte before the last block)."""
    sa = shard / "sa.bin"
    size = sa.stat().st_size
    assert size > shard_mod.SAMPLE_BLOCKS * shard_mod.SAMPLE_BLOCK_BYTES  # blocks leave gaps between them
    step = (size - shard_mod.SAMPLE_BLOCK_BYTES) // (shard_mod.SAMPLE_BLOCKS - 1)
    _flip(sa, step - 100)
    shard_mod.Shard.open(shard)  # the sampled check passes: only the full pass can find it


def flip_tokens(shard: Path) -> None:
    _flip(shard / "tokens.bin", 7)


def wrong_version(shard: Path) -> None:
    m = shard_mod.read_manifest(shard / shard_mod.MANIFEST)
    m["format_version"] = shard_mod.FORMAT_VERSION + 1  # a well-formed manifest of another version
    shard_mod._write_manifest(shard / shard_mod.MANIFEST, m)


def garble_manifest(shard: Path) -> None:
    (shard / shard_mod.MANIFEST).write_bytes(b"\x93garbage")


def garble_pointer(shard: Path) -> None:
    _flip(shard.parent / indexdir.POINTER, 30)


def zero_pointer(shard: Path) -> None:
    (shard.parent / indexdir.POINTER).write_bytes(b"")


@pytest.fixture
def setup(tmp_path, index_env):
    ws = make_workspace(tmp_path / "ws", {"m.py": SAMPLE_CODE * 400})  # shards large enough to sample
    corpus = make_workspace(tmp_path / "corpus", {"c.py": "import os\n"})
    config, problems = Config.from_dict({"index": {"index_dir": str(tmp_path / "idx"), "corpus_roots": [str(corpus)]}})
    assert not problems
    return ws, config


def _open(ws, config, tokenizer, messages):
    return open_verified(str(ws), config, tokenizer, lambda *a: None, messages.append)


@pytest.mark.parametrize("damage", [truncate_tokens, flip_between_samples, flip_tokens, wrong_version,
                                    garble_manifest, garble_pointer, zero_pointer])
def test_damaged_workspace_index_is_rebuilt_with_a_message(setup, damage, monkeypatch):
    ws, config = setup
    monkeypatch.setattr(shard_mod, "SAMPLE_BLOCK_BYTES", 64)  # small blocks: real gaps between them
    tok = load_tokenizer(EMBEDDED)
    store = _open(ws, config, EMBEDDED, [])
    shard = store.workspace.base[0].directory
    store.close()
    damage(shard)
    messages: list[str] = []
    store = _open(ws, config, EMBEDDED, messages)
    try:
        assert any("rebuilding" in m for m in messages), messages
        assert store.workspace.base[0].directory != shard  # a new shard, not the damaged one
        assert store.verify() == []
        assert store.retrieve(tok.encode("def add(a, b):")).suffix_len > 3
    finally:
        store.close()


def test_index_of_another_tokenizer_is_rebuilt_with_a_message(setup, tmp_path):
    ws, config = setup
    other = train_tiny_tokenizer(tmp_path / "other" / "tokenizer.json", vocab_size=350)
    _open(ws, config, str(other), []).close()
    messages: list[str] = []
    store = _open(ws, config, EMBEDDED, messages)
    try:
        assert any("tokenizer" in m and "rebuilding" in m for m in messages), messages
        assert store.tokenizer.identity == load_tokenizer(EMBEDDED).identity
        assert store.verify() == []
    finally:
        store.close()
