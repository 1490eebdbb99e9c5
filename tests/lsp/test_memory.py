"""The daemon's heap taming: a no-op off glibc, a trimming thread on it."""

from __future__ import annotations

import threading

import pytest

from rest_lsp.lsp import memory


def test_tame_heap_starts_one_trim_thread_on_glibc():
    if memory._libc() is None:
        assert memory.tame_heap() is False
        return
    assert memory.tame_heap(interval=3600) is True
    assert any(t.name == "rest-lsp-heap-trim" and t.daemon for t in threading.enumerate())


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert memory.tame_heap() is False


class _NullWriter:
    """A transport that drops what the server writes."""

    def write(self, data) -> None:
        pass

    def close(self) -> None:
        pass


def _handle(server, message: dict) -> None:
    server.protocol.handle_message(server.protocol.structure_message(message))


def test_notifications_leave_no_futures_behind():
    """pygls files a Future per generator-handled notification and never drops it: we do."""
    from rest_lsp.lsp.server import create_server

    server = create_server()
    server.protocol.set_writer(_NullWriter())
    initialize = {"capabilities": {}, "rootUri": None}
    _handle(server, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
    doc = {"uri": "untitled:typed", "languageId": "python", "version": 1, "text": ""}
    _handle(server, {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": doc}})
    for version in range(2, 1002):  # 1,000 keystrokes
        _handle(server, {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": doc["uri"], "version": version}, "contentChanges": [{"text": "x" * version}]}})
    assert server.workspace.get_text_document(doc["uri"]).version == 1001  # they were handled
    assert len(server.protocol._request_futures) == 0


def test_heap_snapshots_are_off_unless_asked_for(tmp_path):
    assert memory.snapshot_heap_on_signal({}) is None


def test_first_trace_or_dump_starts_tracing_and_later_ones_write_snapshots(tmp_path):
    import tracemalloc

    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is on already: the first call would not be the first")
    try:
        assert memory.trace_or_dump(tmp_path) is None and tracemalloc.is_tracing()
        first, second = memory.trace_or_dump(tmp_path), memory.trace_or_dump(tmp_path)
        assert [first.name, second.name] == ["heap-001.tracemalloc", "heap-002.tracemalloc"]
        assert tracemalloc.Snapshot.load(str(second)).traces is not None
    finally:
        tracemalloc.stop()


def test_kernel_caches_are_capped_unless_the_user_set_them():
    environ = {"LRU_CACHE_CAPACITY": "16"}
    settings = memory.cap_kernel_caches(environ, entries=128)
    assert settings == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "128", "LRU_CACHE_CAPACITY": "16"}
    assert environ == settings


#: a child that runs a oneDNN-packed linear (the packed forward's GEMM) at 200 new row counts and
#: prints how much its resident memory grew, in MB, after trimming the heap
_NEW_ROW_COUNTS = """
import ctypes, torch
libc = ctypes.CDLL("libc.so.6")
def rss_mb():
    libc.malloc_trim(0)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
w = torch.randn(512, 512)
packed = torch.ops.mkldnn._reorder_linear_weight(w, 16)
def linear(rows):
    torch.ops.mkldnn._linear_pointwise(torch.randn(rows, 512), packed, None, "none", [], "")
for rows in range(1, 33):
    linear(rows)
before = rss_mb()
for rows in range(33, 233):
    linear(rows)
print(rss_mb() - before)
"""


def _growth_mb(capacity: int) -> float:
    import os
    import subprocess
    import sys

    env = dict(os.environ, **{name: str(capacity) for name in memory.KERNEL_CACHE_ENV})
    out = subprocess.run([sys.executable, "-c", _NEW_ROW_COUNTS], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return float(out.stdout.split()[-1])


@pytest.mark.slow
def test_capped_kernel_caches_stop_growing_with_new_row_counts():
    """The cap is honoured by this torch: new row counts no longer add memory (the control does)."""
    import torch

    if not torch.backends.mkldnn.is_available() or memory._libc() is None:
        pytest.skip("needs oneDNN and glibc")
    assert _growth_mb(8) < 16
    assert _growth_mb(1024) > 50  # the default capacity keeps a primitive per row count
