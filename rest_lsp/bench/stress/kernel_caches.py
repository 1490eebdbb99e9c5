"""``python -m rest_lsp.bench.stress.kernel_caches``: resident memory of the packed forward per new row count.

oneDNN keeps a primitive per weight matrix and row count (and torch's ideep layer another cache
of them); this measures what that costs for the embedded model under the kernel-cache capacity
of the environment (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, ``LRU_CACHE_CAPACITY``; ``--capacity``
sets both).  The heap is set up as the daemon's (2 arenas) and trimmed before each reading, so
what remains is held, not merely free.  Two workloads:

- ``shapes``: one forward per row count, 1-64, the same again, 65-192, the same again, 1-64;
- ``typing``: three rounds of a typing-like mix: draft trees of ~1-20 rows (exponential, mean 6,
  at most 65) with a prefill chunk of 1-256 rows every 8th step.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from rest_lsp.bench.resident import rss_mb


def trimmed_rss_mb(libc) -> float:
    """This process's resident memory in MiB after returning free heap pages to the kernel."""
    libc.malloc_trim(0)
    return rss_mb("self")


def forward(runner, rows: int, logits: str) -> None:
    """One forward of ``rows`` new tokens on an empty cache."""
    import torch

    cache = runner.new_cache()
    tokens = torch.arange(rows) % 1000 + 10
    runner.forward(cache, tokens, torch.arange(rows), torch.ones(rows, rows, dtype=torch.bool).tril(), logits=logits)


def shapes(runner, libc) -> list[str]:
    """RSS after each phase of row counts (a repeated phase meets only known shapes)."""
    out = [f"loaded: {trimmed_rss_mb(libc):.0f} MB"]
    for name, counts in [("rows 1-64", range(1, 65)), ("rows 1-64 again", range(1, 65)),
                         ("rows 65-192", range(65, 193)), ("rows 65-192 again", range(65, 193)),
                         ("rows 1-64 again", range(1, 65))]:
        t0 = time.perf_counter()
        for rows in counts:
            forward(runner, rows, "all")
        out.append(f"{name}: {trimmed_rss_mb(libc):.0f} MB ({time.perf_counter() - t0:.1f} s)")
    return out


def typing(runner, libc, rounds: int = 3, steps: int = 400, seed: int = 0) -> list[str]:
    """Growth over the loaded model and ms per forward, per round of the typing-like mix."""
    rng = random.Random(seed)
    base = trimmed_rss_mb(libc)
    out = []
    for r in range(rounds):
        t0, n = time.perf_counter(), 0
        for i in range(steps):
            forward(runner, min(65, 1 + int(rng.expovariate(1 / 6))), "all")
            n += 1
            if i % 8 == 0:
                forward(runner, rng.randint(1, 256), "none")
                n += 1
        out.append(f"round {r + 1}: +{trimmed_rss_mb(libc) - base:.0f} MB, "
                   f"{1000 * (time.perf_counter() - t0) / n:.1f} ms/forward")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rest_lsp.bench.stress.kernel_caches",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, help="entries of both kernel caches (default: the environment's)")
    parser.add_argument("--workload", choices=("shapes", "typing"), default="shapes")
    args = parser.parse_args(argv)
    if args.capacity is not None:  # before torch loads: oneDNN and ideep read it once
        from rest_lsp.lsp.memory import KERNEL_CACHE_ENV

        os.environ.update({name: str(args.capacity) for name in KERNEL_CACHE_ENV})
    from rest_lsp.lsp.memory import M_ARENA_MAX, _libc

    libc = _libc()
    if libc is None:
        raise SystemExit("needs glibc (malloc_trim) and /proc")
    libc.mallopt(M_ARENA_MAX, 2)  # the daemon's heap
    from rest_lsp.config.schema import Config
    from rest_lsp.engine.model import load_model

    runner = load_model(Config().model).runner
    if runner is None:
        raise SystemExit("the model does not run on the packed forward here: no oneDNN kernels to measure")
    capacity = {k: os.environ.get(k, "default") for k in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    lines = shapes(runner, libc) if args.workload == "shapes" else typing(runner, libc)
    print(f"{args.workload}, kernel caches {capacity}: " + "; ".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
