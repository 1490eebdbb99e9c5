"""``rest-lsp index``: build, inspect, verify, query and benchmark the datastore.

The inspecting actions (``stats``, ``verify``, ``query``) are ``index_inspection``; the helpers
every action shares are ``index_common``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from rest_lsp.commands.index_common import (
    _config,
    _progress_bar,
    _tokenizer_source,
    _where,
)
from rest_lsp.commands.index_inspection import _print_stats, run_query, run_stats, run_verify


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``index`` subcommand and its sub-subcommands."""
    p = sub.add_parser("index", help="build and inspect the retrieval datastore")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION")

    b = isub.add_parser("build", help="build (or bring up to date) a workspace's index")
    _where(b)
    b.add_argument("--corpus", action="append", metavar="DIR", default=None,
                   help="corpus root (repeatable); default: the standard library")
    b.add_argument("--no-corpus", action="store_true", help="index the workspace only")
    b.add_argument("--rebuild", action="store_true", help="rebuild even when the index is current")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="build the corpus alone into --index-dir, one Ray task per shard: 'local' (a Ray "
                        "instance here) or what ray.init takes ('auto', 'ray://host:10001'); needs the cluster extra")
    b.add_argument("--sharded", action="store_true",
                   help="build the corpus alone into --index-dir as --ray does, but in this process")
    b.add_argument("--shard-tokens", type=int, default=None, metavar="N",
                   help="target tokens per shard of a --ray/--sharded build (default 16M)")
    b.add_argument("--ray-cpus", type=int, default=None, metavar="N", help="CPUs of a --ray local instance (default: all)")
    b.add_argument("--retries", type=int, default=None, metavar="N", help="Ray retries of a failed shard task (default 3)")
    b.set_defaults(func=run_build)

    s = isub.add_parser("stats", help="counts and sizes of an index (workspace, corpus, sharded, compact or served)")
    _where(s, any_kind=True)
    s.add_argument("--remote", metavar="URL", default=None,
                   help="a served index (`rest-lsp datastore serve`) instead of a local one")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_stats)

    v = isub.add_parser("verify", help="check every shard's full checksum")
    _where(v)
    v.set_defaults(func=run_verify)

    q = isub.add_parser("query", help="retrieve continuations of TEXT from an index (workspace, corpus, "
                                      "sharded, compact or served)")
    q.add_argument("text", metavar="TEXT", help="the context (escape sequences like \\n are expanded)")
    _where(q, any_kind=True)
    q.add_argument("--mode", choices=("longest", "all_lengths", "rest_paper"), default="longest")
    q.add_argument("--span", type=int, default=None)
    q.add_argument("--limit", type=int, default=20, help="candidates shown")
    q.add_argument("--json", action="store_true")
    q.add_argument("--dense", action="store_true",
                   help="also the dense neighbours (the model's hidden state at TEXT's end; loads the model)")
    q.add_argument("--remote", metavar="URL", default=None,
                   help="ask a served index (`rest-lsp datastore serve`) instead of a local one")
    q.set_defaults(func=run_query)

    d = isub.add_parser("dense", help="build a workspace's dense index (DReSD: the model's hidden states)")
    _where(d)
    d.add_argument("--model", default="", metavar="NAME", help="model.name (docs/models.md); default: the default model")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=lambda args: _dense_actions().run_dense(args))

    from rest_lsp.bench import index as bench_module  # standard library imports only

    c = isub.add_parser("compact", help="build a compact corpus tier (CREST): frequent n-grams with precomputed trees")
    c.add_argument("--index-dir", metavar="IN", default=None,
                   help="the corpus index to compact (default: the default corpus index)")
    c.add_argument("--out", metavar="OUT", required=True, help="directory of the compact tier (replaced)")
    budget = c.add_mutually_exclusive_group()
    budget.add_argument("--max-bytes", type=_size, default=0, metavar="N",
                        help="bytes on disk for the whole tier (suffixes k, M, G accepted)")
    budget.add_argument("--top-ngrams", type=int, default=0, metavar="N", help="keep the N most frequent n-grams")
    c.add_argument("--max-n", type=int, default=4, help="longest n-gram kept")
    c.add_argument("--tree-nodes", type=int, default=64, help="nodes of each stored draft tree")
    c.add_argument("--depth", type=int, default=10, help="tokens per stored continuation")
    c.add_argument("--min-count", type=int, default=2, help="n-grams seen fewer times are never kept")
    c.add_argument("--rank", choices=("count", "next"), default="count",
                   help="count: most frequent n-grams first (CREST); next: most often followed by their top next token")
    c.add_argument("--tokenizer", metavar="PATH", default=None,
                   help="tokenizer.json or model directory (default: the model's: model.name, else the default model)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_compact)

    pr = isub.add_parser("prune", help="remove cached indexes nothing uses any more (lists them unless --yes)")
    pr.add_argument("--yes", action="store_true", help="remove them (default: only list them)")
    pr.add_argument("--tokenizer", metavar="PATH", default=None,
                    help="tokenizer.json or model directory (default: the model's: model.name, else the default model)")
    pr.add_argument("--config", metavar="FILE", default=None, help="config file (TOML or JSON)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=run_prune)

    bench = isub.add_parser("bench", help="the datastore benchmark (same as python -m rest_lsp.bench.index)")
    bench_module.add_arguments(bench)
    bench.set_defaults(func=run_bench)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_build(args) -> int:
    import os
    import time

    from indexer import workspace_index
    from indexer.tokens import load_tokenizer

    if args.ray or args.sharded:
        return run_sharded_build(args)
    config = _config(args)
    tok = load_tokenizer(_tokenizer_source(args, config))
    progress, close = _progress_bar()
    t0 = time.perf_counter()
    try:
        if args.rebuild:
            cdir = None
            if not args.no_corpus:
                cdir = workspace_index.corpus_dir(config.index, tok)
                workspace_index.build_corpus(config.index, tok, cdir, progress)
            workspace_index.build_workspace(os.path.abspath(args.workspace or "."), config.index,
                                            tok, cdir, None, progress)
        store = workspace_index.open_or_build(os.path.abspath(args.workspace or "."), config, tok,
                                              progress=progress, use_corpus=not args.no_corpus)
    finally:
        close()
    stats = store.stats()
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_stats(stats)
    return 0


def run_sharded_build(args) -> int:
    """``index build --ray ADDRESS`` / ``--sharded``: the corpus alone, partitioned, into --index-dir."""
    from indexer.building import partition
    from indexer.tokens import load_tokenizer
    from rest_lsp.errors import ConfigError

    if not args.index_dir:
        raise ConfigError("--ray and --sharded build into --index-dir OUT (a path every worker sees)")
    if args.workspace or args.no_corpus:
        raise ConfigError("--ray and --sharded build a corpus index only: drop --workspace / --no-corpus")
    config = _config(args)
    config.index.index_dir = ""
    tok = load_tokenizer(_tokenizer_source(args, config))
    shard_tokens = args.shard_tokens or partition.DEFAULT_SHARD_TOKENS
    progress, close = _progress_bar(unit="shard")
    try:
        if args.ray:
            from indexer.remote import cluster

            kwargs = {} if args.retries is None else {"retries": args.retries}
            # Ray prints some of its own messages (a task retried, a worker lost) on stdout even
            # with log_to_driver off: they go to stderr, so that stdout carries the result only
            with contextlib.redirect_stdout(sys.stderr):
                report = cluster.build_on_ray(config.index, tok, args.index_dir, args.ray, shard_tokens=shard_tokens,
                                              num_cpus=args.ray_cpus, progress=progress, **kwargs)
        else:
            report = partition.build_corpus_sharded(config.index, tok, args.index_dir, shard_tokens=shard_tokens,
                                                    progress=progress)
    finally:
        close()
    out = report.as_dict()
    if args.json:
        print(json.dumps({"index_dir": args.index_dir, **out}, indent=2))
    else:
        print(f"corpus index {args.index_dir}: {len(report.shards)} shard(s) ({report.reused_shards} reused), "
              f"{report.files:,} files, {report.tokens:,} tokens in {report.seconds:.1f} s "
              f"({out['mtok_per_s']:.2f} M tokens/s) with {report.executor}")
    return 0


def run_prune(args) -> int:
    """List (or with --yes remove) the cached indexes that nothing will use again."""
    from indexer.storage import cache_dirs
    from indexer.tokens import load_tokenizer
    from indexer.workspace_index import cache_root, corpus_dir

    config = _config(args)
    root = cache_root()
    stale = cache_dirs.stale_entries(root, keep=[corpus_dir(config.index, load_tokenizer(_tokenizer_source(args, config)))])
    total = sum(e.bytes for e in stale)
    freed = cache_dirs.remove(stale) if args.yes else 0
    if args.json:
        print(json.dumps({"cache": str(root), "removed": bool(args.yes), "bytes": total,
                          "entries": [{"path": str(e.path), "kind": e.kind, "reason": e.reason, "bytes": e.bytes}
                                      for e in stale]}, indent=2))
        return 0
    for e in stale:
        print(f"{e.bytes / 1e6:8.1f} MB  {e.kind:<9} {e.path}  ({e.reason})")
    if not stale:
        print(f"nothing to prune under {root}")
    elif args.yes:
        print(f"removed {len(stale)} entries, {freed / 1e6:.1f} MB")
    else:
        print(f"{len(stale)} entries, {total / 1e6:.1f} MB: run again with --yes to remove them")
    return 0


def _size(text: str) -> int:
    """A byte count with an optional k/M/G suffix (powers of 1000)."""
    text = text.strip()
    scale = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def run_compact(args) -> int:
    import dataclasses

    from indexer.search.compact import CompactSettings
    from indexer.building.compact import build_compact
    from indexer.tokens import load_tokenizer
    from indexer.workspace_index import corpus_dir
    from rest_lsp.config.schema import Config

    config = Config()
    tok = load_tokenizer(_tokenizer_source(args, config))
    index_dir = args.index_dir or corpus_dir(config.index, tok)
    settings = CompactSettings(max_n=args.max_n, depth=args.depth, tree_nodes=args.tree_nodes,
                               max_bytes=args.max_bytes, top_ngrams=args.top_ngrams, min_count=args.min_count,
                               rank=args.rank)
    report = build_compact(index_dir, args.out, settings, tokenizer_identity=tok.identity,
                           progress=lambda m: print(m, file=sys.stderr))
    out = {"out": str(args.out), "source": str(index_dir), **dataclasses.asdict(report),
           "bytes_per_source_token": report.bytes / max(report.source_tokens, 1)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"compact tier {args.out}: {report.entries:,} n-grams (by length {report.per_n}) of "
              f"{report.candidates:,} qualifying, {report.bytes / 1e6:.2f} MB "
              f"({out['bytes_per_source_token']:.3f} bytes per corpus token), {report.seconds:.1f} s")
        print("use it: [index] corpus_tier = \"compact\", corpus_compact_dir = \"" + str(args.out) + "\"")
    return 0


def run_bench(args) -> int:
    from rest_lsp.bench import index as bench

    return bench.run(args)


def _dense_actions():
    """The dense-tier actions (imported when used: they load the model)."""
    from rest_lsp.commands import index_dense

    return index_dense
