"""The workspace tier: incremental refresh, restart, watcher events, compaction, open_or_build."""

from __future__ import annotations

import os
import shutil

import pytest

from indexer import workspace_index
from indexer.datastore import Datastore
from indexer.tokens import IndexTokenizer
from indexer_fixtures import SAMPLE_CODE, make_workspace, small_index_config

CTX = "def add(a, b):\n    return"


@pytest.fixture
def counting(tiny_tokenizer, monkeypatch):
    """The tiny tokenizer, counting the texts it encodes."""
    calls = {"texts": 0}
    real = IndexTokenizer.encode_many

    def encode_many(self, texts):
        calls["texts"] += len(texts)
        return real(self, texts)

    monkeypatch.setattr(IndexTokenizer, "encode_many", encode_many)
    return tiny_tokenizer, calls


def texts_after(store, tok, ctx=CTX, source="workspace"):
    r = store.retrieve(tok.encode(ctx), mode="longest")
    return {tok.decode(c.tokens) for c in r.candidates if c.source == source}


def open_ws(tmp_path, tok, files, **cfg):
    ws = make_workspace(tmp_path / "ws", files)
    config = small_index_config(tmp_path, **cfg)
    return ws, config, workspace_index.open_or_build(ws, config, tok)


def test_open_or_build_layout(tmp_path, index_env, tiny_tokenizer):
    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"m.py": "def add(a, b):\n    return a + b\n"})
    assert str(store.index_dir).startswith(str(index_env))
    stats = store.stats()
    assert stats["workspace"]["docs"] == 1 and stats["corpus"]["docs"] == 2
    assert any(t.startswith(" a + b") for t in texts_after(store, tiny_tokenizer))
    # a second workspace shares the corpus index
    ws2 = make_workspace(tmp_path / "ws2", {"n.py": "x = 1\n"})
    store2 = workspace_index.open_or_build(ws2, config, tiny_tokenizer)
    assert store2.index_dir != store.index_dir
    assert [s.directory for s in store2.corpus] == [s.directory for s in store.corpus]


def test_modify_add_delete_rename(tmp_path, index_env, counting):
    tok, calls = counting
    ws, config, store = open_ws(tmp_path, tok, {"m.py": "def add(a, b):\n    return a + b\n", "other.py": SAMPLE_CODE})
    (ws / "m.py").write_text("def add(a, b):\n    return a - b\n")
    r = store.notify_changed([ws / "m.py"])
    assert r.changed == 1
    texts = texts_after(store, tok)
    assert any(t.startswith(" a - b") for t in texts) and not any(t.startswith(" a + b") for t in texts)

    (ws / "new.py").write_text("def add(a, b):\n    return a % b\n")
    store.notify_changed([ws / "new.py"])
    assert any(t.startswith(" a % b") for t in texts_after(store, tok))

    os.remove(ws / "new.py")
    assert store.notify_changed([ws / "new.py"]).removed == 1
    assert not any(t.startswith(" a % b") for t in texts_after(store, tok))

    before = calls["texts"]
    os.rename(ws / "m.py", ws / "renamed.py")
    r = store.notify_changed([ws / "m.py", ws / "renamed.py"])
    assert calls["texts"] == before and r.reused == 1  # tokens reused through the content hash
    assert store.workspace.paths() == {"renamed.py", "other.py"}
    assert any(t.startswith(" a - b") for t in texts_after(store, tok))


def test_ignored_and_outside_paths_are_not_indexed(tmp_path, index_env, tiny_tokenizer):
    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"m.py": "x = 1\n"})
    (ws / ".env").write_text("def add(a, b):\n    return SECRET\n")
    (tmp_path / "elsewhere.py").write_text("def add(a, b):\n    return 0\n")
    store.notify_changed([ws / ".env", tmp_path / "elsewhere.py"])
    assert store.workspace.paths() == {"m.py"}
    assert not any("SECRET" in t for t in texts_after(store, tiny_tokenizer))


def test_directory_delete_and_create(tmp_path, index_env, tiny_tokenizer):
    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"pkg/a.py": "x = 1\n", "pkg/b.py": "y = 2\n", "c.py": "z\n"})
    shutil.rmtree(ws / "pkg")
    store.notify_changed([ws / "pkg"])
    assert store.workspace.paths() == {"c.py"}
    make_workspace(ws, {"lib/d.py": "w = 3\n"})
    store.notify_changed([ws / "lib"])
    assert store.workspace.paths() == {"c.py", "lib/d.py"}


def test_restart_retokenizes_only_changed_files(tmp_path, index_env, counting):
    tok, calls = counting
    files = {f"f{i}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(20)}
    ws, config, store = open_ws(tmp_path, tok, files)
    (ws / "f3.py").write_text("def f3(x):\n    return x * 3\n")
    (ws / "f4.py").touch()  # mtime changes, content does not
    os.remove(ws / "f5.py")
    (ws / "g.py").write_text("def g():\n    pass\n")
    before = calls["texts"]
    store2 = workspace_index.open_or_build(ws, config, tok)
    assert calls["texts"] - before == 2  # f3.py and g.py; f4.py is read and hashed only
    paths = store2.workspace.paths()
    assert "f5.py" not in paths and {"f3.py", "g.py", "f4.py"} <= paths
    assert any(t.startswith(" x * 3") for t in texts_after(store2, tok, "def f3(x):\n    return"))


def test_compaction_folds_the_delta(tmp_path, index_env, tiny_tokenizer):
    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"m.py": SAMPLE_CODE}, compact_tokens=50)
    old = store.workspace.base[0].directory
    (ws / "n.py").write_text(SAMPLE_CODE.replace("add", "plus"))
    store.notify_changed([ws / "n.py"])  # delta > 50 tokens: compacted in the background
    assert store.workspace.wait_compaction(timeout=30)
    assert not store.workspace.delta and store.workspace.base[0].directory != old
    reopened = Datastore.open(store.index_dir, tiny_tokenizer)
    assert reopened.stats()["workspace"]["docs"] == 2
    assert not old.exists()  # superseded shard collected


def test_changes_during_compaction_survive_it(tmp_path, index_env, tiny_tokenizer, monkeypatch):
    import threading

    from indexer import workspace as workspace_mod

    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"m.py": SAMPLE_CODE, "gone.py": "x = 1\n"})
    tier = store.workspace
    (ws / "a.py").write_text("def add(a, b):\n    return a ^ b\n")
    tier.refresh([ws / "a.py"])
    entered, release = threading.Event(), threading.Event()
    real = workspace_mod.write_workspace_shards

    def slow_write(*args, **kwargs):  # hold the compaction between its snapshot and its swap
        entered.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(workspace_mod, "write_workspace_shards", slow_write)
    t = threading.Thread(target=tier.compact)
    t.start()
    assert entered.wait(30)
    (ws / "m.py").write_text("def add(a, b):\n    return a & b\n")  # changed after the snapshot
    os.remove(ws / "gone.py")  # removed after the snapshot
    tier.refresh([ws / "m.py", ws / "gone.py"])
    release.set()
    t.join(30)
    assert tier.paths() == {"m.py", "a.py"}
    assert set(tier.delta) == {"m.py"}
    texts = texts_after(store, tiny_tokenizer)
    assert any(x.startswith(" a & b") for x in texts) and not any(x.startswith(" a + b") for x in texts)
    assert any(x.startswith(" a ^ b") for x in texts)


def test_queries_see_old_or_new_state_during_refresh(tmp_path, index_env, tiny_tokenizer):
    import threading

    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"m.py": "def add(a, b):\n    return a + b\n"})
    ctx = tiny_tokenizer.encode(CTX)
    stop = threading.Event()
    bad = []

    def reader():
        while not stop.is_set():
            r = store.retrieve(ctx)
            got = {tiny_tokenizer.decode(c.tokens)[:6] for c in r.candidates if c.source == "workspace"}
            if len(got) != 1:
                bad.append(got)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(30):
            (ws / "m.py").write_text(f"def add(a, b):\n    return a {'+-'[i % 2]} b\n")
            store.notify_changed([ws / "m.py"])
    finally:
        stop.set()
        t.join()
    assert not bad  # exactly one version of m.py visible at any time


class TestWatcher:
    """Real file events through watchdog; waits on refresh counts with timeouts, never sleeps."""

    def _wait_for(self, store, watcher, predicate, timeout=10.0):
        import time

        deadline = time.monotonic() + timeout
        seen = watcher.refreshes
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            watcher.wait_refreshes(seen + 1, left)
            seen = watcher.refreshes
        return True

    def test_add_modify_delete_rename(self, tmp_path, index_env, tiny_tokenizer):
        tok = tiny_tokenizer
        ws, config, store = open_ws(tmp_path, tok, {"m.py": "def add(a, b):\n    return a + b\n"},
                                    watch_debounce_ms=20)
        watcher = store.watch()
        try:
            def has(prefix):
                return lambda: any(t.startswith(prefix) for t in texts_after(store, tok))

            (ws / "n.py").write_text("def add(a, b):\n    return a % b\n")
            assert self._wait_for(store, watcher, has(" a % b"))
            (ws / "n.py").write_text("def add(a, b):\n    return a ** b\n")
            assert self._wait_for(store, watcher, has(" a ** b"))
            assert not has(" a % b")()
            os.rename(ws / "n.py", ws / "sub_n.py")
            assert self._wait_for(store, watcher, lambda: "sub_n.py" in store.workspace.paths()
                                  and "n.py" not in store.workspace.paths())
            os.remove(ws / "sub_n.py")
            assert self._wait_for(store, watcher, lambda: not has(" a ** b")())
            assert store.workspace.paths() == {"m.py"}
            assert watcher.errors == []
        finally:
            store.close()


    def test_ignored_directories_are_not_watched_and_new_ones_are(self, tmp_path, index_env, tiny_tokenizer):
        tok = tiny_tokenizer
        ws, config, store = open_ws(tmp_path, tok, {"m.py": "def add(a, b):\n    return a + b\n",
                                                    "pkg/p.py": "x = 1\n"},
                                    watch_debounce_ms=20, exclude_globs=[".venv/"])
        (ws / ".venv" / "lib").mkdir(parents=True)
        watcher = store.watch()
        try:
            assert str(ws) in watcher.watched and not watcher.watched[str(ws)]  # alone: .venv is below it
            assert watcher.watched.get(str(ws / "pkg")) is True
            assert not any(".venv" in d for d in watcher.watched)
            (ws / "fresh" / "deeper").mkdir(parents=True)
            (ws / "fresh" / "deeper" / "f.py").write_text("def add(a, b):\n    return a // b\n")
            assert self._wait_for(store, watcher, lambda: any(t.startswith(" a // b") for t in texts_after(store, tok)))
            assert watcher.watched.get(str(ws / "fresh")) is True
            (ws / "fresh" / "deeper" / "f.py").write_text("def add(a, b):\n    return a & b\n")
            assert self._wait_for(store, watcher, lambda: any(t.startswith(" a & b") for t in texts_after(store, tok)))
            (ws / ".venv" / "lib" / "v.py").write_text("def add(a, b):\n    return a | b\n")
            store.notify_changed([ws / ".venv" / "lib" / "v.py"])  # ignored even when reported
            assert not any(t.startswith(" a | b") for t in texts_after(store, tok))
            assert watcher.errors == []
        finally:
            store.close()


def test_progress_callback_reports_builds(tmp_path, index_env, tiny_tokenizer):
    ws = make_workspace(tmp_path / "ws", {f"m{i}.py": SAMPLE_CODE for i in range(3)})
    seen = []
    workspace_index.open_or_build(ws, small_index_config(tmp_path), tiny_tokenizer,
                                  progress=lambda done, total, msg: seen.append((done, total, msg)))
    assert any(m.startswith("corpus") for _, _, m in seen) and any(m.startswith("workspace") for _, _, m in seen)
    done, total, _ = seen[-1]
    assert total > 0 and done == total


def test_saving_a_changed_file_again_keeps_the_base_cache(tmp_path, index_env, tiny_tokenizer):
    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"m.py": SAMPLE_CODE, "n.py": SAMPLE_CODE})
    (ws / "m.py").write_text(SAMPLE_CODE + "\nx = 1\n")
    store.notify_changed([ws / "m.py"])
    base_view = store.workspace.views[0]
    assert base_view.dead is not None and base_view.epoch > 0
    (ws / "m.py").write_text(SAMPLE_CODE + "\nx = 2\n")  # m.py is already shadowed: same mask
    store.notify_changed([ws / "m.py"])
    assert store.workspace.views[0] is base_view


def test_changing_the_corpus_keeps_the_workspace_shards(tmp_path, index_env, tiny_tokenizer):
    ws, config, store = open_ws(tmp_path, tiny_tokenizer, {"m.py": SAMPLE_CODE})
    shards = [s.directory for s in store.workspace.base]
    other = make_workspace(tmp_path / "corpus2", {"z.py": "def zeta():\n    return 0\n"})
    config.corpus_roots = [str(other)]
    store2 = workspace_index.open_or_build(ws, config, tiny_tokenizer)
    assert [s.directory for s in store2.workspace.base] == shards
    assert store2.stats()["corpus"]["docs"] == 1
    assert store2.workspace.pointer["corpus_dir"] == str(store2.corpus[0].directory.parent)
