"""``rest-lsp bench compact``: tokens per step against bytes on disk, full suffix array vs compact tier.

Corpus-only drafting at one fixed draft budget on the HumanEval prompts (and, with
``--workspace``, the real-repository positions of ``bench repo``): the full suffix array over
1 %, 10 % and 100 % of the corpus, and compact tiers built from the full index at several byte
budgets.  Also the compact lookup latency, and build time and peak memory of `index compact`
(run as a subprocess so its peak resident memory is its own).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence


#: runs the CLI, then prints the process's own peak resident memory (VmHWM, kB) to stderr:
#: ``ru_maxrss`` survives exec, so a child's would start at this (large) process's peak
_MEASURED_CLI = (
    "import sys\n"
    "from rest_lsp.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "print('VmHWM_KB', hwm, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def build_tier(index_dir: Path, out: Path, max_bytes: int, rank: str = "count", max_n: int = 4) -> dict[str, Any]:
    """Run `rest-lsp index compact` in a subprocess; its report plus wall time and peak memory."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURED_CLI, "index", "compact", "--index-dir", str(index_dir),
                           "--out", str(out), "--max-bytes", str(max_bytes), "--rank", rank, "--max-n", str(max_n),
                           "--json"],
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    report = json.loads(done.stdout)
    peak_kib = int(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("VmHWM_KB")))
    report.update(wall_s=round(seconds, 2), peak_rss_mib=round(peak_kib / 1024, 1))
    return report


def lookup_latency(compact: Any, contexts: Sequence[Sequence[int]], span: int) -> dict[str, float]:
    """p50 / p99 of ``compact.lookup`` over the contexts, in ms, and how many lookups were timed.

    The tier is freshly opened: each context is looked up once, so an n-gram's first lookup
    decodes its tree and only repeated n-grams hit the cache of decoded trees.
    """
    times = []
    for ctx in contexts:
        t0 = time.perf_counter()
        compact.lookup(ctx, span)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50_ms": round(statistics.median(times) * 1e3, 4),
            "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3, 4), "lookups": len(times)}


def main(args: Any) -> int:
    """The ``rest-lsp bench compact`` command."""
    import torch

    from indexer.search.compact import CompactIndex
    from indexer.datastore import Datastore
    from rest_lsp.bench import humaneval
    from rest_lsp.bench import plots
    from rest_lsp.drafting.datastore import DatastoreDrafter, open_corpus_datastore
    from rest_lsp.engine.engine import Engine
    from rest_lsp.engine.model import describe
    from rest_lsp.errors import ConfigError

    config, loaded, out = humaneval.setup(args)
    store, line = open_corpus_datastore(str(loaded.source), args.index, config)
    if store is None:
        raise ConfigError(f"bench compact needs a corpus index: {line}")
    index_dir = Path(store.corpus[0].directory).parent
    full_bytes = sum(s.nbytes for s in store.corpus)
    if args.workspace:  # the real-repository workload: cursor positions in files of the repository
        from rest_lsp.bench import workloads

        root = Path(args.workspace).resolve()
        _, held = workloads.split_repository(root, config, args.held_out, 0)
        prompts, _ = workloads.completion_prompts(root, held, loaded.tokenizer, config.server.max_prompt_tokens,
                                             args.positions_per_file, 0)
        workload = f"{len(prompts)} positions in {len(held)} files of {root.name}"
    else:
        prompts = humaneval.humaneval_prompts(loaded.tokenizer, args.limit)
        workload = f"{len(prompts)} HumanEval prompts"
    print(f"corpus index {index_dir}: {full_bytes / 1e6:.1f} MB; {workload}, "
          f"budget {args.budget}, {args.max_new_tokens} new tokens")
    engine = Engine.from_loaded(loaded, config.decoding)
    greedy = humaneval.engine_method(engine, mode="greedy", max_new_tokens=args.max_new_tokens)
    reference = [greedy(p).tokens for p in prompts]
    rows: list[dict[str, Any]] = []

    def measure(method: str, label: str, ds: Any, index_bytes: int, extra: dict) -> None:
        run = humaneval.engine_method(engine, drafter=DatastoreDrafter(ds), budget=args.budget,
                                      max_new_tokens=args.max_new_tokens)
        runs = [run(p) for p in prompts]
        tokens, steps = sum(r.new_tokens for r in runs), sum(r.steps for r in runs)
        row = {"method": method, "label": label, "index_bytes": index_bytes,
               "tokens_per_step": round(tokens / steps, 4) if steps else 0.0,
               "tokens_per_s": round(tokens / sum(r.wall_s for r in runs), 2),
               "identical_to_greedy": sum(r.tokens == t for r, t in zip(runs, reference)) / len(runs), **extra}
        rows.append(row)
        print(f"  {label}: {index_bytes / 1e6:.2f} MB, {row['tokens_per_step']:.3f} tokens/step, "
              f"identical {row['identical_to_greedy']:.0%}")

    for fraction in [float(f) for f in args.fractions.split(",") if f.strip()]:
        sub = store if fraction >= 1.0 else humaneval.subsample_store(store, fraction)
        size = full_bytes if fraction >= 1.0 else int(full_bytes * humaneval.store_tokens(sub) / humaneval.store_tokens(store))
        measure("rest-full", f"full suffix array, {fraction:.0%} of the corpus", sub, size, {"fraction": fraction})
    contexts = [p[:k] for p in prompts for k in range(8, len(p), 9)]
    variants = [(rank, int(n)) for rank in args.ranks.split(",") if rank.strip()
                for n in args.max_ns.split(",") if n.strip()]
    for share, (rank, max_n) in [(float(f), v) for f in args.budgets.split(",") if f.strip() for v in variants]:
        tier_dir = out / f"compact-{share:g}-{rank}-{max_n}"
        report = build_tier(index_dir, tier_dir, int(full_bytes * share), rank, max_n)
        compact = CompactIndex.open(tier_dir, tokenizer_identity=store.tokenizer.identity)
        ds = Datastore(store.tokenizer, store.index_config, store.retrieval_config)
        ds.use_compact(compact)
        suffix = "" if (rank, max_n) == ("count", 4) else f", rank {rank}, n <= {max_n}"
        measure("rest-compact", f"compact tier, {share:.0%} of the full bytes{suffix}", ds, compact.nbytes,
                {"budget_share": share, "rank": rank, "max_n": max_n, "entries": compact.entries, "build": report,
                 "lookup": lookup_latency(compact, contexts, store.retrieval_config.span)})
    record = {"command": "rest-lsp " + shlex.join(sys.argv[1:]),  # quoted: `--fractions ""` survives
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
              "model": describe(loaded), "draft_budget": args.budget, "workload": workload, "prompts": len(prompts),
              "max_new_tokens": args.max_new_tokens, "configurations": rows}
    (out / "compact.json").write_text(json.dumps(record, indent=2, default=str))
    curves: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        name = "full suffix array" if r["method"] == "rest-full" else f"compact tier (rank {r['rank']}, n <= {r['max_n']})"
        curves.setdefault(name, []).append(
            (r["index_bytes"], r["tokens_per_step"]))
    png = plots.tokens_per_step_vs_bytes(curves, out / "compact.png", f"{workload}: corpus-only drafts, budget {args.budget}")
    print(f"written: {out / 'compact.json'}, {png}")
    return 0
