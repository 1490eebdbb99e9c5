"""The server benchmark's moves: the first request at a new place in a file that is open.

What a user does between two completions most often: reads, then moves the cursor a few
functions away and writes a line there.  Per trial, a held-out file is opened with one line's
text (after its indentation) removed and completed there (the first request in the document),
then the line is written back (the file as it is), the user pauses, and the cursor moves to
another line within ``--move-lines`` of the first, whose text is removed and completed: that
request's latency, the prompt tokens it prefilled and reused, and whether its first line is the
line removed (exact match) are reported.

The pause lasts until the server logs that it warmed the document (``server.warm_documents``,
``completion/document_warm``), at most ``--pause-s`` seconds: with the warm-up off it is that
long.  Each server gets the same files, lines and edits, the servers' order rotated per trial.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

from rest_lsp.bench.context_settings import order_at


def line_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, content start, end) character offsets of each line (end excludes the newline)."""
    spans, pos = [], 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        spans.append((pos, pos + len(body) - len(body.lstrip(" \t")), pos + len(body)))
        pos += len(line)
    return spans


def without_line(text: str, line: int) -> tuple[str, int, str]:
    """(``text`` with line ``line``'s text after its indentation removed, the cursor offset there,
    the removed text)."""
    _, content, end = line_spans(text)[line]
    return text[:content] + text[end:], content, text[content:end]


def move_target(text: str, line: int, within: int, rng: random.Random) -> int | None:
    """Another line, at most ``within`` lines from ``line``, with code on it (None: none)."""
    spans = line_spans(text)
    options = [i for i in range(max(0, line - within), min(len(spans), line + within + 1))
               if i != line and text[spans[i][1]:spans[i][2]].strip()
               and not text[spans[i][1]:spans[i][2]].lstrip().startswith(("#", '"', "'"))]
    return rng.choice(options) if options else None


def first_line(items: list[str]) -> str:
    """The first line of the first item, stripped ("" when none)."""
    return items[0].split("\n", 1)[0].strip() if items and items[0] else ""


async def move_trials(args: Any, servers: dict[str, Any], workspace: Path, spots: list[tuple[Path, int]],
                      line_col) -> dict[str, Any]:
    """The moves over ``spots[:args.moves]`` for every server; JSON-ready results per server."""
    rng = random.Random(args.seed)
    labels = list(servers)
    got: dict[str, dict[str, list]] = {m: {"moved_s": [], "opened_s": [], "prefilled": [], "reused": [],
                                           "prompt": [], "exact": [], "warm_wait_s": [], "shown": []}
                                       for m in labels}
    records: list[dict[str, Any]] = []
    trials = 0
    for i, (path, offset) in enumerate(spots[: args.moves]):
        full = path.read_text(encoding="utf-8", errors="replace")
        first = full.count("\n", 0, offset)
        second = move_target(full, first, args.move_lines, rng)
        if second is None:
            continue
        trials += 1
        text1, at1, _ = without_line(full, first)
        text2, at2, removed = without_line(full, second)
        uri = (workspace / f"__move_{i}.py").as_uri()
        for label in order_at(labels, i):
            s, out = servers[label], got[label]
            s.set_text(uri, text1)
            out["opened_s"].append((await s.complete(uri, *line_col(text1, at1)))[0])
            warmed_before = s.warm_count(uri)
            s.set_text(uri, full)  # the line written as the file has it
            out["warm_wait_s"].append(await s.wait_warmed(uri, warmed_before, args.pause_s))
            s.set_text(uri, text2)  # moved, and began the other line again
            seconds, items = await s.complete(uri, *line_col(text2, at2))
            last = await s.last()
            out["moved_s"].append(seconds)
            out["prefilled"].append(int(last.get("prefill_tokens") or 0))
            out["reused"].append(int(last.get("reused_tokens") or 0))
            out["prompt"].append(int(last.get("prompt_tokens") or 0))
            out["exact"].append(first_line(items) == removed.strip())
            out["shown"].append(items[0] if items else "")
            s.close(uri)
        records.append({"file": str(path), "line": first + 1, "moved_to": second + 1, "removed": removed,
                        "shown": {m: got[m]["shown"][-1] for m in labels}})
    return {"trials": trials, "move_lines": args.move_lines, "pause_s": args.pause_s,
            "by_server": {m: summary(v) for m, v in got.items()}, "records": records}


def summary(v: dict[str, list]) -> dict[str, Any]:
    """p50/p95 latencies in ms, token medians, exact-match share, the pause the warm-up took."""
    from rest_lsp.bench.quantiles import ms_at as ms

    waits = [w for w in v["warm_wait_s"] if w is not None]
    return {"moved_ms": {"p50": ms(v["moved_s"], .5), "p95": ms(v["moved_s"], .95)},
            "opened_ms": {"p50": ms(v["opened_s"], .5), "p95": ms(v["opened_s"], .95)},
            "prefilled_p50": statistics.median(v["prefilled"]) if v["prefilled"] else None,
            "reused_p50": statistics.median(v["reused"]) if v["reused"] else None,
            "prompt_p50": statistics.median(v["prompt"]) if v["prompt"] else None,
            "exact_match": round(sum(v["exact"]) / len(v["exact"]), 3) if v["exact"] else None,
            "warmed": f"{len(waits)}/{len(v['warm_wait_s'])}",
            "warm_wait_s_p50": round(statistics.median(waits), 2) if waits else None}


def moves_table(moves: dict[str, Any]) -> list[str]:
    """The moves as markdown lines (none when no trial ran)."""
    if not moves or not moves.get("trials"):
        return []
    lines = ["", f"first request at a new place in an open file ({moves['trials']} moves of at most "
             f"{moves['move_lines']} lines, after a pause of up to {moves['pause_s']} s):", "",
             "| server | moved: p50 / p95 ms | opened: p50 / p95 ms | prefilled / reused / prompt tokens p50 "
             "| exact match | warmed in the pause (p50 s) |", "|---|---|---|---|---|---|"]
    for m, r in moves["by_server"].items():
        lines.append(f"| {m} | {r['moved_ms']['p50']} / {r['moved_ms']['p95']} | {r['opened_ms']['p50']} / "
                     f"{r['opened_ms']['p95']} | {r['prefilled_p50']} / {r['reused_p50']} / {r['prompt_p50']} | "
                     f"{r['exact_match']} | {r['warmed']} ({r['warm_wait_s_p50']}) |")
    return lines
