"""Shards on disk: round trip, integrity checks, tokenizer identity, crash-safe publishing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from indexer import workspace_index
from indexer.storage import indexdir
from indexer.storage import shard as shard_mod
from indexer.datastore import Datastore
from indexer.storage.packed import PAD
from indexer.storage.shard import Doc, Shard, build_arrays, write_shard
from indexer_fixtures import SAMPLE_CODE, make_workspace, small_index_config, train_tiny_tokenizer
from rest_lsp.errors import DatastoreError, IndexCorruptError, IndexVersionError, TokenizerMismatchError

REPO = Path(__file__).resolve().parents[2]


def write_docs(tmp_path, docs, vocab=50, identity="tok-a", tier="workspace"):
    arrays = build_arrays(docs, np.dtype(">u2"), 0, vocab)
    return write_shard(tmp_path / "idx", arrays, docs, tokenizer_identity=identity, separator_id=0,
                       vocab_size=vocab, tier=tier)


def test_round_trip(tmp_path):
    docs = [Doc("a.py", np.array([1, 2, 3]), b"d" * 16, 10, 5), Doc("b.py", np.array([4, 5]), b"e" * 16, 7, 6)]
    path = write_docs(tmp_path, docs)
    s = Shard.open(path, tokenizer_identity="tok-a", verify="full")
    assert s.paths == ["a.py", "b.py"] and s.n_tokens == 7
    assert s.doc_tokens(1).tolist() == [4, 5] and s.doc_digest(0) == b"d" * 16
    assert s.arrays.sa.bits == 3 and s.arrays.tokens.dtype == np.dtype(">u2")  # 7 tokens: 3 bits
    assert s.manifest["sizes"] == [10, 7] and s.manifest["mtimes"] == [5, 6]
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "idx").iterdir())
    # separators left out of the SA: 5 rows of 3 bits in 2 bytes, plus the reading pad
    assert s.arrays.sa.nbytes == 2 + PAD and s.arrays.sa[:].tolist() == [0, 1, 2, 4, 5]
    assert (tmp_path / "idx" / path.name / "sa.bin").stat().st_size == 2 + PAD
    corpus = Shard.open(write_docs(tmp_path, docs, tier="corpus"))
    assert corpus.paths == ["a.py", "b.py"] and corpus.manifest["sizes"] == []  # no doc table


def test_tokenizer_mismatch_is_detected(tmp_path):
    path = write_docs(tmp_path, [Doc("a", np.array([1, 2]))])
    with pytest.raises(TokenizerMismatchError) as info:
        Shard.open(path, tokenizer_identity="tok-b")
    assert info.value.found == "tok-a" and info.value.expected == "tok-b"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_sampled_and_full_checksums(tmp_path):
    rng = np.random.default_rng(0)
    docs = [Doc(f"d{i}", rng.integers(1, 50, 5000)) for i in range(20)]
    path = write_docs(tmp_path, docs)
    sa_file = path / "sa.bin"
    size = sa_file.stat().st_size
    step = (size - shard_mod.SAMPLE_BLOCK_BYTES) // (shard_mod.SAMPLE_BLOCKS - 1)
    _flip(sa_file, step + 10)  # inside a sampled block: caught on open
    with pytest.raises(IndexCorruptError):
        Shard.open(path)
    _flip(sa_file, step + 10)
    _flip(sa_file, step - 100)  # between sampled blocks: open passes, verify catches it
    s = Shard.open(path)
    with pytest.raises(IndexCorruptError):
        s.verify()


def test_truncated_missing_and_garbled_files(tmp_path):
    path = write_docs(tmp_path, [Doc("a", np.array([1, 2, 3]))])
    (path / "tokens.bin").write_bytes(b"\0\1")
    with pytest.raises(IndexCorruptError, match="bytes"):
        Shard.open(path)
    (path / "docs.bin").unlink()
    with pytest.raises(IndexCorruptError):
        Shard.open(path)
    (path / "manifest.msgpack").write_bytes(b"garbage")
    with pytest.raises(IndexCorruptError):
        Shard.open(path)


def test_format_version_mismatch(tmp_path, monkeypatch):
    path = write_docs(tmp_path, [Doc("a", np.array([1, 2, 3]))])
    monkeypatch.setattr(shard_mod, "FORMAT_VERSION", shard_mod.FORMAT_VERSION + 1)
    with pytest.raises(IndexVersionError):
        Shard.open(path)


def test_pointer_checksum(tmp_path):
    indexdir.write_current(tmp_path, {"kind": "corpus", "shards": []})
    assert indexdir.read_current(tmp_path)["kind"] == "corpus"
    _flip(tmp_path / "CURRENT", 20)
    with pytest.raises(IndexCorruptError):
        indexdir.read_current(tmp_path)
    with pytest.raises(DatastoreError):
        indexdir.read_current(tmp_path / "none")


def _build(tmp_path, tok_path):
    ws = make_workspace(tmp_path / "ws", {"m.py": SAMPLE_CODE})
    cfg = small_index_config(tmp_path)
    return ws, cfg


def test_tokenizer_change_leads_to_rebuild(tmp_path, index_env, tiny_tokenizer_path):
    ws, cfg = _build(tmp_path, tiny_tokenizer_path)
    store = workspace_index.open_or_build(ws, cfg, tiny_tokenizer_path)
    wdir = store.index_dir
    other = train_tiny_tokenizer(tmp_path / "other" / "tokenizer.json", vocab_size=350)
    with pytest.raises(TokenizerMismatchError):
        Datastore.open(wdir, other)
    store2 = workspace_index.open_or_build(ws, cfg, other)
    assert store2.tokenizer.identity != store.tokenizer.identity
    assert Datastore.open(store2.index_dir, other).stats()["workspace"]["docs"] == 1
    assert store2.retrieve(store2.tokenizer.encode("def add(a, b):")).suffix_len > 0


def test_corruption_leads_to_rebuild(tmp_path, index_env, tiny_tokenizer_path):
    ws, cfg = _build(tmp_path, tiny_tokenizer_path)
    store = workspace_index.open_or_build(ws, cfg, tiny_tokenizer_path)
    shard_dir = store.workspace.base[0].directory
    (shard_dir / "sa.bin").write_bytes(b"")
    with pytest.raises(IndexCorruptError):
        Datastore.open(store.index_dir, tiny_tokenizer_path)
    store2 = workspace_index.open_or_build(ws, cfg, tiny_tokenizer_path)
    assert store2.workspace.base[0].directory != shard_dir
    assert store2.verify() == []


def test_separator_falls_back_to_eos(tmp_path):
    from indexer.tokens import load_tokenizer

    path = train_tiny_tokenizer(tmp_path / "m" / "tokenizer.json", eos_only=True)
    (path.parent / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    tok = load_tokenizer(path.parent)
    assert tok.separator == "</s>" and tok.separator_id == tok.tokenizer.token_to_id("</s>")
    (path.parent / "tokenizer_config.json").unlink()
    with pytest.raises(DatastoreError, match="separate"):
        load_tokenizer(path)


KILL_CHILD = textwrap.dedent('''
    import sys, random
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from indexer import workspace_index
    from indexer.tokens import load_tokenizer
    from indexer.settings import IndexConfig
    ws, out, tok_path = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    tok = load_tokenizer(tok_path)
    cfg = IndexConfig(corpus_shard_tokens=300)  # several shards per build: more points to die at
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        (ws / "changing.py").write_text("def f%d(x):\\n    return x * %d\\n" % (i, i) * 40)
        workspace_index.build_workspace(ws, cfg, tok, None, out)
''')


@pytest.mark.slow
def test_kill_at_random_points_leaves_a_loadable_index(tmp_path, tiny_tokenizer_path):
    ws = make_workspace(tmp_path / "ws", {f"m{i}.py": SAMPLE_CODE * 3 for i in range(6)})
    out = tmp_path / "index"
    from indexer.tokens import load_tokenizer
    from indexer.settings import IndexConfig

    tok = load_tokenizer(tiny_tokenizer_path)
    workspace_index.build_workspace(ws, IndexConfig(), tok, None, out)
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD.format(tests=str(REPO / "tests" / "support")))
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(8):
        child = subprocess.Popen([sys.executable, str(script), str(ws), str(out), str(tiny_tokenizer_path)],
                                 stdout=subprocess.PIPE, env=env)
        assert child.stdout.readline().strip() == b"ready"
        try:
            child.wait(timeout=rng.uniform(0.05, 0.6))
        except subprocess.TimeoutExpired:
            pass
        child.send_signal(signal.SIGKILL)
        child.wait()
        store = Datastore.open(out, tok, verify="full")  # old or new, never half
        assert store.verify() == []
        assert store.stats()["workspace"]["docs"] == 7 or store.stats()["workspace"]["docs"] == 6
        assert store.retrieve(tok.encode("def add(a, b):")).suffix_len > 0
    # leftovers of killed writers are collected by the next build
    workspace_index.build_workspace(ws, IndexConfig(), tok, None, out)
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert len([p for p in out.iterdir() if p.is_dir()]) == 1


def test_crash_before_pointer_swap_keeps_old_index(tmp_path, tiny_tokenizer_path, monkeypatch):
    from indexer.tokens import load_tokenizer
    from indexer.settings import IndexConfig

    tok = load_tokenizer(tiny_tokenizer_path)
    ws = make_workspace(tmp_path / "ws", {"a.py": SAMPLE_CODE})
    out = tmp_path / "index"
    workspace_index.build_workspace(ws, IndexConfig(), tok, None, out)
    before = indexdir.read_current(out)["shards"]
    (ws / "b.py").write_text("x = 1\n")

    def die(*a, **k):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(indexdir, "write_current", die)
    with pytest.raises(KeyboardInterrupt):
        workspace_index.build_workspace(ws, IndexConfig(), tok, None, out)
    monkeypatch.undo()
    store = Datastore.open(out, tok, verify="full")
    assert [s.name for s in store.workspace.base] == before
    assert store.stats()["workspace"]["docs"] == 1
