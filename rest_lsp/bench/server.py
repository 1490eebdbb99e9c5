"""The server benchmark: end-to-end completion latency over LSP, as an editor sees it.

``python -m rest_lsp.bench.server --workspace DIR`` (also ``rest-lsp bench server``) starts
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
  server's resident memory before and after;
- moves (``--moves``, ``bench/server_moves.py``): the first request at a new place in a file that
  is open, after a pause in which the server may warm the document (``server.warm_documents``,
  ``--warm-documents on|off``): latency, prefilled and reused tokens, next-line exact match;
- lines typed (``--lines``, ``bench/server_lines.py``): a line written again one character at a
  time, each suggestion awaited: the keystrokes' latency and the share typed through.

``--context on,off`` starts each mode's server twice, with the prompt's context block
(``server.context = "auto"``, the default) and without, all sent the same requests interleaved,
and reports the latency ratios with/without the block (``--modes rest`` leaves greedy out: two
servers instead of four).  Every document is closed after its position, so that no request's
context block quotes the held-out text of an earlier position (an open buffer is a context source).

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

from rest_lsp.bench.index import cpu_name
from rest_lsp.bench.context_settings import context_tokens_of, order_at, parse_settings, ratio, server_value
from rest_lsp.bench.quantiles import nearest_rank
from rest_lsp.bench.resident import rss_mb
from rest_lsp.bench.server_lines import line_trials
from rest_lsp.bench.server_moves import move_trials
from rest_lsp.bench.server_process import Server
from rest_lsp.bench.server_table import keystroke_record, table
from rest_lsp.bench.workloads import held_out_files
from rest_lsp.config.schema import RetrievalConfig, ServerConfig
from rest_lsp.errors import ConfigError

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


def held_out_paths(workspace: Path, count: int, seed: int) -> list[Path]:
    """Python files of the workspace held out of its index, chosen as every benchmark chooses them
    (``workloads.held_out_files``: a seeded hash of the relative path)."""
    files = sorted(
        str(p.relative_to(workspace)) for p in workspace.rglob("*.py")
        if ".venv" not in p.parts and "site-packages" not in p.parts and ".git" not in p.parts
        and p.stat().st_size >= MIN_FILE_CHARS
    )
    if not files:
        raise ConfigError(f"no Python files of at least {MIN_FILE_CHARS} bytes under {workspace}",
                          workspace=str(workspace))
    return [workspace / rel for rel in held_out_files(files, count, seed)]


def line_col(text: str, offset: int) -> tuple[int, int]:
    """0-based (line, UTF-16 column) of a character offset."""
    before = text[:offset]
    line_start = before.rfind("\n") + 1
    return before.count("\n"), len(before[line_start:].encode("utf-16-le")) // 2


def server_labels(modes: list[str], settings: list[str]) -> list[tuple[str, str, str]]:
    """(label, decoding mode, context setting) of each server: the mode alone when one context
    setting runs (the report's layout before the switch), else "mode context on|off"."""
    return [(mode if len(settings) == 1 else f"{mode} context {c}", mode, c) for c in settings for mode in modes]


def parse_modes(text: str) -> list[str]:
    """The decoding modes of ``--modes`` (rest, greedy), each once."""
    modes = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not modes or set(modes) - {"rest", "greedy"}:
        raise SystemExit(f"--modes {text!r}: expected rest, greedy or rest,greedy")
    return modes


def pct(values: list[float], p: float) -> float:
    """The p-quantile (nearest rank) of values, in ms."""
    return round(nearest_rank(values, p) * 1000, 1) if values else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON-ready results."""
    workspace = Path(args.workspace).resolve()
    held = held_out_paths(workspace, args.held_out, args.seed)
    spots = pick_positions(held, args.positions, args.seed)
    excludes = [str(p.relative_to(workspace)) for p in held]
    # a fresh workspace index and history per run: a history kept from an earlier run would
    # hold the model's outputs at these very positions
    scratch = Path(tempfile.mkdtemp(prefix="rest-lsp-bench-server-"))
    base: dict[str, Any] = {
        "model": {"name": args.model, "threads": args.threads, "kv_cache": getattr(args, "kv_cache", "auto")},
        "index": {"exclude_globs": excludes, "index_dir": str(scratch / "index")},
        "retrieval": {"history_warmup": args.history_warmup},
        "decoding": {"max_new_tokens": args.max_new_tokens},
        "server": {"debounce_ms": 0, "warm_documents": getattr(args, "warm_documents", "on") == "on",
                   "multiline": getattr(args, "multiline", "auto")},
    }
    if args.corpus:
        base["index"]["corpus_roots"] = args.corpus
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    settings = parse_settings(getattr(args, "context", "on"))
    modes = parse_modes(getattr(args, "modes", "rest,greedy"))
    context_tokens = getattr(args, "context_tokens", ServerConfig.context_tokens)
    servers = {}
    for label, mode, setting in server_labels(modes, settings):
        options = json.loads(json.dumps(base))
        options["decoding"]["mode"] = mode
        options["server"].update(context=server_value(setting), context_tokens=context_tokens_of(setting, context_tokens))
        servers[label] = Server(label, options, workspace, env, warms_up=mode == "rest" and args.history_warmup > 0)
    t0 = time.perf_counter()
    try:
        for server in servers.values():  # one after the other: the later ones reuse the built index
            await server.start()
        settle = ", ".join(f"{n}: {s.settle_s:.1f} s" for n, s in servers.items() if s.warms_up)
        print(f"servers ready in {time.perf_counter() - t0:.1f} s (history warm-ups: {settle or 'none'}); "
              f"{len(spots)} positions in {len(held)} held-out files", file=sys.stderr)
        return await measure(args, servers, workspace, held, spots)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def measure(args: argparse.Namespace, servers: dict[str, Any], workspace: Path, held: list[Path],
                  spots: list[tuple[Path, int]]) -> dict[str, Any]:
    """The measurements over started servers (keyed by ``server_labels``); returns the JSON-ready results."""
    labels = list(servers)
    # per position and server: the document opened one character short and completed there (the
    # first request in a document: a cold prefill), then the character typed and completed again
    # (what most requests of an editing session are: the prompt's cache is reused)
    lat: dict[str, list[float]] = {m: [] for m in servers}
    first: dict[str, list[float]] = {m: [] for m in servers}
    tps: dict[str, list[float]] = {m: [] for m in servers}
    # prompt tokens prefilled (not reused from the cache) by each first request and keystroke
    prefilled: dict[str, dict[str, list[int]]] = {m: {"first": [], "keystroke": []} for m in servers}
    context_tokens: dict[str, list[int]] = {m: [] for m in servers}
    # keystrokes answered with the rest of the completion on show (server.type_through), and the
    # latency of those decoded
    through: dict[str, list[bool]] = {m: [] for m in servers}
    decoded: dict[str, list[float]] = {m: [] for m in servers}
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in servers}
    pairs = _mode_pairs(servers)
    same = {pair: 0 for pair in pairs}
    for i, (path, offset) in enumerate(spots):
        text = path.read_text(encoding="utf-8", errors="replace")[:offset]
        uri = (workspace / f"__bench_{i}.py").as_uri()
        line, col = line_col(text, len(text))
        got: dict[str, list[str]] = {}
        for label in order_at(labels, i):
            s = servers[label]
            s.set_text(uri, text[:-1])
            first[label].append((await s.complete(uri, *line_col(text[:-1], len(text) - 1)))[0])
            prefilled[label]["first"].append(int((await s.last()).get("prefill_tokens") or 0))
            s.set_text(uri, text)
            seconds, got[label] = await s.complete(uri, line, col)
            lat[label].append(seconds)
            last = await s.last()
            prefilled[label]["keystroke"].append(int(last.get("prefill_tokens") or 0))
            context_tokens[label].append(int(last.get("context_tokens") or 0))
            through[label].append(bool(last.get("type_through")))
            records[label].append(keystroke_record(path, offset, seconds, last, got[label]))
            if not last.get("type_through"):
                decoded[label].append(seconds)
            if last.get("steps"):
                tps[label].append(last["new_tokens"] / last["steps"])
            s.close(uri)  # an open buffer is a context source: no later request may quote it
        for pair in pairs:
            same[pair] += got[pair[0]] == got[pair[1]]
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(spots)}: p50 " + ", ".join(f"{m} {pct(lat[m], .5)} ms" for m in labels),
                  file=sys.stderr)
    rest_labels = [m for m in labels if servers[m].options["decoding"]["mode"] == "rest"] or labels[:1]
    moves = await move_trials(args, servers, workspace, spots, line_col) if getattr(args, "moves", 0) else {}
    lines = await line_trials(args, servers, workspace, spots, line_col) if getattr(args, "lines", 0) else {}
    reuse = {m: await kv_trials(args, servers[m], workspace, spots) for m in rest_labels}
    typing = {m: await typing_trials(args, servers[m], workspace, spots) for m in rest_labels}
    for server in servers.values():
        await server.stop()
    main_label = rest_labels[0]
    out: dict[str, Any] = {
        "workspace": str(workspace), "held_out_files": [str(p) for p in held], "positions": len(spots),
        "history_warmup": {"positions": args.history_warmup,
                           "seconds": {m: round(s.settle_s, 1) for m, s in servers.items() if s.warms_up}},
        "model": args.model or "embedded", "max_new_tokens": args.max_new_tokens,
        "context": parse_settings(getattr(args, "context", "on")),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
        "latency_ms": {m: summary_ms(v) for m, v in lat.items()},
        "cold_latency_ms": {m: summary_ms(v) for m, v in first.items()},
        "tokens_per_step": {m: round(statistics.fmean(v), 3) if v else None for m, v in tps.items()},
        "typed_through_share": {m: round(sum(v) / len(v), 3) if v else None for m, v in through.items()},
        "decoded_keystroke_latency_ms": {m: summary_ms(v) for m, v in decoded.items()},
        "keystroke_records": records,
        "prefilled_tokens_p50": {m: {k: statistics.median(v) if v else None for k, v in kinds.items()}
                                 for m, kinds in prefilled.items()},
        "context_tokens_p50": {m: statistics.median(v) if v else None for m, v in context_tokens.items()},
        "identical_items_share": {f"{a} = {b}": round(n / len(spots), 3) if spots else None
                                  for (a, b), n in same.items()},
        "kv_reuse_after_one_char_edit": reuse[main_label],
        "typing": typing[main_label],
        "warm_documents": getattr(args, "warm_documents", "on"), "multiline": getattr(args, "multiline", "auto"),
        "kv_cache": getattr(args, "kv_cache", "auto"), "moves": moves,
        "lines": lines,
    }
    if len(rest_labels) > 1:
        out["kv_reuse_by_server"], out["typing_by_server"] = reuse, typing
    out.update(ratios(out["latency_ms"], out["cold_latency_ms"], servers))
    if len(out["identical_items_share"]) == 1:  # the report's layout before the context switch
        out["identical_items_share"] = next(iter(out["identical_items_share"].values()))
    return out


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and mean of latencies, in ms."""
    return {"p50": pct(seconds, .5), "p95": pct(seconds, .95),
            "mean": round(statistics.fmean(seconds) * 1000, 1) if seconds else float("nan")}


def _mode_pairs(servers: dict[str, Any]) -> list[tuple[str, str]]:
    """(REST label, greedy label) of the servers with the same context setting: their items must agree."""
    by: dict[str, dict[str, str]] = {}
    for label, s in servers.items():
        by.setdefault(s.options["server"]["context"], {})[s.options["decoding"]["mode"]] = label
    return [(m["rest"], m["greedy"]) for m in by.values() if "rest" in m and "greedy" in m]


def ratios(latency: dict[str, dict], cold: dict[str, dict], servers: dict[str, Any]) -> dict[str, Any]:
    """p50 REST / greedy (per context setting) and p50 with / without the context block (per mode)."""
    out: dict[str, Any] = {}
    pairs = _mode_pairs(servers)
    if pairs:
        rest, greedy = pairs[0]  # the first setting's: the report's layout before the switch
        out["p50_ratio_rest_over_greedy"] = ratio(latency[rest]["p50"], latency[greedy]["p50"])
        out["cold_p50_ratio_rest_over_greedy"] = ratio(cold[rest]["p50"], cold[greedy]["p50"])
    by: dict[str, dict[str, str]] = {}
    for label, s in servers.items():
        by.setdefault(s.options["decoding"]["mode"], {})[s.options["server"]["context"]] = label
    with_without = {mode: {"keystroke": ratio(latency[m["auto"]]["p50"], latency[m["off"]]["p50"]),
                           "first": ratio(cold[m["auto"]]["p50"], cold[m["off"]]["p50"])}
                    for mode, m in by.items() if "auto" in m and "off" in m}
    if with_without:
        out["p50_ratio_context_on_over_off"] = with_without
    return out


async def kv_trials(args: argparse.Namespace, server: Any, workspace: Path,
                    spots: list[tuple[Path, int]]) -> list[dict]:
    """KV reuse: a request, a one-character edit, the same request again (prompt, reused, prefilled tokens)."""
    reuse = []
    for i, (path, offset) in enumerate(spots[: args.kv_trials]):
        text = path.read_text(encoding="utf-8", errors="replace")[:offset]
        uri = (workspace / f"__kv_{i}.py").as_uri()
        line, col = line_col(text, len(text))
        server.set_text(uri, text)
        await server.complete(uri, line, col)
        cold = await server.last()
        server.insert(uri, line, col, "x")
        await server.complete(uri, line, col + 1)
        warm = await server.last()
        server.close(uri)
        reuse.append({"prompt_tokens": warm.get("prompt_tokens"), "reused_tokens": warm.get("reused_tokens"),
                      "prefill_tokens": warm.get("prefill_tokens"), "cold_prefill_tokens": cold.get("prefill_tokens"),
                      "context_tokens": warm.get("context_tokens"),
                      "cold_prefill_ms": round(cold.get("prefill_s", 0) * 1000, 2),
                      "warm_prefill_ms": round(warm.get("prefill_s", 0) * 1000, 2)})
    return reuse


async def typing_trials(args: argparse.Namespace, server: Any, workspace: Path, spots: list[tuple[Path, int]]) -> dict:
    """Typing at ``--edits-per-s``, a request after each edit: the last request's latency (what a
    user waits for) against an idle request's, and the server's memory before and after."""
    idle, typing_last, rss_before = [], [], rss_mb(server.pid)
    for i, (path, offset) in enumerate(spots[: args.typing_trials]):
        full = path.read_text(encoding="utf-8", errors="replace")
        text = full[:offset]
        typed = full[offset:].split("\n", 1)[0][: args.typed_chars] or "pass"
        uri = (workspace / f"__typing_{i}.py").as_uri()
        line, col = line_col(text, len(text))
        server.set_text(uri, text)
        idle.append((await server.complete(uri, line, col))[0])
        pending = []
        for k, ch in enumerate(typed):
            server.insert(uri, line, col + k, ch)
            pending.append(asyncio.ensure_future(server.complete(uri, line, col + k + 1)))
            await asyncio.sleep(1 / args.edits_per_s)  # the user's typing rate, not a wait for a result
        results = await asyncio.gather(*pending)
        typing_last.append(results[-1][0])  # measured from its own send
        server.close(uri)
    rss_after = rss_mb(server.pid)
    return {"edits_per_s": args.edits_per_s, "idle_p95_ms": pct(idle, .95),
            "last_request_p95_ms": pct(typing_last, .95),
            "ratio_p95": round(pct(typing_last, .95) / pct(idle, .95), 3) if idle else None,
            "rss_mb_before": round(rss_before, 1), "rss_mb_after": round(rss_after, 1)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rest_lsp.bench.server", description=__doc__.split("\n")[0])
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
    p.add_argument("--modes", default="rest,greedy", help="decoding modes, a server each: rest, greedy or rest,greedy")
    p.add_argument("--context", default="on", metavar="on,off",
                   help="the prompt's context block (server.context): on, off, or on,off for a server of each "
                        "mode with and one without it, interleaved, and the latency ratios")
    p.add_argument("--context-tokens", type=int, default=ServerConfig.context_tokens, metavar="N",
                   help="server.context_tokens of the servers with the block")
    p.add_argument("--history-warmup", type=int, default=RetrievalConfig.history_warmup, metavar="N",
                   help="the REST server's history warm-up positions (retrieval.history_warmup; 0: cold)")
    p.add_argument("--moves", type=int, default=8, metavar="N",
                   help="first requests at a new place in an open file (bench/server_moves.py); 0: none")
    p.add_argument("--move-lines", type=int, default=20, metavar="K", help="a move goes at most K lines away")
    p.add_argument("--pause-s", type=float, default=15.0, help="the pause before a move: until the server "
                   "warmed the document, at most this long")
    p.add_argument("--lines", type=int, default=4, metavar="N",
                   help="lines typed again one character at a time, each suggestion awaited (bench/server_lines.py)")
    p.add_argument("--line-chars", type=int, default=12, metavar="C", help="characters typed per line")
    p.add_argument("--warm-documents", choices=("on", "off"), default="on", help="server.warm_documents")
    p.add_argument("--multiline", choices=("auto", "always"), default="auto", help="server.multiline")
    p.add_argument("--kv-cache", choices=("auto", "exact"), default="auto", help="model.kv_cache (llama.cpp forward)")
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
