"""The server benchmark's lines typed: keystrokes inside a statement being written.

Per trial, a held-out file is opened with one line's text (after its indentation) removed, and
the line is typed again one character at a time (at most ``--line-chars``), a completion asked
after each and awaited (a user who reads each suggestion).  Reported per server: the keystrokes'
latency, the share answered by typing through the suggestion on show (``server.type_through``),
and the latency of the others, which decode.  The first request (at the empty line) is not a
keystroke and is left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rest_lsp.bench.context_settings import order_at
from rest_lsp.bench.server_moves import without_line


async def line_trials(args: Any, servers: dict[str, Any], workspace: Path, spots: list[tuple[Path, int]],
                      line_col) -> dict[str, Any]:
    """The typed lines over ``spots[:args.lines]`` for every server; JSON-ready results."""
    from rest_lsp.bench.quantiles import ms_at as ms

    labels = list(servers)
    seconds: dict[str, list[float]] = {m: [] for m in labels}
    decoded: dict[str, list[float]] = {m: [] for m in labels}
    through: dict[str, list[bool]] = {m: [] for m in labels}
    for i, (path, offset) in enumerate(spots[: args.lines]):
        full = path.read_text(encoding="utf-8", errors="replace")
        text, at, removed = without_line(full, full.count("\n", 0, offset))
        typed = removed[: args.line_chars]
        uri = (workspace / f"__line_{i}.py").as_uri()
        for label in order_at(labels, i):
            s = servers[label]
            line, col = line_col(text, at)
            s.set_text(uri, text)
            await s.complete(uri, line, col)
            for k, ch in enumerate(typed):
                s.insert(uri, line, col + k, ch)
                took, _ = await s.complete(uri, line, col + k + 1)
                last = await s.last()
                seconds[label].append(took)
                through[label].append(bool(last.get("type_through")))
                if not last.get("type_through"):
                    decoded[label].append(took)
            s.close(uri)

    return {"lines": min(args.lines, len(spots)), "chars": args.line_chars,
            "by_server": {m: {"keystrokes": len(seconds[m]),
                              "p50_ms": ms(seconds[m], .5), "p95_ms": ms(seconds[m], .95),
                              "typed_through": round(sum(through[m]) / len(through[m]), 3) if through[m] else None,
                              "decoded_p50_ms": ms(decoded[m], .5)} for m in labels}}


def lines_table(lines: dict[str, Any]) -> list[str]:
    """The typed lines as markdown lines (none when no trial ran)."""
    if not lines or not lines.get("lines"):
        return []
    out = ["", f"keystrokes typing a line again ({lines['lines']} lines, at most {lines['chars']} characters each, "
           "each suggestion awaited):", "",
           "| server | keystrokes | p50 / p95 ms | typed through | decoded p50 ms |", "|---|---|---|---|---|"]
    for m, r in lines["by_server"].items():
        out.append(f"| {m} | {r['keystrokes']} | {r['p50_ms']} / {r['p95_ms']} | {r['typed_through']} | "
                   f"{r['decoded_p50_ms']} |")
    return out
