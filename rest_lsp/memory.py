"""The daemon's heap: fewer glibc arenas and a periodic trim, so its resident memory stays flat.

A daemon that decodes on one thread, reads files on another and answers the protocol on a third
gets one glibc malloc arena per thread that allocates; freed memory inside an arena is kept by
the process (Python's large objects are malloc'd: token lists, numpy arrays, msgpack buffers),
so resident memory creeps up over hours of typing though nothing leaks.  ``tame_heap`` caps the
arenas at 2 (before the threads start) and starts a thread that returns free heap pages to the
kernel (``malloc_trim``) every ``interval`` seconds.  Both are no-ops where glibc is not the C
library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

M_ARENA_MAX = -8  # glibc mallopt parameter


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
