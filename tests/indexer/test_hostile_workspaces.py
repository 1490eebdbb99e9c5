"""Hostile workspaces: indexing completes, skips with reasons, never crashes, memory stays bounded.

What the indexer tests already cover (``tests/indexer/test_sources.py``): binary and non-UTF-8 content,
symlink loops and dangling links, FIFOs, unreadable files and directories, files and directories
vanishing between walk and read, secrets and ignore files.  Here: the whole hostile set at once in
a separate process whose peak memory is measured (100,000 tiny files, a 200 MB file, deep nesting,
names with newlines and non-UTF-8 bytes, files deleted and rewritten while the build runs).

The memory bound (``docs/hardening.md``): files larger than ``index.max_file_bytes`` (1 MB) are
skipped on their size and never read; files are read and tokenized in batches of at most
``ENCODE_BATCH_FILES`` files / ``ENCODE_BATCH_BYTES``; a shard's tokens are held until it is
written (``corpus_shard_tokens``).  So the peak is the process's base plus O(files) for the walk's
list plus one shard of tokens, whatever the workspace holds: asserted below as < 512 MiB peak RSS
for this workspace (measured: see ``docs/hardening.md``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from indexer import workspace_index
from indexer.building import sources
from indexer.datastore import Datastore
from indexer.tokens import load_tokenizer
from indexer.settings import IndexConfig

pytestmark = [pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
TINY_FILES = 100_000
PEAK_RSS_BOUND = 512 * 2**20


def make_hostile(ws: Path, tiny_files: int) -> None:
    """Every kind of hostile content at once."""
    ws.mkdir(parents=True)
    (ws / "good.py").write_text("def hostile_marker_function(a, b):\n    return a * b + 1\n")
    (ws / "bin.dat").write_bytes(bytes(range(256)) * 64)
    (ws / "latin1.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    with open(ws / "huge.py", "wb") as f:  # 200 MB (sparse): skipped on its size, never read
        f.truncate(200 * 2**20)
    deep = ws
    for _ in range(200):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "deep.py").write_text("deep_value = 42\n")
    os.symlink(ws, ws / "loop")  # a link back to the root
    os.symlink(ws / "self", ws / "self")
    (ws / "new\nline.py").write_text("newline_name_value = 7\n")
    os.makedirs(os.fsencode(ws / "bytes") + b"\xff\xfe", exist_ok=True)
    with open(os.fsencode(ws) + b"/name\xff.py", "wb") as f:
        f.write(b"undecodable_name_value = 1\n")
    tiny = ws / "tiny"
    for i in range(0, tiny_files, 1000):
        d = tiny / f"{i // 1000:03d}"
        d.mkdir(parents=True)
        for j in range(1000):
            (d / f"t{j}.py").write_text(f"v{j} = {i + j}\n")
    churn = ws / "churn"
    churn.mkdir()
    for i in range(200):
        (churn / f"c{i}.py").write_text(f"churn_{i} = {i}\n" * 50)


BUILD = textwrap.dedent('''
    import json, os, sys, threading, time
    from pathlib import Path
    from indexer import workspace_index
    from indexer.tokens import load_tokenizer
    from indexer.settings import IndexConfig
    ws, out, tok = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    stop = threading.Event()
    def churn():  # delete and rewrite files while the build reads them
        i = 0
        while not stop.is_set():
            p = ws / "churn" / f"c{i % 200}.py"
            if i % 2:
                p.unlink(missing_ok=True)
            else:
                p.write_text(f"rewritten_{i} = {i}\\n" * (i % 7 + 1))
            i += 1
            stop.wait(0.0005)
    t = threading.Thread(target=churn, daemon=True)
    t.start()
    start = time.perf_counter()
    stats = workspace_index.build_workspace(ws, IndexConfig(), load_tokenizer(tok), None, out)
    stop.set()
    t.join()
    # VmHWM: this process's own peak (ru_maxrss survives exec: it would count the parent's)
    hwm = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM"))
    print(json.dumps({"stats": stats.as_dict(), "seconds": time.perf_counter() - start,
                      "peak_rss": int(hwm.split()[1]) * 1024}))
''')


@pytest.mark.slow
def test_hostile_workspace_indexes_with_reasons_in_bounded_memory(tmp_path):
    ws = tmp_path / "ws"
    make_hostile(ws, TINY_FILES)
    script = tmp_path / "build.py"
    script.write_text(BUILD)
    tok = str(REPO / "rest_lsp" / "embedded")
    out = subprocess.run([sys.executable, str(script), str(ws), str(tmp_path / "idx"), tok],
                         capture_output=True, text=True, timeout=280,
                         env={**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"})
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    stats, skipped = result["stats"], result["stats"]["skipped"]
    print(json.dumps({k: result[k] for k in ("seconds", "peak_rss")}), skipped)
    assert result["peak_rss"] < PEAK_RSS_BOUND, result["peak_rss"]
    assert stats["files"] >= TINY_FILES + 3  # tiny files, good.py, deep.py, the newline name
    assert skipped["too-large"] == 1 and skipped["binary"] >= 2
    assert skipped["symlink-loop"] >= 2 and skipped["unencodable-name"] == 2
    tokenizer = load_tokenizer(tok)
    store = Datastore.open(tmp_path / "idx", tokenizer, verify="full")
    assert store.verify() == []
    for text in ("def hostile_marker_function(a, b", "newline_name_value =", "deep_value ="):
        assert store.retrieve(tokenizer.encode(text)).suffix_len >= 3, text
    names = [p for s in store.workspace.base for p in s.paths]
    assert "new\nline.py" in names and not any("huge" in n or "\udcff" in n for n in names)


def test_unencodable_names_are_skipped_by_the_watcher_rules_too(tmp_path):
    bad = os.fsdecode(os.fsencode(tmp_path) + b"/x\xff.py")
    Path(bad).write_text("x = 1\n")
    skip = sources.is_indexable(bad, tmp_path, sources.Rules())
    assert skip is not None and skip.reason == "unencodable-name"


def compacting_store(tmp_path):
    """(workspace, config, tokenizer, store): one file indexed, every refresh compacts."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("alpha_value = 1\n")
    tok = load_tokenizer(str(REPO / "rest_lsp" / "embedded"))
    cfg = IndexConfig(index_dir=str(tmp_path / "idx"), compact_tokens=1)
    return ws, cfg, tok, workspace_index.open_or_build(ws, cfg, tok, use_corpus=False)


def test_newline_and_unencodable_names_survive_a_refresh(tmp_path):
    ws, cfg, tok, store = compacting_store(tmp_path)
    (ws / "b\nc.py").write_text("newline_refresh_value = 2\n")
    bad = os.fsencode(ws) + b"/d\xff.py"
    with open(bad, "wb") as f:
        f.write(b"bad_refresh_value = 3\n")
    store.notify_changed([str(ws / "b\nc.py"), os.fsdecode(bad)])
    assert store.retrieve(tok.encode("newline_refresh_value =")).suffix_len >= 3
    store.close()
    reopened = workspace_index.open_or_build(ws, cfg, tok, use_corpus=False)
    assert reopened.verify() == []


def test_close_waits_for_a_background_compaction(tmp_path, monkeypatch):
    import threading

    from indexer import workspace as workspace_module

    ws, cfg, tok, store = compacting_store(tmp_path)
    entered, release, closed = threading.Event(), threading.Event(), threading.Event()
    write = workspace_module.write_workspace_shards

    def slow_write(*args, **kwargs):  # the compaction's writing, held until the test lets it go
        entered.set()
        release.wait(30)
        return write(*args, **kwargs)

    monkeypatch.setattr(workspace_module, "write_workspace_shards", slow_write)
    (ws / "b.py").write_text("beta_value = 2\n")
    store.notify_changed([str(ws / "b.py")])  # over compact_tokens: a background compaction
    assert entered.wait(30)
    closer = threading.Thread(target=lambda: (store.close(), closed.set()))
    closer.start()
    assert not closed.wait(0.3)  # still writing: close waits
    release.set()
    assert closed.wait(30)
    closer.join(30)
    reopened = workspace_index.open_or_build(ws, cfg, tok, use_corpus=False)
    assert reopened.verify() == []
    assert reopened.retrieve(tok.encode("beta_value =")).suffix_len >= 3
