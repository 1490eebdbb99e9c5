"""``rest-lsp bench drafters``: sparse, dense, history and merged drafting at one draft budget.

Two workloads: the HumanEval prompts (sparse = the corpus index plus the context; dense = an
index of the model's hidden states over a sample of the standard library) and, with
``--workspace``, cursor positions in held-out files of a real repository (sparse = that
workspace's index, the corpus and the context; dense = the workspace's files).  The history
source learns the model's outputs as the prompts go by (every method decodes the same greedy
text, so every history sees the same outputs); on the repository it starts as the daemon's
does, warmed with the model's completions at ``--history-warmup`` positions of the indexed
files (``rest_lsp/completion/warmup.py``; HumanEval has no workspace to warm up on).  Methods are interleaved per
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

from rest_lsp.bench.workloads import repository_workload, warmup_outputs

METHODS = {
    "greedy": "greedy (our loop)",
    "rest-sparse": "sparse: exact-match tiers + context",
    "rest-dense": "dense only (DReSD)",
    "rest-history": "history only",
    "rest-merged": "all merged, one tree",
}


def with_history(method: Any, history: Any) -> Any:
    """A method whose outputs are added to ``history`` after each prompt."""

    def run(ids: Sequence[int]) -> Any:
        result = method(ids)
        history.add(result.tokens)
        return result

    return run


#: the methods that draft from a history (its outputs grow it after each prompt)
HISTORY_METHODS = ("rest-history", "rest-merged", "daemon", "daemon+dense")
#: the methods that draft from a dense index (``method_drafter`` gives them one)
DENSE_METHODS = ("rest-dense", "rest-merged", "daemon+dense")


def method_drafter(name: str, retrieval: Any, stores: Sequence[Any], dense_index: Any, vocab: int,
                   span: int, warm: Sequence[Sequence[int]] = ()) -> tuple[Any, Any]:
    """A fresh (drafter, its history source or None) of the method ``name``: the exact-match
    sources draft continuations of ``span`` tokens (``bench replay`` varies it); the history
    starts with the ``warm`` outputs (the warm-up's, ``warmup_outputs``)."""
    from rest_lsp.drafting.dense import DenseDrafter
    from rest_lsp.drafting.datastore import DatastoreDrafter
    from rest_lsp.engine.drafter import ContextSuffixDrafter, HistoryDrafter, MergedDrafter, RecyclingDrafter

    r = retrieval
    sparse = [ContextSuffixDrafter(span=span, max_suffix=r.max_suffix)] + [DatastoreDrafter(s, span=span) for s in stores]
    history = HistoryDrafter(r.history_tokens, span=span) if name in HISTORY_METHODS else None
    for out in warm if history is not None else ():
        history.add(out)
    if name == "rest-sparse":
        return MergedDrafter(sparse), None
    if name == "rest-dense":
        return DenseDrafter(dense_index, r.dense_neighbours), None
    if name == "rest-history":
        return history, history
    if name == "rest-merged":
        return MergedDrafter(sparse + [history, DenseDrafter(dense_index, r.dense_neighbours)]), history
    if name == "sparse+recycle":
        return MergedDrafter(sparse + [RecyclingDrafter(vocab)]), None
    if name == "daemon":
        return MergedDrafter(sparse + [RecyclingDrafter(vocab), history]), history
    if name == "daemon+dense":
        return MergedDrafter(sparse + [RecyclingDrafter(vocab), history, DenseDrafter(dense_index, r.dense_neighbours)]), history
    raise ValueError(f"unknown drafting method {name!r}")


def dense_drafter_of(drafter: Any) -> Any:
    """The dense drafter in ``drafter`` (itself, or one of a merged drafter's), or None."""
    from rest_lsp.drafting.dense import DenseDrafter

    found = [d for d in getattr(drafter, "drafters", [drafter]) if isinstance(d, DenseDrafter)]
    return found[0] if found else None


def build_methods(loaded: Any, config: Any, sparse: list[Any], dense_index: Any, budget: int,
                  max_new_tokens: int, warm: Sequence[Sequence[int]] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The methods, and the dense drafters (for their search timings)."""
    from rest_lsp.bench.humaneval import engine_method
    from rest_lsp.engine.engine import Engine

    def method(drafter: Any, mode: str = "rest") -> Any:
        engine = Engine.from_loaded(loaded, config.decoding, drafter)
        return engine_method(engine, mode=mode, budget=None if mode == "greedy" else budget,
                             max_new_tokens=max_new_tokens)

    methods, dense = {"greedy": method(None, "greedy")}, {}
    vocab = int(loaded.model.config.vocab_size)
    for name in METHODS:
        if name == "greedy":
            continue
        drafter, history = method_drafter(name, config.retrieval, [s for s in sparse if s is not None], dense_index,
                                          vocab, config.retrieval.span, warm)
        methods[name] = method(drafter) if history is None else with_history(method(drafter), history)
        if dense_drafter_of(drafter) is not None:
            dense[name] = dense_drafter_of(drafter)
    return methods, dense


def stdlib_documents(tokenizer: Any, tokens: int, skip: int = 0) -> list[tuple[str, list[int]]]:
    """Standard-library files (a fixed shuffled order) until ``tokens`` tokens."""
    import numpy as np

    from rest_lsp.bench.dense import stdlib_files

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
    from rest_lsp.drafting.dense import build_dense_index, model_identity

    t0 = time.perf_counter()
    index = build_dense_index(loaded.runner or loaded.model, model_identity(loaded.model, loaded.source), docs)
    seconds = time.perf_counter() - t0
    tokens = sum(len(ids) for _, ids in docs)
    info = {"documents": len(docs), "tokens": tokens, "entries": index.entries, "build_s": round(seconds, 1),
            "embed_tokens_per_s": round(tokens / seconds, 1), "bytes_per_entry": round(index.nbytes() / max(index.entries, 1), 1)}
    say(f"dense index: {info}")
    return index, info


def run_workload(name: str, loaded: Any, config: Any, prompts: list[list[int]], sparse: list[Any], dense_index: Any,
                 args: Any, warm: Sequence[Sequence[int]] = ()) -> dict[str, Any]:
    """Every method on the workload's prompts (the histories warmed with ``warm``); the summary
    rows and the dense search time."""
    from rest_lsp.bench import humaneval

    methods, dense = build_methods(loaded, config, sparse, dense_index, args.budget, args.max_new_tokens, warm)
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

    from rest_lsp.bench import humaneval
    from rest_lsp.bench import plots
    from rest_lsp.drafting.datastore import open_corpus_datastore
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
        prompts = humaneval.humaneval_prompts(loaded.tokenizer, args.limit)
        index, info = build_dense(loaded, stdlib_documents(loaded.tokenizer, args.dense_tokens))
        result = run_workload("humaneval", loaded, config, prompts, [corpus], index, args)
        record["workloads"]["humaneval"] = {"dense_index": info, **result}
    if args.workspace:
        work = repository_workload(loaded, config, args, out)
        prompts = work.prompts(loaded.tokenizer, config, args)
        index, info = build_dense(loaded, work.documents(loaded.tokenizer))
        warm, warm_info = warmup_outputs(loaded, config, work.store, work.warmup_prompts(
            loaded.tokenizer, config, args.history_warmup), args.max_new_tokens) if args.history_warmup else ([], None)
        result = run_workload("repository", loaded, config, prompts, [work.store, corpus], index, args, warm)
        record["workloads"]["repository"] = {"workspace": str(work.root), "held_out": work.held,
                                             "dense_index": info, "history_warmup": warm_info, **result}
        work.store.close()
    for name, w in record["workloads"].items():
        pngs.append(plots.speedup_bars(w.pop("summaries"), out / f"drafters_{name}.png",
                                       f"{name}: sparse, dense, history, merged (budget {args.budget})"))
    (out / "drafters.json").write_text(json.dumps(record, indent=2, default=str))
    print(f"written: {out / 'drafters.json'}, " + ", ".join(str(p) for p in pngs))
    return 0
