"""The daemon's memory: fewer glibc arenas, a periodic trim and capped kernel caches, so it stays flat.

A daemon that decodes on one thread, reads files on another and answers the protocol on a third
gets one glibc malloc arena per thread that allocates; freed memory inside an arena is kept by
the process (Python's large objects are malloc'd: token lists, numpy arrays, msgpack buffers),
so resident memory creeps up over hours of typing though nothing leaks.  ``tame_heap`` caps the
arenas at 2 (before the threads start) and starts a thread that returns free heap pages to the
kernel (``malloc_trim``) every ``interval`` seconds.  Both are no-ops where glibc is not the C
library.

``cap_kernel_caches`` bounds what grew most: oneDNN (the packed forward's GEMMs) builds and keeps
a primitive per weight matrix and row count, and torch's ideep layer keeps a cache of its own,
each up to 1,024 entries by default, about 3 MB per new row count for the embedded model.  A
typing daemon meets new row counts all session (prefill chunks of 1-256 rows, draft trees of
1-65), so the caches kept filling: 64 entries each (least recently used ones leave) hold the hot
shapes in about 40 MB.

``snapshot_heap_on_signal`` is for finding a leak, off unless asked for: with
``REST_LSP_HEAP_SNAPSHOTS=DIR`` in its environment, the first ``kill -USR2 PID`` starts tracing
Python allocations (``tracemalloc``, slower) and every later one writes a snapshot to DIR; diff
two with ``Snapshot.compare_to``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path
from typing import Mapping, MutableMapping

M_ARENA_MAX = -8  # glibc mallopt parameter
#: entries kept in each of oneDNN's and ideep's primitive caches (their default: 1,024 each)
KERNEL_CACHE_ENTRIES = 64
#: the environment variables oneDNN and torch's ideep read their cache capacities from
KERNEL_CACHE_ENV = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
#: the environment variable that turns heap snapshots on (its value: the folder they go to)
HEAP_SNAPSHOTS_ENV = "REST_LSP_HEAP_SNAPSHOTS"


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def tame_heap(interval: float = 30.0) -> bool:
    """Cap the malloc arenas and trim the heap every ``interval`` s; False where not glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt(M_ARENA_MAX, 2)
    stop = threading.Event()

    def trim() -> None:
        while not stop.wait(interval):
            libc.malloc_trim(0)

    threading.Thread(target=trim, name="rest-lsp-heap-trim", daemon=True).start()
    return True


def cap_kernel_caches(environ: MutableMapping[str, str] = os.environ,
                      entries: int = KERNEL_CACHE_ENTRIES) -> dict[str, str]:
    """Cap oneDNN's and ideep's primitive caches (before torch is imported); the settings in force.

    A capacity the user set in the environment is kept.
    """
    for name in KERNEL_CACHE_ENV:
        environ.setdefault(name, str(entries))
    return {name: environ[name] for name in KERNEL_CACHE_ENV}


def snapshot_heap_on_signal(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Heap snapshots on SIGUSR2 when asked for; the folder they go to, or None."""
    import signal

    folder = environ.get(HEAP_SNAPSHOTS_ENV)
    if not folder or not hasattr(signal, "SIGUSR2"):
        return None
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGUSR2, lambda signum, frame: trace_or_dump(out))
    return out


def trace_or_dump(folder: Path) -> Path | None:
    """Start tracing allocations (the first call), or write a snapshot to ``folder`` (later calls).

    Tracing starts late on purpose: start-up under ``tracemalloc`` is many times slower, and
    growth is about what is allocated after it.  Returns the snapshot written, if any.
    """
    import tracemalloc

    if not tracemalloc.is_tracing():
        tracemalloc.start(16)  # frames per allocation: enough to see which cache holds it
        return None
    path = folder / f"heap-{len(list(folder.glob('heap-*.tracemalloc'))) + 1:03d}.tracemalloc"
    tracemalloc.take_snapshot().dump(str(path))
    return path
