"""Resident memory of a process, read from Linux ``/proc`` (the benchmarks' and stress harnesses')."""

from __future__ import annotations


def rss_bytes(pid: int | str = "self") -> int:
    """The resident memory of process ``pid`` ("self": this one) in bytes; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_mb(pid: int | str = "self") -> float:
    """The resident memory of process ``pid`` in MiB; 0 when it is gone."""
    return rss_bytes(pid) / 2**20
