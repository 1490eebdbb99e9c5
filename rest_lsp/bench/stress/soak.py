"""``rest-lsp bench soak``: a typing soak of the daemon (edits + completion requests at a fixed rate).

A copy of a real workspace (never the original) is served by ``rest-lsp serve --stdio`` with the
configured model (the embedded one by default).  Each tick types one character of a real source
file into an open buffer (``didChange``, incremental) and asks for an automatic inline completion,
as an editor does while the user types; every few seconds a file of the workspace is rewritten
and saved (the watcher and ``didSave`` refresh the index).  Per minute it records the latency
percentiles of the answers, the daemon's resident memory and every error (JSON-RPC errors,
``Error`` log lines, a dead daemon).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rest_lsp.bench.resident import rss_bytes
from rest_lsp.bench.stress.client import RawClient, inline_params, serve_argv


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)


def copy_workspace(source: Path, dest: Path) -> Path:
    """A copy of the Python files (and ignore files) of ``source``: the soak edits it freely."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part.startswith(".") or part in ("__pycache__", "node_modules") for part in rel.parts[:-1]):
            continue
        if path.is_file() and (path.suffix in (".py", ".md", ".toml") or path.name == ".gitignore"):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel)
    return dest


def run_soak(workspace: Path, minutes: float, rate: float, model: str, out: Path, debounce_ms: int,
             max_new_tokens: int, pause_s: float = 1.0) -> dict[str, Any]:
    """Run the soak; returns (and writes) the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="rest-lsp-soak-"))
    try:
        ws = copy_workspace(workspace, tmp / "ws")
        corpus = copy_workspace(workspace, tmp / "corpus")  # a real corpus, small enough to build fast
        files = sorted(p for p in ws.rglob("*.py") if p.stat().st_size > 2000)
        if not files:
            raise SystemExit(f"no Python files over 2 kB in {workspace}")
        env = _env(tmp / "home")
        client = RawClient(serve_argv(), env=env, stderr_path=tmp / "stderr.log")
        options = {"model": {"name": model}, "index": {"corpus_roots": [str(corpus)]},
                   "decoding": {"max_new_tokens": max_new_tokens}, "server": {"debounce_ms": debounce_ms}}
        t0 = time.monotonic()
        client.initialize(ws, options, timeout=300)
        ready = client.wait_ready(900)
        if not ready.startswith("rest-lsp ready"):
            raise SystemExit(f"the daemon did not start: {ready}")
        startup_s = time.monotonic() - t0
        record = _type(client, ws, files, minutes, rate, pause_s)
        record.update(startup_s=round(startup_s, 1), workspace=str(workspace), model=model or "embedded",
                      rate_per_s=rate, pause_at_line_end_s=pause_s, debounce_ms=debounce_ms, max_new_tokens=max_new_tokens,
                      exit_code=client.stop(), python=sys.version.split()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    return record


def _env(home: Path) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"),
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def _type(client: RawClient, ws: Path, files: list[Path], minutes: float, rate: float, pause_s: float,
          lines_per_buffer: int = 40) -> dict[str, Any]:
    """The typing loop: one edit and one completion request per tick.

    The user types the first ``lines_per_buffer`` lines of one real file after another into one
    buffer, cleared between files: the working set is the same in every minute, so memory growth
    and latency drift mean a leak or a slowdown, not a longer document.
    """
    sources = ["".join(f.read_text().splitlines(keepends=True)[:lines_per_buffer]) for f in files]
    sources = [t for t in sources if t.strip()]
    typed = 0
    source = sources[0]
    doc = ws / "soak_typing.py"
    uri = doc.as_uri()
    text = ""
    version = 1
    client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": ""}})
    sent: dict[int, tuple[float, int]] = {}  # request id -> (send time, minute)
    per_minute: list[dict[str, Any]] = []
    errors: list[str] = []
    start = time.monotonic()
    end = start + minutes * 60
    tick = 1.0 / rate
    due = start  # when the next edit is due
    pos = 0
    line, col = 0, 0
    next_file_change = start + 5
    changes = 0
    minute = 0
    rss_samples: list[int] = []
    seen_logs = 0
    while True:
        now = time.monotonic()
        if now >= end or client.proc.poll() is not None:
            break
        m = int((now - start) // 60)
        if m != minute:
            per_minute.append(_minute(minute, client, sent, rss_samples))
            minute, rss_samples = m, []
        if len(text) == len(source):  # this file is typed: clear the buffer, start the next one
            typed += 1
            source, text, line, col = sources[typed % len(sources)], "", 0, 0
            version += 1
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                     "contentChanges": [{"text": ""}]})
        ch = source[len(text)]
        pos += 1
        version += 1
        client.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col}},
                                "text": ch}]})
        text += ch
        line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
        rid = client.request("textDocument/inlineCompletion", inline_params(uri, line, col))
        sent[rid] = (time.monotonic(), m)
        if now >= next_file_change:  # a live change on disk: rewrite a real file and save it
            target = files[1 + changes % max(1, len(files) - 1)] if len(files) > 1 else files[0]
            target.write_text(target.read_text() + f"\n\ndef soak_change_{changes}(x):\n    return x + {changes}\n")
            client.notify("textDocument/didSave", {"textDocument": {"uri": target.as_uri()}})
            changes += 1
            next_file_change = now + 5
        if len(rss_samples) < int((now - start) % 60 // 5) + 1:
            rss_samples.append(rss_bytes(client.pid))
        logs = client.log_lines()
        for message, note in zip(logs[seen_logs:], client.notifications[seen_logs:]):
            if note.get("params", {}).get("type") == 1:  # MessageType.Error
                errors.append(message)
        seen_logs = len(logs)
        # typing at ``rate``; at a line end the user pauses (the completion gets time to finish)
        due += tick + (pause_s if ch == "\n" else 0.0)
        time.sleep(max(0.0, due - time.monotonic()))
    client.wait(lambda: all(r in client.responses for r in sent), 60, "the last answers")
    per_minute.append(_minute(minute, client, sent, rss_samples))
    for rid, response in client.responses.items():
        if rid in sent and "error" in response and response["error"].get("code") != -32800:
            errors.append(json.dumps(response["error"]))
    full = [p for p in per_minute if p["requests"]]
    first, last = full[0], full[-1]
    growth = (last["rss_mb_max"] - first["rss_mb_max"]) / first["rss_mb_max"] if first["rss_mb_max"] else None
    return {"minutes": minutes, "buffers_typed": typed, "lines_per_buffer": lines_per_buffer, "requests": len(sent), "mean_rate_per_s": round(len(sent) / (minutes * 60), 2), "edits": pos, "file_changes": changes,
            "errors": errors[:50], "error_count": len(errors), "per_minute": per_minute,
            "rss_growth_first_to_last_minute": round(growth, 4) if growth is not None else None,
            "daemon_alive": client.proc.poll() is None}


def _minute(minute: int, client: RawClient, sent: dict, rss_samples: list[int]) -> dict[str, Any]:
    lat, nonempty = [], []
    for rid, (t, m) in sent.items():
        if m != minute or rid not in client.responses:
            continue
        response = client.responses[rid]
        ms = (response.get("_received", t) - t) * 1000
        lat.append(ms)
        if (response.get("result") or {}).get("items"):
            nonempty.append(ms)
    rss = [r / 2**20 for r in rss_samples if r]
    return {"minute": minute + 1, "requests": sum(1 for _, m in sent.values() if m == minute),
            "answered": len(lat), "with_items": len(nonempty),
            "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95), "p99_ms": percentile(lat, 0.99),
            "items_p50_ms": percentile(nonempty, 0.5), "items_p95_ms": percentile(nonempty, 0.95),
            "rss_mb_max": round(max(rss), 1) if rss else 0.0,
            "rss_mb_mean": round(statistics.fmean(rss), 1) if rss else 0.0}


def print_table(record: dict[str, Any]) -> None:
    print(f"typing soak: {record['minutes']} min at {record['rate_per_s']}/s, {record['requests']} requests, "
          f"(typing at {record['rate_per_s']}/s, {record['pause_at_line_end_s']} s pause at line ends: "
          f"{record['mean_rate_per_s']}/s on average), {record['file_changes']} file changes, errors {record['error_count']}, "
          f"RSS growth first->last minute {100 * (record['rss_growth_first_to_last_minute'] or 0):+.1f} %")
    print("| minute | requests | answered | with items | p50 ms | p95 ms | p99 ms | items p50 | items p95 | RSS max MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in record["per_minute"]:
        print(f"| {m['minute']} | {m['requests']} | {m['answered']} | {m['with_items']} | {m['p50_ms']} | {m['p95_ms']} "
              f"| {m['p99_ms']} | {m['items_p50_ms']} | {m['items_p95_ms']} | {m['rss_mb_max']} |")


def main(args) -> int:
    record = run_soak(Path(args.workspace).resolve(), args.minutes, args.rate, args.model, Path(args.out),
                      args.debounce_ms, args.max_new_tokens, args.pause_s)
    print_table(record)
    ok = (record["error_count"] == 0 and record["daemon_alive"] and record["exit_code"] == 0
          and (record["rss_growth_first_to_last_minute"] or 0) <= 0.10)
    return 0 if ok else 1
