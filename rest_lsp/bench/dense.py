"""``rest-lsp bench dense``: the dense tier's search (recall, latency, bytes) and embedding speed.

Entries are the embedded model's reduced hidden states at every position of standard-library
files (up to ``--entries``); queries are the states of other files.  Every faiss layout tried
is scored against exact search (a flat inner-product index) on recall@50, single-query latency
p50 / p99, and bytes per entry (the serialised index plus 2 bytes of continuation token).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 50


def stdlib_files() -> list[Path]:
    """The standard library's ``*.py`` files (site-packages left out), in a fixed order."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)


def embed_stdlib(loaded: Any, entries: int, queries: int, dims: int = 64) -> dict[str, Any]:
    """Hidden states of stdlib files until ``entries`` + query positions: reduced vectors."""
    from indexer.search.dense import Projection
    from rest_lsp.drafting.dense import hidden_states_of

    files = stdlib_files()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(files))
    states, tokens_done, seconds = [], 0, 0.0
    query_states = []
    for i in order:
        text = files[i].read_text(errors="replace")
        ids = loaded.tokenizer.encode(text)[:4096]
        if len(ids) < 64:
            continue
        t0 = time.perf_counter()
        s = hidden_states_of(loaded.runner or loaded.model, ids)
        seconds += time.perf_counter() - t0
        tokens_done += len(ids)
        if sum(len(q) for q in query_states) < queries:
            query_states.append(s[rng.permutation(len(s))[: max(1, queries // 20)]])
            continue
        states.append(s)
        if sum(len(x) for x in states) >= entries:
            break
    base = np.concatenate(states)[:entries]
    projection = Projection.fit(base[rng.permutation(len(base))[:50_000]], dims)
    return {"base": projection.apply(base), "queries": projection.apply(np.concatenate(query_states)[:queries]),
            "embed_tokens": tokens_done, "embed_s": seconds}


def layouts(dims: int, n: int) -> dict[str, Any]:
    """The faiss layouts compared: name -> (factory, nprobe or efSearch setter)."""
    import faiss

    nlist = int(4 * np.sqrt(n))
    ip = faiss.METRIC_INNER_PRODUCT
    out = {}
    for nprobe in (8, 16, 32):
        out[f"ivf{nlist}-sq8-nprobe{nprobe}"] = (lambda: faiss.index_factory(dims, f"IVF{nlist},SQ8", ip),
                                                 ("nprobe", nprobe))
        out[f"ivf{nlist}-pq32-nprobe{nprobe}"] = (lambda: faiss.index_factory(dims, f"IVF{nlist},PQ32", ip),
                                                  ("nprobe", nprobe))
    for ef in (64, 128):
        out[f"hnsw32-sq8-ef{ef}"] = (lambda: faiss.index_factory(dims, "HNSW32,SQ8", ip), ("efSearch", ef))
    return out


def score_layouts(base: np.ndarray, queries: np.ndarray, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Recall@50, latency and bytes per entry of each layout (single-threaded queries)."""
    import faiss

    n, dims = base.shape
    exact = faiss.IndexFlatIP(dims)
    exact.add(base)
    _, truth = exact.search(queries, K)
    rows = []
    built: dict[str, Any] = {}
    for name, (factory, (knob, value)) in layouts(dims, n).items():
        if only and not any(o in name for o in only):
            continue
        key = name.rsplit("-", 1)[0]  # the same index, another search knob
        t0 = time.perf_counter()
        if key not in built:
            index = factory()
            index.train(base[np.random.default_rng(0).permutation(n)[: min(n, 40 * int(4 * np.sqrt(n)))]])
            index.add(base)
            built[key] = (index, time.perf_counter() - t0)
        index, build_s = built[key]
        if knob == "nprobe":
            index.nprobe = value
        else:
            index.hnsw.efSearch = value
        times, hits = [], 0
        for q in range(len(queries)):
            t0 = time.perf_counter()
            _, ids = index.search(queries[q:q + 1], K)
            times.append(time.perf_counter() - t0)
            hits += len(np.intersect1d(ids[0], truth[q]))
        times.sort()
        size = faiss.serialize_index(index).nbytes
        rows.append({"layout": name, "entries": n, "recall_at_50": round(hits / (K * len(queries)), 4),
                     "p50_ms": round(times[len(times) // 2] * 1e3, 4),
                     "p99_ms": round(times[int(0.99 * (len(times) - 1))] * 1e3, 4),
                     "bytes_per_entry": round(size / n + 2, 1), "build_s": round(build_s, 1)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| layout | recall@50 | p50 ms | p99 ms | bytes/entry | build s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layout']} | {r['recall_at_50']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['bytes_per_entry']:.1f} | {r['build_s']:.1f} |")
    return "\n".join(lines)


def main(args: Any) -> int:
    """The ``rest-lsp bench dense`` command (search part)."""
    import faiss
    import torch

    from rest_lsp.config.schema import ModelConfig
    from rest_lsp.engine.model import load_model

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(1)  # one query at a time, as the daemon asks
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = out.with_suffix(".vectors.npz")
    if args.reuse and cache.exists():
        data = dict(np.load(cache))
        meta = json.loads(str(data.pop("meta")))
    else:
        loaded = load_model(ModelConfig(name=args.model or "", threads=args.threads))
        got = embed_stdlib(loaded, args.entries, args.queries)
        meta = {"embed_tokens": got["embed_tokens"], "embed_s": got["embed_s"]}
        np.savez(cache, base=got["base"], queries=got["queries"], meta=json.dumps(meta))
        data = got
    rows = score_layouts(np.ascontiguousarray(data["base"]), np.ascontiguousarray(data["queries"]), args.only)
    result = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
              "embed_tokens_per_s": round(meta["embed_tokens"] / meta["embed_s"], 1),
              "queries": int(len(data["queries"])), "layouts": rows}
    out.write_text(json.dumps(result, indent=1))
    print(f"embedding: {result['embed_tokens_per_s']} tokens/s ({meta['embed_tokens']} tokens, {args.threads} threads)")
    print(table(rows))
    print(f"wrote {out}")
    return 0
