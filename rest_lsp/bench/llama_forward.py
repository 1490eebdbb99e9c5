"""``rest-lsp bench llama``: the llama.cpp forward's settings, measured side by side.

Which K/V cache types and weight layout the runner uses (``engine/llama_cpp_runner.py``) is a
matter of three measurements, taken here for each setting on the same GGUF file and threads:

- prefill speed: ``--context`` tokens of real code (this package's own source) in 512-token batches;
- c(k): one verification batch of a k-token chain after that context, k = 1 .. the runner's row
  limit (median of ``--repeats``);
- exactness: whether each tree row's logits equal those of one-token steps bit for bit, at that
  context (a short one hides flash attention's split path for one row: docs/cpu.md).

The settings are measured in rounds, each round taking every setting in turn, so that a machine's
drift touches all of them alike.  Writes ``llama.json``, ``llama.md`` and ``llama.png``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rest_lsp.bench.record import run_header
from rest_lsp.engine.llama_cpp_build import CACHE_TYPES


@dataclass(frozen=True)
class Setting:
    """One runner configuration: key and value cache types, and whether weights are repacked."""

    keys: str
    values: str
    #: None: the runner decides (repacked where the llama.cpp build allows it)
    repack: bool | None


def setting_name(keys: str, values: str, repacked: bool) -> str:
    """How a setting is shown: its cache types and the weight layout the runner used."""
    return f"K {keys} / V {values}, {'repacked' if repacked else 'file layout'}"


def parse_settings(text: str, repack: Sequence[bool | None]) -> list[Setting]:
    """``"f16/bf16,f16/q8_0"`` and the repack choices -> every combination, in the order given."""
    from rest_lsp.errors import ConfigError

    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        keys, _, values = item.partition("/")
        if keys not in CACHE_TYPES or values not in CACHE_TYPES:
            raise ConfigError(f"unknown K/V types {item!r}; use KEYS/VALUES from {sorted(CACHE_TYPES)}", kv=item)
        out.extend(Setting(keys, values, r) for r in repack)
    if not out:
        raise ConfigError("no K/V setting given", kv=text)
    return out


def code_tokens(tokenizer: Any, n: int) -> list[int]:
    """``n`` tokens of real code: this package's modules, concatenated in a fixed order."""
    import rest_lsp

    ids: list[int] = []
    for path in sorted(Path(rest_lsp.__file__).parent.rglob("*.py")):
        ids.extend(tokenizer.encode(path.read_text(encoding="utf-8"), add_special_tokens=False))
        if len(ids) >= n:
            return ids[:n]
    raise ValueError(f"rest_lsp's source holds fewer than {n} tokens")


def chain(tokens: Sequence[int]) -> Any:
    """Tree inputs of a straight chain of ``tokens``."""
    from rest_lsp.engine.cost import chain_of
    from rest_lsp.engine.tree_inputs import tree_inputs

    return tree_inputs(chain_of(tokens))


def one_row_steps(runner: Any, ids: list[int], n: int) -> tuple[list[int], list[Any]]:
    """``n`` greedy tokens after ``ids``, one row a step, and each step's logits row."""
    cache = runner.new_cache()
    runner.prefill(cache, ids[:-1])
    tokens, rows = [ids[-1]], []
    for _ in range(n):
        past = cache.length
        logits = runner.verify_tree(cache, chain(tokens[-1:])).numpy()
        rows.append(logits[0].copy())
        cache.keep_rows(past, [0])
        tokens.append(int(logits[0].argmax()))
    return tokens, rows


def exact_rows(runner: Any, ids: list[int]) -> dict[int, bool]:
    """For k = 2 .. max_rows: whether a k-row chain's logits equal the one-row steps' bit for bit."""
    import numpy as np

    tokens, rows = one_row_steps(runner, ids, runner.max_rows)
    cache = runner.new_cache()
    runner.prefill(cache, ids[:-1])
    out = {}
    for k in range(2, runner.max_rows + 1):
        logits = runner.verify_tree(cache, chain(tokens[:k])).numpy()
        out[k] = all(np.array_equal(logits[i], rows[i]) for i in range(k))
        cache.keep_rows(len(ids) - 1, [0])
        cache.crop(len(ids) - 1)
    return out


def measure_round(runner: Any, ids: list[int], repeats: int) -> tuple[float, dict[int, float]]:
    """(prefill tokens/s, {k: median seconds of a k-row chain}) over one cold prefill of ``ids``."""
    from rest_lsp.engine.cost import chain_tree
    from rest_lsp.engine.tree_inputs import tree_inputs

    cache = runner.new_cache()
    t0 = time.perf_counter()
    runner.prefill(cache, ids)
    prefill = len(ids) / (time.perf_counter() - t0)
    times: dict[int, list[float]] = {k: [] for k in range(1, runner.max_rows + 1)}
    for _ in range(repeats):
        for k in times:
            inputs = tree_inputs(chain_tree(k, runner.n_vocab))
            t0 = time.perf_counter()
            runner.verify_tree(cache, inputs).argmax(-1)
            times[k].append(time.perf_counter() - t0)
            cache.crop(len(ids))
    return prefill, {k: statistics.median(v) for k, v in times.items()}


def table(results: Sequence[dict[str, Any]], context: int) -> str:
    """Markdown: per setting, prefill tokens/s, c(1) and c(k)/c(1), and the rows that stay exact."""
    lines = [f"| setting | prefill tokens/s ({context} tokens) | c(1) ms | c(k)/c(1), k = 2.. | exact rows at {context} |",
             "|---|---|---|---|---|"]
    for r in results:
        c = r["cost_ms"]
        ratios = ", ".join(f"{c[k] / c['1']:.2f}" for k in sorted(c, key=int) if k != "1")
        exact = [int(k) for k, ok in r["exact"].items() if ok]
        lines.append(f"| {r['setting']} | {r['prefill_tokens_per_s']:.0f} | {c['1']:.1f} | {ratios} | "
                     f"1{', ' + ', '.join(map(str, exact)) if exact else ' only'} of {r['max_rows']} |")
    return "\n".join(lines)


def main(args: Any) -> int:
    """Measure every setting in ``--kv`` x ``--repack``; write JSON, table and plot to ``--out``."""
    from rest_lsp.bench.plots import lines as plot_lines
    from rest_lsp.config.schema import Config
    from rest_lsp.engine.model import load_model
    from rest_lsp.engine.llama_cpp_runner import LlamaCppRunner
    from rest_lsp.errors import ConfigError

    started = time.time()
    repack = {"auto": [None], "on": [True], "off": [False], "both": [True, False]}[args.repack]
    settings = parse_settings(args.kv, repack)
    config, problems = Config.from_dict({"model": {"name": args.model, "threads": args.threads, "forward": "llama.cpp"}})
    if problems:
        raise ConfigError("invalid options: " + "; ".join(problems), problems=problems)
    loaded = load_model(config.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gguf = loaded.resolved.gguf if loaded.resolved else ""
    if not gguf:
        raise ConfigError(f"bench llama needs a GGUF model; {loaded.source} has none", model=args.model)
    ids = code_tokens(loaded.tokenizer, args.context)
    threads = loaded.model.threads
    loaded.model.close()  # each setting gets its own runner
    runners = [LlamaCppRunner(gguf, loaded.model.config, threads=threads, type_k=CACHE_TYPES[s.keys],
                              type_v=CACHE_TYPES[s.values], repack=s.repack) for s in settings]
    names = [setting_name(s.keys, s.values, r.repack) for s, r in zip(settings, runners)]
    print(f"{Path(gguf).name}, {threads} threads, {len(ids)} tokens of context, {args.rounds} rounds", flush=True)
    prefills: list[list[float]] = [[] for _ in settings]
    costs: list[list[dict[int, float]]] = [[] for _ in settings]
    for round_ in range(args.rounds):
        for i, runner in enumerate(runners):
            p, c = measure_round(runner, ids, args.repeats)
            prefills[i].append(p)
            costs[i].append(c)
            print(f"round {round_ + 1}: {names[i]}: prefill {p:.0f} tokens/s, c(1) {1000 * c[1]:.1f} ms",
                  flush=True)
    results = []
    for s, name, runner, p, c in zip(settings, names, runners, prefills, costs):
        results.append({
            "setting": name, "keys": s.keys, "values": s.values, "repack": runner.repack, "max_rows": runner.max_rows,
            "prefill_tokens_per_s": statistics.median(p),
            "cost_ms": {str(k): 1000 * statistics.median(r[k] for r in c) for k in c[0]},
            "exact": {str(k): ok for k, ok in exact_rows(runner, ids).items()},
        })
        runner.close()
    record = {**run_header(started, "cpu"), "gguf": gguf, "threads": threads, "context": len(ids),
              "rounds": args.rounds, "repeats": args.repeats, "settings": results}
    (out / "llama.json").write_text(json.dumps(record, indent=1))
    text = table(results, len(ids))
    (out / "llama.md").write_text(text + "\n")
    plot_lines({r["setting"]: [(int(k), v) for k, v in r["cost_ms"].items()] for r in results}, out / "llama.png",
               "c(k) of the llama.cpp forward per setting", "rows k", "ms")
    print(text)
    return 0


def register(kinds: Any) -> None:
    """Add ``bench llama`` to the bench subcommands."""
    p = kinds.add_parser("llama", help="the llama.cpp forward per K/V type and weight layout: prefill, c(k), exact rows")
    p.add_argument("--model", default="", metavar="NAME", help="model.name (a GGUF model); default: the default model")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads; 0 means all cores")
    p.add_argument("--kv", default="f16/q8_0,f16/bf16,f16/f16",
                   help="comma-separated KEYS/VALUES cache types (f16, bf16, q8_0); the first is the runner's default")
    p.add_argument("--repack", choices=("auto", "on", "off", "both"), default="auto",
                   help="weights repacked for the CPU (auto: where the llama.cpp build allows it, as model.repack)")
    p.add_argument("--context", type=int, default=700, help="tokens of code before the measured rows")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every setting in turn")
    p.add_argument("--repeats", type=int, default=8, help="timed batches per row count and round")
    p.add_argument("--out", default="bench-out/llama", help="folder for llama.json, llama.md, llama.png")
    p.set_defaults(func=lambda args: main(args))
