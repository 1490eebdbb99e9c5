"""The server benchmark: end-to-end completion latency over LSP, as an editor sees it.

``python -m rest_lsp.completion.bench --workspace DIR`` (also ``rest-lsp bench server``) starts
two real servers over stdio — one decoding with REST, one with plain greedy decoding — on the same
model and index, and sends both the same requests, interleaved so that machine drift hits both
alike.  Held-out files of the workspace are left out of the index; each request opens a held-out
file cut at a cursor (prefix = the file up to the cursor), as when writing new code.  Each run
has a fresh workspace index and history, and the REST server is measured once its history
warm-up (``retrieval.history_warmup``) has logged its end, as a user's daemon runs after its
first minutes.  It reports:

- request-to-response latency p50/p95 per mode, tokens/step, and the REST/greedy ratio, for the
  request after typing a character (the usual request of an editing session: its prompt's KV
  cache is reused) and for the first request in a document (a cold prefill of the whole prompt);
- KV reuse: the prefill of a request right after a one-character edit (``reused_tokens``), and
  the prompt tokens prefilled by first requests and by requests after a keystroke;
- typing at 20 edits/s with a request after each: latency of the last request vs idle, and the
  server's resident memory before and after.

It writes JSON (``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from indexer.bench import cpu_name
from rest_lsp.benchmarks.quantiles import nearest_rank
from rest_lsp.completion.bench_server import Server, rss_mb
from rest_lsp.config import RetrievalConfig

#: files smaller than this (characters) make poor cursor positions
MIN_FILE_CHARS = 400


def pick_positions(files: list[Path], count: int, seed: int) -> list[tuple[Path, int]]:
    """Cursor offsets at the start of non-blank lines inside the files (seeded)."""
    rng = random.Random(seed)
    spots: list[tuple[Path, int]] = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        offsets, pos = [], 0
        for line in text.splitlines(keepends=True):
            stripped = line.lstrip(" ")
            if pos > 200 and stripped.strip() and not stripped.startswith(("#", '"', "'")):
                offsets.append(pos + len(line) - len(stripped))  # after the indentation
            pos += len(line)
        spots += [(f, o) for o in offsets]
    rng.shuffle(spots)
    return spots[:count]


def held_out_files(workspace: Path, count: int, seed: int) -> list[Path]:
    """Python files of the workspace held out of its index (seeded choice)."""
    files = sorted(
        p for p in workspace.rglob("*.py")
        if ".venv" not in p.parts and "site-packages" not in p.parts and ".git" not in p.parts
        and p.stat().st_size >= MIN_FILE_CHARS
    )
    if not files:
        raise SystemExit(f"no Python files of at least {MIN_FILE_CHARS} bytes under {workspace}")
    return sorted(random.Random(seed).sample(files, min(count, len(files))))


def line_col(text: str, offset: int) -> tuple[int, int]:
    """0-based (line, UTF-16 column) of a character offset."""
    before = text[:offset]
    line_start = before.rfind("\n") + 1
    return before.count("\n"), len(before[line_start:].encode("utf-16-le")) // 2


def pct(values: list[float], p: float) -> float:
    """The p-quantile (nearest rank) of values, in ms."""
    return round(nearest_rank(values, p) * 1000, 1) if values else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready results."""
    workspace = Path(args.workspace).resolve()
    held = held_out_files(workspace, args.held_out, args.seed)
    spots = pick_positions(held, args.positions, args.seed)
    excludes = [str(p.relative_to(workspace)) for p in held]
    # a fresh workspace index and history per run: a history kept from an earlier run would
    # hold the model's outputs at these very positions
    scratch = Path(tempfile.mkdtemp(prefix="rest-lsp-bench-server-"))
    base: dict[str, Any] = {
        "model": {"name": args.model, "threads": args.threads},
        "index": {"exclude_globs": excludes, "index_dir": str(scratch / "index")},
        "retrieval": {"history_warmup": args.history_warmup},
        "decoding": {"max_new_tokens": args.max_new_tokens},
        "server": {"debounce_ms": 0},
    }
    if args.corpus:
        base["index"]["corpus_roots"] = args.corpus
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    servers = {
        mode: Server(mode, json.loads(json.dumps(base)) | {"decoding": {"max_new_tokens": args.max_new_tokens, "mode": mode}},
                     workspace, env, warms_up=mode == "rest" and args.history_warmup > 0)
        for mode in ("rest", "greedy")
    }
    t0 = time.perf_counter()
    try:
        for server in servers.values():  # one after the other: the second reuses the built index
            await server.start()
        print(f"servers ready in {time.perf_counter() - t0:.1f} s (the REST server's warm-up: "
              f"{servers['rest'].settle_s:.1f} s); {len(spots)} positions in {len(held)} held-out files", file=sys.stderr)
        return await measure(args, servers, workspace, held, spots)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def measure(args: argparse.Namespace, servers: dict[str, Any], workspace: Path, held: list[Path],
                  spots: list[tuple[Path, int]]) -> dict[str, Any]:
    """The measurements over started servers; returns the JSON-ready results."""
    # per position and mode: the document opened one character short and completed there (the
    # first request in a document: a cold prefill), then the character typed and completed again
    # (what most requests of an editing session are: the prompt's cache is reused)
    lat: dict[str, list[float]] = {m: [] for m in servers}
    first: dict[str, list[float]] = {m: [] for m in servers}
    tps: dict[str, list[float]] = {m: [] for m in servers}
    # prompt tokens prefilled (not reused from the cache) by each first request and keystroke
    prefilled: dict[str, dict[str, list[int]]] = {m: {"first": [], "keystroke": []} for m in servers}
    same = 0
    for i, (path, offset) in enumerate(spots):
        text = path.read_text(encoding="utf-8", errors="replace")[:offset]
        uri = (workspace / f"__bench_{i}.py").as_uri()
        line, col = line_col(text, len(text))
        got: dict[str, list[str]] = {}
        order = list(servers) if i % 2 == 0 else list(servers)[::-1]
        for mode in order:
            s = servers[mode]
            s.set_text(uri, text[:-1])
            first[mode].append((await s.complete(uri, *line_col(text[:-1], len(text) - 1)))[0])
            prefilled[mode]["first"].append(int((await s.last()).get("prefill_tokens") or 0))
            s.set_text(uri, text)
            seconds, got[mode] = await s.complete(uri, line, col)
            lat[mode].append(seconds)
            last = await s.last()
            prefilled[mode]["keystroke"].append(int(last.get("prefill_tokens") or 0))
            if last.get("steps"):
                tps[mode].append(last["new_tokens"] / last["steps"])
        same += got["rest"] == got["greedy"]
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(spots)}: p50 rest {pct(lat['rest'], .5)} ms, greedy {pct(lat['greedy'], .5)} ms",
                  file=sys.stderr)
    rest = servers["rest"]
    # KV reuse: a request, a one-character edit, the same request again
    reuse = []
    for i, (path, offset) in enumerate(spots[: args.kv_trials]):
        text = path.read_text(encoding="utf-8", errors="replace")[:offset]
        uri = (workspace / f"__kv_{i}.py").as_uri()
        line, col = line_col(text, len(text))
        rest.set_text(uri, text)
        await rest.complete(uri, line, col)
        cold = await rest.last()
        rest.insert(uri, line, col, "x")
        await rest.complete(uri, line, col + 1)
        warm = await rest.last()
        reuse.append({"prompt_tokens": warm.get("prompt_tokens"), "reused_tokens": warm.get("reused_tokens"),
                      "prefill_tokens": warm.get("prefill_tokens"), "cold_prefill_tokens": cold.get("prefill_tokens"),
                      "cold_prefill_ms": round(cold.get("prefill_s", 0) * 1000, 2),
                      "warm_prefill_ms": round(warm.get("prefill_s", 0) * 1000, 2)})
    # typing at 20 edits/s, a request after each edit; the last request's latency is what a user waits for
    idle, typing_last, rss_before = [], [], rss_mb(rest.pid)
    for i, (path, offset) in enumerate(spots[: args.typing_trials]):
        full = path.read_text(encoding="utf-8", errors="replace")
        text = full[:offset]
        typed = full[offset:].split("\n", 1)[0][: args.typed_chars] or "pass"
        uri = (workspace / f"__typing_{i}.py").as_uri()
        line, col = line_col(text, len(text))
        rest.set_text(uri, text)
        idle.append((await rest.complete(uri, line, col))[0])
        pending = []
        for k, ch in enumerate(typed):
            rest.insert(uri, line, col + k, ch)
            pending.append(asyncio.ensure_future(rest.complete(uri, line, col + k + 1)))
            await asyncio.sleep(1 / args.edits_per_s)  # the user's typing rate, not a wait for a result
        results = await asyncio.gather(*pending)
        typing_last.append(results[-1][0])  # measured from its own send
    rss_after = rss_mb(rest.pid)
    for server in servers.values():
        await server.stop()
    p50r, p50g = pct(lat["rest"], .5), pct(lat["greedy"], .5)
    return {
        "workspace": str(workspace), "held_out_files": [str(p) for p in held], "positions": len(spots),
        "history_warmup": {"positions": args.history_warmup, "seconds": round(servers["rest"].settle_s, 1)},
        "model": args.model or "embedded", "max_new_tokens": args.max_new_tokens,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "latency_ms": {m: {"p50": pct(v, .5), "p95": pct(v, .95), "mean": round(statistics.fmean(v) * 1000, 1)}
                       for m, v in lat.items()},
        "cold_latency_ms": {m: {"p50": pct(v, .5), "p95": pct(v, .95), "mean": round(statistics.fmean(v) * 1000, 1)}
                            for m, v in first.items()},
        "cold_p50_ratio_rest_over_greedy": round(pct(first["rest"], .5) / pct(first["greedy"], .5), 3)
        if pct(first["greedy"], .5) else None,
        "tokens_per_step": {m: round(statistics.fmean(v), 3) if v else None for m, v in tps.items()},
        "prefilled_tokens_p50": {m: {k: statistics.median(v) if v else None for k, v in kinds.items()}
                                 for m, kinds in prefilled.items()},
        "p50_ratio_rest_over_greedy": round(p50r / p50g, 3) if p50g else None,
        "identical_items_share": round(same / len(spots), 3) if spots else None,
        "kv_reuse_after_one_char_edit": reuse,
        "typing": {"edits_per_s": args.edits_per_s, "idle_p95_ms": pct(idle, .95), "last_request_p95_ms": pct(typing_last, .95),
                   "ratio_p95": round(pct(typing_last, .95) / pct(idle, .95), 3) if idle else None,
                   "rss_mb_before": round(rss_before, 1), "rss_mb_after": round(rss_after, 1)},
    }


def table(r: dict[str, Any]) -> str:
    """The results as a markdown table."""
    lines = ["| mode | after a keystroke: p50 / p95 ms | first request in a document: p50 / p95 ms | tokens/step "
             "| prefilled tokens p50: first / keystroke |",
             "|---|---|---|---|---|"]
    for m, v in r["latency_ms"].items():
        c = r["cold_latency_ms"][m]
        p = r.get("prefilled_tokens_p50", {}).get(m, {})
        lines.append(f"| {m} | {v['p50']} / {v['p95']} | {c['p50']} / {c['p95']} | {r['tokens_per_step'][m]} "
                     f"| {p.get('first')} / {p.get('keystroke')} |")
    t = r["typing"]
    kv = r["kv_reuse_after_one_char_edit"]
    lines += ["", f"p50 REST / greedy: {r['p50_ratio_rest_over_greedy']} (first requests: "
              f"{r['cold_p50_ratio_rest_over_greedy']}); identical items: {r['identical_items_share']}",
              f"typing at {t['edits_per_s']} edits/s: last-request p95 {t['last_request_p95_ms']} ms vs idle p95 "
              f"{t['idle_p95_ms']} ms (x{t['ratio_p95']}); RSS {t['rss_mb_before']} -> {t['rss_mb_after']} MiB"]
    if kv:
        lines.append("KV reuse after a one-character edit (prompt / reused / prefilled tokens): " + ", ".join(
            f"{k['prompt_tokens']}/{k['reused_tokens']}/{k['prefill_tokens']}" for k in kv))
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rest_lsp.completion.bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared with ``rest-lsp bench server``)."""
    p.add_argument("--workspace", required=True, help="a real repository (not in the model's training data)")
    p.add_argument("--model", default="", help="model.name (docs/models.md); default: the default model")
    p.add_argument("--corpus", nargs="*", help="corpus roots (default: the standard library)")
    p.add_argument("--held-out", type=int, default=4, help="files left out of the index")
    p.add_argument("--positions", type=int, default=40, help="cursor positions")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch threads per server (0: all cores)")
    p.add_argument("--kv-trials", type=int, default=5)
    p.add_argument("--typing-trials", type=int, default=5)
    p.add_argument("--typed-chars", type=int, default=12)
    p.add_argument("--edits-per-s", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history-warmup", type=int, default=RetrievalConfig.history_warmup, metavar="N",
                   help="the REST server's history warm-up positions (retrieval.history_warmup; 0: cold)")
    p.add_argument("--out", default="bench-out/server.json")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_and_report(args)


def run_and_report(args: argparse.Namespace) -> int:
    """Run, write the JSON, print the table."""
    results = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
