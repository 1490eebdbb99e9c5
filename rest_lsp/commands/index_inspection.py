"""The inspecting actions of ``rest-lsp index``: ``stats``, ``verify`` and ``query``, on an index of
any kind (workspace, corpus, sharded, compact or served; ``indexer.storage.index_kind``)."""

from __future__ import annotations

import json

from rest_lsp.commands.index_common import _config, _tokenizer_source


def _located(args):
    """The index an inspecting command names (``indexer.storage.index_kind.IndexKind``): ``--remote``, else
    ``--index-dir`` (a folder of any kind, or a served index's URL), else the workspace's index."""
    import os

    from indexer.storage import index_kind
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
        dense = _dense_actions().dense_stats(args)
        if dense is not None:
            stats["dense"] = dense
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        _print_stats(stats)
    return 0


def _served_tier(url: str, tok, index_config) -> dict:
    """The corpus tier of a served index as ``index stats`` shows it: its ``/info``."""
    from indexer.remote.tier import RemoteTier

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
        from indexer.remote.tier import Request, RemoteTier

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
    dense = _dense_actions().dense_neighbours(args, text) if args.dense else None
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


def _dense_actions():
    """The dense-tier actions (imported when used: they load the model)."""
    from rest_lsp.commands import index_dense

    return index_dense
