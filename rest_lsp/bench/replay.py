"""``rest-lsp bench replay``: tokens per step of drafting configurations, replayed without the model.

Greedy speculative decoding accepts, at each step, the longest path of the draft tree that the
model's greedy continuation follows, and that continuation does not depend on the drafts.  So
once a workload's greedy outputs are known, with what the engine hands its drafters at every
position (the final-norm hidden state for dense drafts, the top-4 next tokens for recycling),
any drafting configuration's steps can be replayed exactly: the same trees, the same accepted
paths, the same learned source weights, in seconds and with no forward.  A replay measures
tokens per step only, never time: wall-clock comes from ``bench drafters`` and ``bench humaneval``.

The workloads are ``bench drafters``'s: the first HumanEval prompts with a dense index over
standard-library files, and cursor positions in held-out files of a repository with a dense
index over its other files and the history warmed as ``bench drafters`` warms it
(``--history-warmup``).  ``--reuse`` replays the traces, indexes, warm-up outputs and workspace
copy of an earlier run in ``--out``.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rest_lsp.bench.drafters import METHODS as DRAFTERS_METHODS

#: marks the end-of-sequence token a trace ended with (no drafter ever proposes it)
EOS_MARK = -1
#: recycling drafters are handed this many next tokens per position (speculative.TOP_K)
TOP_K = 4


@dataclass
class Trace:
    """One prompt's greedy decoding: the output and what the drafters see at each position.

    Row j of ``states`` [len(out) + 1, hidden] and ``top_k`` [len(out) + 1, TOP_K] belongs to the
    sequence position that predicted ``out[j]``: the prompt's last token for j = 0.
    """

    prompt: list[int]
    out: list[int]
    eos: bool
    states: np.ndarray
    top_k: np.ndarray

    @property
    def target(self) -> list[int]:
        """The tokens the engine emits, then the end-of-sequence mark if the output ended on it."""
        return self.out + ([EOS_MARK] if self.eos else [])


@dataclass
class ReplayResult:
    """Steps and tokens of one configuration over a workload; accepted drafts per source."""

    steps: int = 0
    tokens: int = 0
    accepted_by_source: dict[str, int] = field(default_factory=dict)
    #: steps by draft tokens accepted (0 = the bonus token only)
    accepted_lengths: dict[int, int] = field(default_factory=dict)

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0


def accepted_length(tree: Any, target: Sequence[int], pos: int) -> int:
    """Draft tokens the engine's greedy acceptance takes from ``tree`` when the model's greedy
    continuation is ``target[pos:]``: every node at depth d predicts ``target[pos + d]``."""
    from rest_lsp.engine.acceptance import greedy_accept
    from rest_lsp.engine.tree_inputs import tree_inputs

    inputs = tree_inputs(tree)
    padded = np.asarray(list(target) + [EOS_MARK])  # past the end: nothing to accept
    return len(greedy_accept(inputs, padded[np.minimum(pos + inputs.depths, len(target))]).drafts)


def replay(traces: Sequence[Trace], drafter: Any, weigh: Callable | None = None, budget: int = 16,
           max_new_tokens: int = 64, depth_decay: float = 1.0, history: Any = None) -> ReplayResult:
    """Every trace in order through ``drafter``, as ``speculative_decode`` would run it at a fixed
    ``budget``: the drafter is asked, observes the model's top-k and hidden state, ``weigh`` learns,
    and after each trace ``history`` (if given) learns its output, as ``bench drafters`` does."""
    from rest_lsp.engine.draft_tree import build_draft_tree
    from rest_lsp.engine.source_weights import candidate_weights, source_credit

    weigh = weigh or candidate_weights
    learn = getattr(weigh, "observe", None)
    observe = drafter.observe if drafter.wants_top_k else None
    wants_hidden = drafter.wants_hidden
    result = ReplayResult()
    for trace in traces:
        target, context, pos = trace.target, list(trace.prompt), 0
        while pos < len(target) and pos < max_new_tokens:
            remaining = max_new_tokens - pos
            candidates = drafter.draft(context) if remaining > 1 else []
            tree = build_draft_tree(context[-1], candidates, budget, weights=weigh(candidates),
                                    max_depth=remaining - 1, max_budget=budget, depth_decay=depth_decay)
            k = accepted_length(tree, target, pos)
            if candidates:
                drafts = target[pos:pos + k]
                credit = learn(candidates, drafts) if learn is not None else source_credit(candidates, drafts)
                for source, n in credit.items():
                    result.accepted_by_source[source] = result.accepted_by_source.get(source, 0) + n
            if observe is not None:  # the accepted rows: the root and the accepted drafts
                rows = np.asarray(context[-1:] + target[pos:pos + k], dtype=np.int64)
                observe(rows, trace.top_k[pos:pos + k + 1])
            context.extend(t for t in target[pos:pos + k + 1] if t != EOS_MARK)
            pos += k + 1
            result.steps += 1
            result.tokens += k + 1
            result.accepted_lengths[k] = result.accepted_lengths.get(k, 0) + 1
            if wants_hidden:  # the last accepted node predicted the bonus token, the next root
                drafter.observe_hidden(trace.states[pos - 1], len(context))
        if history is not None:
            history.add(trace.out)
    return result


def capture(engine: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
            say: Callable[[str], None] = print) -> list[Trace]:
    """The greedy traces of ``prompts``: each output, then one forward over prompt + output for
    the hidden states and top-k of the positions that predicted it."""
    import torch

    from rest_lsp.engine import kv_cache
    from rest_lsp.engine.forward import causal_allowed, model_device, model_forward
    from rest_lsp.engine.readout import top_k_rows

    model = engine.model
    device = model_device(model)
    traces = []
    for i, prompt in enumerate(prompts):
        engine.reset()
        gen = engine.complete(list(prompt), max_new_tokens, mode="greedy")
        out = list(gen.tokens)
        ids = torch.as_tensor(list(prompt) + out, dtype=torch.long, device=device)
        n = len(ids)
        cache = kv_cache.new_cache(model)
        logits, states = model_forward(model, cache, ids, torch.arange(n, device=device),
                                       causal_allowed(n, 0, device), logits="both")
        logits, states = logits[len(prompt) - 1:], states[len(prompt) - 1:]  # [len(out)+1, vocab / hidden]
        top_k = top_k_rows(logits, range(len(states)), TOP_K)
        traces.append(Trace(list(prompt), out, gen.stats.stop_reason == "eos",
                            states.float().cpu().numpy(), top_k))
        if (i + 1) % 10 == 0 or i + 1 == len(prompts):
            say(f"  traced {i + 1}/{len(prompts)} prompts")
    return traces


def save_traces(traces: Sequence[Trace], path: Path) -> None:
    """The traces in one ``.npz`` (flat arrays and offsets: no pickle)."""
    def offsets(lists: Sequence[Sequence[Any]]) -> np.ndarray:
        return np.cumsum([0] + [len(x) for x in lists])

    np.savez(path, prompts=np.concatenate([t.prompt for t in traces]), prompt_at=offsets([t.prompt for t in traces]),
             outs=np.asarray(list(itertools.chain.from_iterable(t.out for t in traces)), dtype=np.int64),
             out_at=offsets([t.out for t in traces]), eos=np.asarray([t.eos for t in traces]),
             states=np.concatenate([t.states for t in traces]), top_k=np.concatenate([t.top_k for t in traces]))


def load_traces(path: Path) -> list[Trace]:
    """The traces ``save_traces`` wrote."""
    with np.load(path, allow_pickle=False) as z:
        pa, oa = z["prompt_at"], z["out_at"]
        prompts, outs, states, top_k, eos = z["prompts"], z["outs"], z["states"], z["top_k"], z["eos"]
    traces, row = [], 0
    for i in range(len(eos)):
        n = int(oa[i + 1] - oa[i]) + 1
        traces.append(Trace(prompts[pa[i]:pa[i + 1]].tolist(), outs[oa[i]:oa[i + 1]].tolist(), bool(eos[i]),
                            states[row:row + n], top_k[row:row + n]))
        row += n
    return traces


#: method -> what it drafts with: ``bench drafters``'s methods, plus the default engine's own
METHODS = {**{name: label for name, label in DRAFTERS_METHODS.items() if name != "greedy"},
           "sparse+recycle": "sparse + the model's recycled top-k (the default drafting, without its time-based gate)",
           "daemon": "the daemon's drafting without a dense index: sparse + recycled top-k + history (no time gate)",
           "daemon+dense": "the daemon's drafting with a dense index: the same + dense (what retrieval.dense adds)"}


def run_grid(traces: Sequence[Trace], retrieval: Any, stores: Sequence[Any], dense_index: Any, vocab: int,
             methods: Sequence[str], budgets: Sequence[int], spans: Sequence[int], decays: Sequence[float],
             max_new_tokens: int, warm: Sequence[Sequence[int]] = ()) -> list[dict[str, Any]]:
    """Tokens per step of every method at every (budget, span, depth decay); one row per point
    (the histories start with the ``warm`` outputs)."""
    from rest_lsp.bench.drafters import method_drafter
    from rest_lsp.engine.source_weights import SourceWeights

    rows = []
    for budget, span, decay in itertools.product(budgets, spans, decays):
        row: dict[str, Any] = {"budget": budget, "span": span, "depth_decay": decay, "tokens_per_step": {},
                               "accepted_by_source": {}, "accepted_lengths": {}, "full_span_share": {}}
        for name in methods:
            drafter, history = method_drafter(name, retrieval, stores, dense_index, vocab, span, warm)
            res = replay(traces, drafter, SourceWeights(), budget, max_new_tokens, decay, history)
            row["tokens_per_step"][name] = round(res.tokens_per_step, 3)
            row["accepted_by_source"][name] = res.accepted_by_source
            row["accepted_lengths"][name] = dict(sorted(res.accepted_lengths.items()))
            # steps that accepted a whole continuation: where the span, not the model, stopped them
            full = sum(n for k, n in res.accepted_lengths.items() if k >= span)
            row["full_span_share"][name] = round(full / res.steps, 3) if res.steps else 0.0
        tps = row["tokens_per_step"]
        if tps.get("rest-sparse") and "rest-merged" in tps:
            row["merged_over_sparse"] = round(tps["rest-merged"] / tps["rest-sparse"], 3)
        rows.append(row)
        print(f"  budget {budget:>4} span {span:>3} decay {decay:<5} "
              + "  ".join(f"{k} {v:.3f}" for k, v in tps.items())
              + (f"  merged/sparse {row['merged_over_sparse']:.3f}" if "merged_over_sparse" in row else ""), flush=True)
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of ``run_grid``'s rows."""
    methods = list(rows[0]["tokens_per_step"]) if rows else []
    head = "| budget | span | depth decay | " + " | ".join(methods) + " | merged / sparse |"
    lines = [head, "|" + "---|" * (4 + len(methods))]
    for r in rows:
        cells = [str(r["tokens_per_step"][m]) for m in methods]
        lines.append(f"| {r['budget']} | {r['span']} | {r['depth_decay']} | " + " | ".join(cells)
                     + f" | {r.get('merged_over_sparse', '')} |")
    return "\n".join(lines)


def _workload_traces(name: str, engine: Any, prompts: Callable[[], list[list[int]]], docs: Callable[[], list],
                     loaded: Any, out: Path, reuse: bool, max_new_tokens: int,
                     needs_dense: bool = True) -> tuple[list[Trace], Any]:
    """The workload's traces and dense index (None when ``needs_dense`` is False): from an earlier
    run with ``reuse``, else made and saved."""
    from indexer.search.dense import DenseIndex
    from rest_lsp.bench.drafters import build_dense

    traces_path, dense_file = out / f"{name}.traces.npz", out / f"{name}.dense.msgpack"
    if reuse and traces_path.exists() and not needs_dense:
        print(f"{name}: reusing {traces_path}")
        return load_traces(traces_path), None
    if reuse and traces_path.exists() and dense_file.exists():
        print(f"{name}: reusing {traces_path} and {dense_file}")
        return load_traces(traces_path), DenseIndex.open(dense_file)
    ps = prompts()
    print(f"{name}: tracing greedy decoding of {len(ps)} prompts")
    traces = capture(engine, ps, max_new_tokens)
    save_traces(traces, traces_path)
    if not needs_dense:  # no method of the grid drafts densely: embedding the documents is skipped
        return traces, None
    index, _ = build_dense(loaded, docs())
    index.save(dense_file)
    return traces, index


def _warmup(work: Any, loaded: Any, config: Any, out: Path, args: Any) -> list[list[int]]:
    """The repository's history warm-up outputs: from an earlier run with ``--reuse``, else made."""
    from rest_lsp.bench.workloads import warmup_outputs

    path = out / "repository.warmup.npz"
    if args.reuse and path.exists():
        with np.load(path, allow_pickle=False) as z:
            if int(z["count"]) == args.history_warmup:
                print(f"repository: reusing {path}")
                return [a.tolist() for a in np.split(z["tokens"], z["at"][1:-1])]
    prompts = work.warmup_prompts(loaded.tokenizer, config, args.history_warmup)
    outs, _ = warmup_outputs(loaded, config, work.store, prompts, args.max_new_tokens)
    np.savez(path, count=args.history_warmup, tokens=np.asarray([t for o in outs for t in o], dtype=np.int64),
             at=np.cumsum([0] + [len(o) for o in outs]))
    return outs


def main(args: Any) -> int:
    """The ``rest-lsp bench replay`` command."""
    from rest_lsp.bench import humaneval
    from rest_lsp.bench.drafters import DENSE_METHODS, stdlib_documents
    from rest_lsp.bench.workloads import repository_workload
    from rest_lsp.drafting.datastore import open_corpus_datastore
    from rest_lsp.engine.engine import Engine

    config, loaded, out = humaneval.setup(args)
    corpus, corpus_line = open_corpus_datastore(str(loaded.source), "", config)
    print(f"model: {loaded.source}; {corpus_line}")
    engine = Engine.from_loaded(loaded, config.decoding, None)
    vocab = int(loaded.model.config.vocab_size)
    tok = loaded.tokenizer
    grid = dict(methods=[m for m in args.methods.split(",") if m], budgets=[int(b) for b in args.budgets.split(",")],
                spans=[int(s) for s in args.spans.split(",")], decays=[float(d) for d in args.decays.split(",")],
                max_new_tokens=args.max_new_tokens)
    record: dict[str, Any] = {"command": "rest-lsp " + " ".join(sys.argv[1:]),
                              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "model": str(loaded.source), **grid, "workloads": {}}
    needs_dense = any(m in DENSE_METHODS for m in grid["methods"])
    if args.limit != 0:
        traces, index = _workload_traces("humaneval", engine, lambda: humaneval.humaneval_prompts(tok, args.limit),
                                         lambda: stdlib_documents(tok, args.dense_tokens), loaded, out, args.reuse,
                                         args.max_new_tokens, needs_dense)
        print(f"humaneval: {len(traces)} traces; grid of {len(grid['budgets']) * len(grid['spans']) * len(grid['decays'])}")
        rows = run_grid(traces, config.retrieval, [s for s in [corpus] if s is not None], index, vocab, **grid)
        record["workloads"]["humaneval"] = {"prompts": len(traces), "rows": rows}
        print(table(rows))
    if args.workspace:
        work = repository_workload(loaded, config, args, out, reuse=args.reuse)
        traces, index = _workload_traces("repository", engine, lambda: work.prompts(tok, config, args),
                                         lambda: work.documents(tok), loaded, out, args.reuse, args.max_new_tokens,
                                         needs_dense)
        print(f"repository: {len(traces)} traces (held out: {', '.join(work.held)})")
        warm = _warmup(work, loaded, config, out, args) if args.history_warmup else []
        rows = run_grid(traces, config.retrieval, [work.store] + [s for s in [corpus] if s is not None], index, vocab,
                        **grid, warm=warm)
        record["workloads"]["repository"] = {"workspace": str(work.root), "held_out": work.held,
                                             "history_warmup": args.history_warmup, "prompts": len(traces), "rows": rows}
        print(table(rows))
        work.store.close()
    (out / "replay.json").write_text(json.dumps(record, indent=2))
    print(f"written: {out / 'replay.json'}")
    return 0
