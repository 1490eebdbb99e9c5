"""The daemon's heap taming: a no-op off glibc, a trimming thread on it."""

from __future__ import annotations

import threading

from rest_lsp import memory


def test_tame_heap_starts_one_trim_thread_on_glibc():
    if memory._libc() is None:
        assert memory.tame_heap() is False
        return
    assert memory.tame_heap(interval=3600) is True
    assert any(t.name == "rest-lsp-heap-trim" and t.daemon for t in threading.enumerate())


def test_without_glibc_nothing_happens(monkeypatch):
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert memory.tame_heap() is False
