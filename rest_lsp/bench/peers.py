"""``rest-lsp bench peers``: rest-lsp against llama.cpp on the same GGUF file, threads and prompts.

The yardstick a CPU user compares us with is llama.cpp.  Every method decodes every HumanEval
prompt in turn (the order rotated from prompt to prompt, each from a cold cache), greedy, the
same number of new tokens:

- ``llama_cpp_greedy``: llama-cpp-python's ``Llama.generate`` at temperature 0 (its defaults:
  f16 K/V cache, repacked weights, tiled matmul);
- ``llama_cpp_prompt_lookup``: the same with its prompt-lookup drafting
  (``LlamaPromptLookupDecoding``, 10 tokens);
- ``greedy`` and ``default``: rest-lsp's engine on the loaded model (the llama.cpp forward when
  ``model.forward`` picks it), one token per step and with its default drafting (the context and
  the model's recycled top-k; no corpus datastore here).

Reported per method: tokens/s over the whole request (prefill included) and over decoding alone,
time to first token, and agreement with ``llama_cpp_greedy`` (identical outputs, and the mean
share of tokens before the first difference).  The roofline beside them: one token must read every
weight byte once (bytes over the measured read bandwidth), and 16 rows cost 2 x parameters x 16
FLOPs (over the measured float32 matmul peak).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rest_lsp.bench.record import run_header

#: methods measured, in report order; the first is the reference of agreement
METHODS = ("llama_cpp_greedy", "llama_cpp_prompt_lookup", "greedy", "default")


@dataclass
class PeerRun:
    """One method decoding one prompt."""

    method: str
    prompt: int
    tokens: list[int]
    wall_s: float
    first_token_s: float
    prefill_s: float = 0.0


#: a method: prompt ids -> its run (method and prompt filled in by the caller)
PeerFn = Callable[[Sequence[int]], PeerRun]


def llama_cpp_method(gguf: str, threads: int, max_new_tokens: int, eos: Sequence[int],
                     prompt_lookup: int | None) -> PeerFn:
    """llama-cpp-python's own greedy decoding (optionally with prompt lookup) of ``gguf``."""
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    draft = LlamaPromptLookupDecoding(num_pred_tokens=prompt_lookup) if prompt_lookup else None
    llm = Llama(model_path=gguf, n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False,
                draft_model=draft)
    stops = set(eos)

    def run(ids: Sequence[int]) -> PeerRun:
        llm.reset()
        out: list[int] = []
        first = 0.0
        t0 = time.perf_counter()
        for token in llm.generate(list(ids), temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                  reset=True):
            if not out:
                first = time.perf_counter() - t0
            if token in stops:
                break
            out.append(int(token))
            if len(out) >= max_new_tokens:
                break
        return PeerRun("", 0, out, time.perf_counter() - t0, first or time.perf_counter() - t0)

    return run


def engine_method(engine: Any, mode: str, max_new_tokens: int) -> PeerFn:
    """rest-lsp's engine in ``mode`` ("greedy" or "rest"), cold cache per prompt."""

    def run(ids: Sequence[int]) -> PeerRun:
        engine.reset()
        marks: list[float] = []
        t0 = time.perf_counter()

        def first_token(out: Sequence[int]) -> bool:
            if not marks:
                marks.append(time.perf_counter() - t0)
            return False

        gen = engine.complete(ids, max_new_tokens, mode=mode, stop=first_token)
        wall = time.perf_counter() - t0
        return PeerRun("", 0, list(gen.tokens), wall, marks[0] if marks else wall, gen.stats.prefill_s)

    return run


def agreement(tokens: Sequence[int], reference: Sequence[int]) -> float:
    """Share of ``reference`` reproduced before the first differing token (1.0: identical)."""
    n = 0
    for a, b in zip(tokens, reference):
        if a != b:
            break
        n += 1
    if n == len(tokens) == len(reference):
        return 1.0
    return n / max(1, len(reference))


def summarize(runs: Sequence[PeerRun], methods: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: tokens/s, time to first token, agreement with the first method."""
    reference = {r.prompt: r.tokens for r in runs if r.method == methods[0]}
    rows = []
    for name in methods:
        mine = [r for r in runs if r.method == name]
        tokens = sum(len(r.tokens) for r in mine)
        wall = sum(r.wall_s for r in mine)
        decode = sum(r.wall_s - r.first_token_s for r in mine)
        after_first = sum(max(0, len(r.tokens) - 1) for r in mine)
        rows.append({
            "method": name,
            "prompts": len(mine),
            "new_tokens": tokens,
            "tokens_per_s": tokens / wall if wall else 0.0,
            "decode_tokens_per_s": after_first / decode if decode else 0.0,
            "first_token_ms_p50": 1000 * statistics.median(r.first_token_s for r in mine) if mine else 0.0,
            "identical": sum(r.tokens == reference.get(r.prompt) for r in mine) / max(1, len(mine)),
            "agreement": statistics.fmean(agreement(r.tokens, reference.get(r.prompt, [])) for r in mine) if mine else 0.0,
        })
    base = rows[0]["decode_tokens_per_s"] or 1.0
    for row in rows:
        row["vs_llama_cpp_greedy"] = row["decode_tokens_per_s"] / base
    return rows


def roofline(weight_bytes: int, parameters: int, rows: int = 16, threads: int = 0) -> dict[str, float]:
    """Measured read bandwidth and float32 matmul peak on ``threads`` threads, and the tokens/s
    bounds they give.  Both through torch, whose reductions and GEMMs use every thread given (a
    single-threaded read, numpy's sum, measured 17.6 GB/s here while llama.cpp read the 1.5B's
    weights at ~32 GB/s on 2 threads)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    data = torch.ones(64 * 1024 * 1024, dtype=torch.float32)  # 256 MiB
    data.sum()
    t0 = time.perf_counter()
    for _ in range(4):
        data.sum()
    bandwidth = 4 * data.numel() * 4 / (time.perf_counter() - t0)
    a = torch.randn(2048, 2048)
    a @ a
    t0 = time.perf_counter()
    for _ in range(4):
        a @ a
    flops = 4 * 2 * 2048 ** 3 / (time.perf_counter() - t0)
    one = weight_bytes / bandwidth
    many = max(one, 2 * parameters * rows / flops)
    return {"read_gb_per_s": bandwidth / 1e9, "matmul_gflops": flops / 1e9, "weight_bytes": weight_bytes,
            "one_token_bound_tokens_per_s": 1 / one, f"rows_{rows}_bound_tokens_per_s": rows / many}


def table(rows: Sequence[dict[str, Any]], bound: dict[str, float]) -> str:
    """A markdown table of the summary rows, the roofline under it."""
    lines = ["| method | tokens/s (whole request) | tokens/s (decoding) | vs llama.cpp greedy | first token p50 ms | identical | agreement |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['tokens_per_s']:.1f} | {r['decode_tokens_per_s']:.1f} | "
                     f"{r['vs_llama_cpp_greedy']:.2f}x | {r['first_token_ms_p50']:.0f} | {100 * r['identical']:.0f}% | "
                     f"{100 * r['agreement']:.0f}% |")
    lines.append("")
    lines.append(f"roofline: read {bound['read_gb_per_s']:.1f} GB/s, float32 matmul {bound['matmul_gflops']:.0f} GFLOP/s; "
                 f"one token reads {bound['weight_bytes'] / 1e6:.0f} MB of weights: <= "
                 f"{bound['one_token_bound_tokens_per_s']:.0f} tokens/s; 16 rows: <= "
                 f"{bound['rows_16_bound_tokens_per_s']:.0f} tokens/s")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], out: Path) -> Path:
    """Bars of decoding tokens/s per method."""
    from rest_lsp.bench.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([r["method"] for r in rows], [r["decode_tokens_per_s"] for r in rows], color="#4c72b0")
    ax.set_ylabel("tokens/s (decoding)")
    ax.set_title("rest-lsp vs llama.cpp, same GGUF file and threads")
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    path = out / "peers.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(args: Any) -> int:
    """Run the comparison and write ``peers.json``, ``peers.md`` and ``peers.png`` to ``--out``."""
    from rest_lsp.bench.humaneval import humaneval_prompts, run_interleaved, setup
    from rest_lsp.errors import ConfigError

    started = time.time()
    config, loaded, out = setup(args)
    gguf = loaded.resolved.gguf if loaded.resolved else ""
    if not gguf:
        raise ConfigError(f"bench peers needs a GGUF model; {loaded.source} has none", model=args.model)
    names = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(names) - set(METHODS))
    if unknown or not names:
        raise ConfigError(f"unknown methods {unknown}; choose from {list(METHODS)}", methods=names)
    threads = args.threads or os.cpu_count() or 1
    eos = sorted(loaded.eos_token_ids)
    prompts = humaneval_prompts(loaded.tokenizer, args.limit)
    n = args.max_new_tokens
    methods: dict[str, PeerFn] = {}
    for name in names:
        if name == "llama_cpp_greedy":
            methods[name] = llama_cpp_method(gguf, threads, n, eos, None)
        elif name == "llama_cpp_prompt_lookup":
            methods[name] = llama_cpp_method(gguf, threads, n, eos, 10)
        else:
            methods[name] = _ours(loaded, config, name, n)
    print(f"model: {loaded.resolved.name} ({loaded.forward} forward, {loaded.dtype}), {threads} threads, "
          f"{len(prompts)} HumanEval prompts, {n} new tokens", flush=True)
    # the order rotates from prompt to prompt (bench humaneval's loop; it fills method and prompt)
    runs = [run for per_method in run_interleaved(methods, prompts).values() for run in per_method]
    rows = summarize(runs, names)
    weight_bytes = int(getattr(loaded.model, "weight_bytes", 0) or Path(gguf).stat().st_size)
    params = int(getattr(loaded.model, "n_params", 0) or sum(p.numel() for p in loaded.model.parameters()))
    bound = roofline(weight_bytes, params, threads=threads)
    record = {**run_header(started, loaded.device), "model": loaded.resolved.name, "forward": loaded.forward,
              "threads": threads, "max_new_tokens": n, "prompts": len(prompts), "methods": rows, "roofline": bound,
              "runs": [asdict(r) for r in runs]}
    (out / "peers.json").write_text(json.dumps(record, indent=1))
    text = table(rows, bound)
    (out / "peers.md").write_text(text + "\n")
    plot(rows, out)
    print(text)
    return 0


def _ours(loaded: Any, config: Any, name: str, max_new_tokens: int) -> PeerFn:
    """rest-lsp's ``greedy`` or ``default`` (the engine's own drafting, no corpus datastore)."""
    from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, RecyclingDrafter
    from rest_lsp.engine.engine import Engine

    r = config.retrieval
    drafter = MergedDrafter([ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix),
                             RecyclingDrafter(int(loaded.model.config.vocab_size))])
    engine = Engine.from_loaded(loaded, config.decoding, drafter)
    if name == "default":
        engine.policy()  # as the daemon's warm-up does: its budget (and forward setting) before the first prompt
    return engine_method(engine, "greedy" if name == "greedy" else "rest", max_new_tokens)
