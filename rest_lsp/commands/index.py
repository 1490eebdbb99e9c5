"""``rest-lsp index``: build, inspect, verify, query and benchmark the datastore."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


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
    d.set_defaults(func=lambda args: _dense().run_dense(args))

    from indexer import bench as bench_module  # standard library imports only

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

    bench = isub.add_parser("bench", help="the datastore benchmark (same as python -m indexer.bench)")
    bench_module.add_arguments(bench)
    bench.set_defaults(func=run_bench)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _dense():
    """The dense-tier actions (imported when used: they load the model)."""
    from rest_lsp.commands import index_dense

    return index_dense


def _where(p: argparse.ArgumentParser, any_kind: bool = False) -> None:
    p.add_argument("--workspace", metavar="DIR", default=None, help="workspace root (default: .)")
    kinds = (": a workspace or corpus index (`index build`), a sharded one (`index build --sharded/--ray`), "
             "a compact tier (`index compact --out`) or a served index's http(s):// URL") if any_kind else ""
    p.add_argument("--index-dir", metavar="DIR", default=None,
                   help=f"index directory (default: the user cache dir, keyed by workspace){kinds}")
    p.add_argument("--tokenizer", metavar="PATH", default=None,
                   help="tokenizer.json or model directory (default: the model's: model.name, else the default model)")
    p.add_argument("--config", metavar="FILE", default=None, help="config file (TOML or JSON)")


def _config(args):
    from rest_lsp.config import Config
    from rest_lsp.config_sources import load_file

    if getattr(args, "config", None):
        config, problems = load_file(args.config)
        for problem in problems:
            print(f"rest-lsp: config: {problem}", file=sys.stderr)
    else:
        config = Config()
    if getattr(args, "corpus", None):
        config.index.corpus_roots = list(args.corpus)
    if getattr(args, "index_dir", None):
        config.index.index_dir = args.index_dir
    return config


def _tokenizer_source(args, config) -> str:
    """``--tokenizer``, else the tokenizer of the model the daemon would load (``config``'s
    ``model.name``; an empty name: the default model), so that the index is the daemon's."""
    if args.tokenizer:
        return args.tokenizer
    from rest_lsp.models.resolve import resolve

    # the tokenizer alone: a GGUF model's folder without its converted weights does
    return resolve(config.model.name, log=lambda message: print(message, file=sys.stderr), weights=False).folder


def _progress_bar(unit: str = "B"):
    """A progress callback drawing a tqdm bar on stderr; returns (callback, close)."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, unit_scale=unit == "B", file=sys.stderr, leave=False, dynamic_ncols=True)

    def progress(done: int, total: int, message: str) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_description_str(message[:60], refresh=False)
        bar.refresh()

    return progress, bar.close


def _located(args):
    """The index an inspecting command names (``indexer.index_kind.IndexKind``): ``--remote``, else
    ``--index-dir`` (a folder of any kind, or a served index's URL), else the workspace's index."""
    import os

    from indexer import index_kind
    from indexer.workspace_index import workspace_dir

    if getattr(args, "remote", None):
        return index_kind.detect(args.remote if index_kind.is_url(args.remote) else f"http://{args.remote}")
    if args.index_dir:
        return index_kind.detect(args.index_dir)
    return index_kind.detect(workspace_dir(os.path.abspath(args.workspace or "."), _config(args).index))


def _open(args, found=None):
    """(the datastore of the index an inspecting command names, its tokenizer, its kind).

    A workspace, corpus or sharded index opens as it is on disk (a workspace's with the configured
    compact corpus tier, ``index.corpus_tier = "compact"``); a compact tier opens as the corpus
    tier of a datastore with no other tier; a served index gives a datastore with no tier (the
    configuration and tokenizer its queries are made with)."""
    from pathlib import Path

    from indexer.datastore import Datastore
    from indexer.tokens import load_tokenizer
    from indexer.workspace_index import open_compact

    found = found or _located(args)  # before the tokenizer: a folder of no kind fails at once
    config = _config(args)
    tok = load_tokenizer(_tokenizer_source(args, config))
    if found.kind == "compact":
        store = Datastore(tok, config.index, config.retrieval, index_dir=Path(found.location))
        store.use_compact(open_compact(found.location, tok))
    elif found.kind == "remote":
        store = Datastore(tok, config.index, config.retrieval)
    else:
        store = Datastore.open(found.location, tok, config)
        if config.index.corpus_tier == "compact" and found.kind == "workspace":
            store.use_compact(open_compact(config.index.corpus_compact_dir, tok))
    return store, tok, found


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
    from indexer import partition
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
            from indexer import cluster

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


def run_stats(args) -> int:
    store, tok, found = _open(args)
    stats = store.stats()
    stats["index_dir"] = found.location
    stats["index_kind"] = found.kind
    if found.kind == "sharded":
        stats["built_with"] = found.pointer.get("built_with")
        stats["shard_tokens"] = found.pointer.get("shard_tokens")
    if found.kind == "remote":
        stats["corpus"] = _served_tier(found.location, tok, store.index_config)
        stats["tiers"]["corpus"] = stats["corpus"]["tokens"]
    if found.kind == "workspace":
        dense = _dense().dense_stats(args)
        if dense is not None:
            stats["dense"] = dense
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_stats(stats)
    return 0


def run_prune(args) -> int:
    """List (or with --yes remove) the cached indexes that nothing will use again."""
    from indexer import cache_dirs
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


def _served_tier(url: str, tok, index_config) -> dict:
    """The corpus tier of a served index as ``index stats`` shows it: its ``/info``."""
    from indexer.remote import RemoteTier

    tier = RemoteTier(url, tok.identity, budget_ms=index_config.remote_budget_ms, retry_s=0)
    try:
        info = tier.info()
    finally:
        tier.close()
    served = str(info.get("tokenizer"))
    return {"kind": "remote", "url": url, "shards": int(info.get("shards", 0)), "docs": None,
            "tokens": int(info.get("tokens", 0)), "bytes": None, "replicas": info.get("replicas"),
            "served_dir": info.get("index_dir"),
            "tokenizer": served, "tokenizer_matches": served == tok.identity}


def _print_stats(stats: dict) -> None:
    kind = stats.get("index_kind")
    built = f": {stats['built_with']} build" if stats.get("built_with") else ""
    print(f"index: {stats['index_dir']}" + (f" ({kind} index{built})" if kind else ""))
    t = stats["tokenizer"]
    print(f"tokenizer: {t['source']} (sha256 {t['identity'][:12]}, vocab {t['vocab_size']}, "
          f"separator {t['separator']!r} = {t['separator_id']})")
    for tier in ("live", "workspace", "corpus"):
        s = stats[tier]
        if s.get("kind") == "compact":
            print(f"{tier:>9}: compact, {s['entries']:,} n-grams, {s['bytes'] / 1e6:.1f} MB")
            continue
        if s.get("kind") == "remote":
            match = "" if s["tokenizer_matches"] else (f"; built with tokenizer {s['tokenizer'][:12]}, not this "
                                                      f"one ({t['identity'][:12]}): its drafts would not fit")
            print(f"{tier:>9}: served at {s['url']}, {s['shards']} shard(s), {s['tokens']:,} tokens, "
                  f"{s['replicas']} replica(s){match}")
            continue
        per = f", {s['bytes'] / s['tokens']:.2f} bytes/token" if s["tokens"] else ""
        print(f"{tier:>9}: {s['shards']} shard(s), {s['docs']:,} docs, {s['tokens']:,} tokens, "
              f"{s['bytes'] / 1e6:.1f} MB{per}")
    d = stats.get("dense")
    if d and "error" in d:
        print(f"{'dense':>9}: {d['error']}")
    elif d:
        print(f"{'dense':>9}: {d['entries']:,} entries from {d['documents']:,} files, {d['bytes_per_entry']} bytes/entry"
              + (f", embedded at {d['embed_tokens_per_s']:,.0f} tokens/s" if "embed_tokens_per_s" in d else ""))
    if "seconds" in stats:
        print(f"took {stats['seconds']:.2f} s")


def run_verify(args) -> int:
    from rest_lsp.errors import DatastoreError

    found = _located(args)
    if found.kind == "remote":
        raise DatastoreError(f"{found.location} is a served index: verify its folder where it is served "
                             "(`rest-lsp index verify --index-dir DIR`)", url=found.location)
    store, _, _ = _open(args, found)
    problems = store.verify()
    for p in problems:
        print(f"corrupt: {p}")
    print("ok" if not problems else f"{len(problems)} problem(s): rebuild with `rest-lsp index build --rebuild`")
    return 0 if not problems else 1


def run_query(args) -> int:
    store, tok, found = _open(args)
    text = args.text.encode("utf-8").decode("unicode_escape") if "\\" in args.text else args.text
    ids = tok.encode(text)
    if found.kind == "remote":
        from indexer.remote import Request, RemoteTier

        tier = RemoteTier(found.location, tok.identity, budget_ms=store.index_config.remote_budget_ms, retry_s=0)
        try:
            r = tier.fetch(Request.of_query(tok.identity, ids, store.query(ids, span=args.span, mode=args.mode)))
        finally:
            tier.close()
    else:
        r = store.retrieve(ids, span=args.span, mode=args.mode)
    w = store.retrieval_config.max_suffix
    matched = ids[len(ids) - r.suffix_len:] if r.suffix_len else []
    shown = r.candidates[: args.limit]
    dense = _dense().dense_neighbours(args, text) if args.dense else None
    if args.json:
        print(json.dumps({
            **({"dense": dense} if dense is not None else {}),
            "context_ids": ids, "suffix_len": r.suffix_len, "matched_text": tok.decode(matched),
            "seconds": r.seconds, "total_candidates": len(r.candidates),
            "candidates": [{"tokens": list(c.tokens), "text": tok.decode(c.tokens), "count": c.count,
                            "source": c.source, "suffix_len": c.suffix_len} for c in shown],
        }, indent=2))
        return 0
    print(f"context: {len(ids)} tokens; searched the last {min(w, len(ids))}")
    print(f"matched suffix: {r.suffix_len} tokens {tok.decode(matched)!r}")
    print(f"latency: {r.seconds * 1000:.3f} ms; {len(r.candidates)} candidate(s)")
    for c in shown:
        print(f"  {c.count:>6}  {c.source:<9} L={c.suffix_len:<2} {tok.decode(c.tokens)!r}  {list(c.tokens)}")
    if dense is not None:
        print(f"dense neighbours: {len(dense)}")
        for n in dense[: args.limit]:
            print(f"  {n['score']:.3f}  {n['path']}  {n['text']!r}")
    return 0


def _size(text: str) -> int:
    """A byte count with an optional k/M/G suffix (powers of 1000)."""
    text = text.strip()
    scale = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def run_compact(args) -> int:
    import dataclasses

    from indexer.compact import CompactSettings
    from indexer.compact_build import build_compact
    from indexer.tokens import load_tokenizer
    from indexer.workspace_index import corpus_dir
    from rest_lsp.config import Config

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
    from indexer import bench

    return bench.run(args)
