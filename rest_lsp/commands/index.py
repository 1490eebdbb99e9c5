"""``rest-lsp index``: build, inspect, verify, query and benchmark the datastore."""

from __future__ import annotations

import argparse
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
    b.set_defaults(func=run_build)

    s = isub.add_parser("stats", help="counts and sizes of an index")
    _where(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_stats)

    v = isub.add_parser("verify", help="check every shard's full checksum")
    _where(v)
    v.set_defaults(func=run_verify)

    q = isub.add_parser("query", help="retrieve continuations of TEXT")
    q.add_argument("text", metavar="TEXT", help="the context (escape sequences like \\n are expanded)")
    _where(q)
    q.add_argument("--mode", choices=("longest", "all_lengths", "rest_paper"), default="longest")
    q.add_argument("--span", type=int, default=None)
    q.add_argument("--limit", type=int, default=20, help="candidates shown")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_query)

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
                   help="tokenizer.json or model directory (default: the embedded model's)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_compact)

    bench = isub.add_parser("bench", help="the datastore benchmark (same as python -m indexer.bench)")
    bench_module.add_arguments(bench)
    bench.set_defaults(func=run_bench)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", metavar="DIR", default=None, help="workspace root (default: .)")
    p.add_argument("--index-dir", metavar="DIR", default=None,
                   help="index directory (default: the user cache dir, keyed by workspace)")
    p.add_argument("--tokenizer", metavar="PATH", default=None,
                   help="tokenizer.json or model directory (default: the embedded model's)")
    p.add_argument("--config", metavar="FILE", default=None, help="config file (TOML or JSON)")


def _config(args):
    from rest_lsp.config import Config, load_file

    if args.config:
        config, problems = load_file(args.config)
        for problem in problems:
            print(f"rest-lsp: config: {problem}", file=sys.stderr)
    else:
        config = Config()
    if getattr(args, "corpus", None):
        config.index.corpus_roots = list(args.corpus)
    if args.index_dir:
        config.index.index_dir = args.index_dir
    return config


def _progress_bar():
    """A progress callback drawing a tqdm bar on stderr; returns (callback, close)."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit="B", unit_scale=True, file=sys.stderr, leave=False, dynamic_ncols=True)

    def progress(done: int, total: int, message: str) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_description_str(message[:60], refresh=False)
        bar.refresh()

    return progress, bar.close


def _open(args):
    """The datastore an inspecting command names: --index-dir as is, else the workspace's."""
    import os

    from indexer.datastore import Datastore
    from indexer.tokens import load_tokenizer
    from indexer.workspace_index import workspace_dir

    from indexer.workspace_index import open_compact

    config = _config(args)
    tok = load_tokenizer(args.tokenizer)
    index_dir = args.index_dir or workspace_dir(os.path.abspath(args.workspace or "."), config.index)
    store = Datastore.open(index_dir, tok, config)
    if config.index.corpus_tier == "compact":
        store.use_compact(open_compact(config.index.corpus_compact_dir, tok))
    return store, tok


def run_build(args) -> int:
    import os
    import time

    from indexer import workspace_index
    from indexer.tokens import load_tokenizer

    config = _config(args)
    tok = load_tokenizer(args.tokenizer)
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


def run_stats(args) -> int:
    store, _ = _open(args)
    stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_stats(stats)
    return 0


def _print_stats(stats: dict) -> None:
    print(f"index: {stats['index_dir']}")
    t = stats["tokenizer"]
    print(f"tokenizer: {t['source']} (sha256 {t['identity'][:12]}, vocab {t['vocab_size']}, "
          f"separator {t['separator']!r} = {t['separator_id']})")
    for tier in ("live", "workspace", "corpus"):
        s = stats[tier]
        if s.get("kind") == "compact":
            print(f"{tier:>9}: compact, {s['entries']:,} n-grams, {s['bytes'] / 1e6:.1f} MB")
            continue
        per = f", {s['bytes'] / s['tokens']:.2f} bytes/token" if s["tokens"] else ""
        print(f"{tier:>9}: {s['shards']} shard(s), {s['docs']:,} docs, {s['tokens']:,} tokens, "
              f"{s['bytes'] / 1e6:.1f} MB{per}")
    if "seconds" in stats:
        print(f"took {stats['seconds']:.2f} s")


def run_verify(args) -> int:
    store, _ = _open(args)
    problems = store.verify()
    for p in problems:
        print(f"corrupt: {p}")
    print("ok" if not problems else f"{len(problems)} problem(s): rebuild with `rest-lsp index build --rebuild`")
    return 0 if not problems else 1


def run_query(args) -> int:
    store, tok = _open(args)
    text = args.text.encode("utf-8").decode("unicode_escape") if "\\" in args.text else args.text
    ids = tok.encode(text)
    r = store.retrieve(ids, span=args.span, mode=args.mode)
    w = store.retrieval_config.max_suffix
    matched = ids[len(ids) - r.suffix_len:] if r.suffix_len else []
    shown = r.candidates[: args.limit]
    if args.json:
        print(json.dumps({
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

    tok = load_tokenizer(args.tokenizer)
    index_dir = args.index_dir or corpus_dir(Config().index, tok)
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
