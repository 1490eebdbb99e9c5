"""The server benchmark's report: its results as a markdown table."""

from __future__ import annotations

from typing import Any

from rest_lsp.bench.server_lines import lines_table
from rest_lsp.bench.server_moves import moves_table


def keystroke_record(path: Any, offset: int, seconds: float, last: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """One request after a keystroke, as the JSON keeps it: where, how long, what it decoded and
    showed (so a reader sees which completions the latency figures are made of)."""
    return {"file": str(path), "offset": offset, "latency_ms": round(seconds * 1000, 1),
            "type_through": bool(last.get("type_through")), "new_tokens": last.get("new_tokens"),
            "steps": last.get("steps"), "stop_reason": last.get("stop_reason"),
            "shown": items[0] if items else ""}


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
    lines += ["", f"p50 REST / greedy: {r.get('p50_ratio_rest_over_greedy')} (first requests: "
              f"{r.get('cold_p50_ratio_rest_over_greedy')}); identical items: {r['identical_items_share']}",
              f"typing at {t['edits_per_s']} edits/s: last-request p95 {t['last_request_p95_ms']} ms vs idle p95 "
              f"{t['idle_p95_ms']} ms (x{t['ratio_p95']}); RSS {t['rss_mb_before']} -> {t['rss_mb_after']} MiB"]
    shares = r.get("typed_through_share") or {}
    for m, share in shares.items():
        d = (r.get("decoded_keystroke_latency_ms") or {}).get(m, {})
        lines.append(f"{m}: keystrokes typed through the suggestion {share}; the decoded ones p50 / p95 "
                     f"{d.get('p50')} / {d.get('p95')} ms")
    blocks = {m: v for m, v in (r.get("context_tokens_p50") or {}).items() if v}
    if blocks:
        lines.append("context block tokens p50: " + ", ".join(f"{m} {v}" for m, v in blocks.items()))
    for mode, x in (r.get("p50_ratio_context_on_over_off") or {}).items():
        lines.append(f"p50 with / without the context block, {mode}: {x['keystroke']} after a keystroke, "
                     f"{x['first']} for first requests")
    by_server = r.get("kv_reuse_by_server") or ({"": kv} if kv else {})
    for label, trials in by_server.items():
        lines.append(f"KV reuse after a one-character edit{', ' + label if label else ''} "
                     "(prompt / reused / prefilled tokens): " + ", ".join(
                         f"{k['prompt_tokens']}/{k['reused_tokens']}/{k['prefill_tokens']}" for k in trials))
    lines += moves_table(r.get("moves") or {})
    lines += lines_table(r.get("lines") or {})
    return "\n".join(lines)
