"""``rest-lsp bench quality``: how good the completions are at cursor positions in held-out files.

``bench repo`` measures speed; this measures what the user sees.  Each repository is copied
without some held-out Python files (``workloads.split_repository`` / ``workloads.copy_without``: the
user's tree is never touched) and a ``CompletionService`` is started on the copy (its index is
built in a temporary directory).  At cursor positions in each held-out file a completion is
asked through ``CompletionService.complete``: the server's prompt (repository header with the
file's path in the copy, fill-in-the-middle prefix and suffix, cut to the prompt budget), token
healing, stop rules and decoding, as an editor gets it.

``--context on,off`` (the default) completes every position twice, with the prompt's context
block (``server.context = "auto"``: lines of the repository's other files, indexed as the
workspace, and of other open buffers) and without it, in alternating order; the held-out file
itself is never indexed and, as the document being completed, never quoted.  The summary has a
row per repository and setting and the ratio with/without of exact match and edit similarity.

Suggested run (two repositories we did not write, installed as packages)::

    rest-lsp bench quality --workspace .venv/lib/python3.11/site-packages/pygls \\
        --workspace .venv/lib/python3.11/site-packages/click --context on,off --out bench-out/quality

The cursor positions, the text to predict and the metrics are ``cursor_scores``'s.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from rest_lsp.bench.context_settings import context_tokens_of, order_at, parse_settings, ratio, server_value, with_context
from rest_lsp.bench.cursor_scores import document_at, score, select_positions
from rest_lsp.bench.quantiles import nearest_rank
from rest_lsp.bench.record import run_header

# ----- summaries -------------------------------------------------------------------------------
def _rates(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    return {"positions": n,
            "exact_match": sum(r["exact_match"] for r in records) / n if n else 0.0,
            "edit_similarity": statistics.fmean(r["edit_similarity"] for r in records) if n else 0.0}


def summarize(records: Sequence[dict[str, Any]], name: str, context: str | None = None) -> dict[str, Any]:
    """The figures of one repository's (or all) positions; ``records`` as ``quality.json``'s;
    ``context``: the setting they ran with ("on" / "off"; None: not compared)."""
    n = len(records)
    latencies = [r["latency_s"] for r in records]
    out = {"repository": name, **({"context": context} if context else {}), **_rates(records),
           "empty": sum(r["empty"] for r in records),
           "empty_rate": sum(r["empty"] for r in records) / n if n else 0.0,
           "starts_new_file": sum(r["starts_new_file"] for r in records),
           "repeats_prefix": sum(r["repeats_prefix"] for r in records),
           "errors": sum(bool(r.get("error")) for r in records),
           "latency_p50_s": nearest_rank(latencies, 0.5), "latency_p90_s": nearest_rank(latencies, 0.9)}
    out["mid_line"] = _rates([r for r in records if r["kind"] == "mid"])
    out["line_end"] = _rates([r for r in records if r["kind"] != "mid"])
    blocks = [r["context_tokens"] for r in records if r.get("context_tokens")]
    out["with_block"] = len(blocks)  # positions whose prompt held a context block
    out["context_tokens_p50"] = nearest_rank(blocks, 0.5) if blocks else 0
    return out


def summaries(records: Sequence[dict[str, Any]], names: Sequence[str], settings: Sequence[str]) -> list[dict[str, Any]]:
    """A row per repository and context setting (and over all repositories when several)."""
    groups = [*names, "all"] if len(names) > 1 else list(names)
    rows = []
    for name in groups:
        mine = [r for r in records if name == "all" or r["repository"] == name]
        for setting in settings:
            rows.append(summarize([r for r in mine if r.get("context") == setting], name, setting))
    return rows


def context_ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per repository, the figures with the context block over those without (rows of both)."""
    by = {(r["repository"], r.get("context")): r for r in rows}
    out = []
    for name in dict.fromkeys(r["repository"] for r in rows):
        off = by.get((name, "off"))
        for setting in with_context(list(dict.fromkeys(r.get("context") for r in rows if r.get("context")))):
            on = by.get((name, setting))
            if on is None or off is None:
                continue
            out.append(_ratio_row(name, setting, on, off))
    return out


def _ratio_row(name: str, setting: str, on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """One repository's figures with a block (``setting``) over those without."""
    return {"repository": name, "context": setting, "positions": on["positions"],
            "exact_match_on": on["exact_match"], "exact_match_off": off["exact_match"],
            "exact_match_ratio": ratio(on["exact_match"], off["exact_match"]),
            "edit_similarity_on": on["edit_similarity"], "edit_similarity_off": off["edit_similarity"],
            "edit_similarity_ratio": ratio(on["edit_similarity"], off["edit_similarity"]),
            "latency_p50_ratio": ratio(on["latency_p50_s"], off["latency_p50_s"])}


def ratio_table(ratios: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the with/without-context ratios."""
    lines = ["| repository | context | positions | EM with / without context | EM ratio | ES with / without | "
             "ES ratio | p50 latency ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in ratios:
        lines.append(f"| {r['repository']} | {r.get('context', 'on')} | {r['positions']} | "
                     f"{r['exact_match_on']:.1%} / {r['exact_match_off']:.1%} | "
                     f"{_x(r['exact_match_ratio'])} | {r['edit_similarity_on']:.3f} / {r['edit_similarity_off']:.3f} | "
                     f"{_x(r['edit_similarity_ratio'])} | {_x(r['latency_p50_ratio'])} |")
    return "\n".join(lines)


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the summaries."""
    lines = ["| repository | positions | empty | exact match | edit sim. | mid-line EM / ES (n) | "
             "line-end EM / ES (n) | starts new file | repeats prefix | p50 | p90 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, e = r["mid_line"], r["line_end"]
        name = r["repository"] + (f" (context {r['context']})" if r.get("context") else "")
        lines.append(f"| {name} | {r['positions']} | {r['empty_rate']:.1%} ({r['empty']}) | "
                     f"{r['exact_match']:.1%} | {r['edit_similarity']:.3f} | "
                     f"{m['exact_match']:.1%} / {m['edit_similarity']:.3f} ({m['positions']}) | "
                     f"{e['exact_match']:.1%} / {e['edit_similarity']:.3f} ({e['positions']}) | "
                     f"{r['starts_new_file']} | {r['repeats_prefix']} | "
                     f"{r['latency_p50_s']:.2f} s | {r['latency_p90_s']:.2f} s |")
    return "\n".join(lines)


def similarity_plot(records: Sequence[dict[str, Any]], out: Path, title: str) -> Path:
    """The distribution of edit similarity per repository (a histogram, exact matches at 1)."""
    from rest_lsp.bench.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    names = list(dict.fromkeys(_label(r) for r in records))
    bins = [i / 10 for i in range(11)]
    for name in names:
        values = [r["edit_similarity"] for r in records if _label(r) == name]
        ax.hist(values, bins=bins, histtype="step", linewidth=1.8,
                label=f"{name} (n={len(values)}, mean {statistics.fmean(values):.2f})")
    ax.set_xlabel("edit similarity of the completion's line to the held-out text")
    ax.set_ylabel("cursor positions")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if names:
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _label(record: dict[str, Any]) -> str:
    """A record's repository, with its context setting when the run compared them."""
    return record["repository"] + (f" (context {record['context']})" if record.get("context") else "")


# ----- the run ---------------------------------------------------------------------------------
def start_service(args: Any, index_dir: Path) -> Any:
    """A completion service on the chosen model (no workspace yet), its index under ``index_dir``."""
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config, ServerConfig
    from rest_lsp.errors import ConfigError

    config, problems = Config.from_dict({
        "model": {"name": args.model, "threads": args.threads},
        "decoding": {"max_new_tokens": args.max_new_tokens, "mode": args.mode},
        "retrieval": {"history_warmup": 0},
        "index": {"index_dir": str(index_dir)},
        "server": {"context_tokens": getattr(args, "context_tokens", ServerConfig.context_tokens)},
    })
    if problems:
        raise ConfigError("invalid options: " + "; ".join(problems), problems=problems)
    return CompletionService(config, folders=[], log=lambda m: print(m, file=sys.stderr))


def _progress(done: int, total: int, message: str) -> None:
    if total:
        print(f"\r{message}: {done}/{total}", end="", file=sys.stderr, flush=True)


def run_repository(service: Any, root: Path, name: str, work: Path, args: Any) -> tuple[list[dict[str, Any]], dict]:
    """Every position of one repository's held-out files: (records, facts of the repository)."""
    from rest_lsp.bench import workloads

    rel_files, held = workloads.split_repository(root, service.config, args.held_out, args.seed)
    copy = work / name / root.name  # the copy's folder name is the repository header's name
    workloads.copy_without(root, copy, set(held), rel_files)
    service.config.index.index_dir = str(work / name / "index")
    service.folders = [str(copy.resolve())]
    if service.engine is not None:
        service.engine.reset()
    started = time.perf_counter()
    service.start(_progress)
    index_s = time.perf_counter() - started
    print(file=sys.stderr)
    print(f"{name}: {len(rel_files) - len(held)} files indexed ({index_s:.1f} s with the model's load); "
          f"held out: {', '.join(held)}", file=sys.stderr)
    settings = parse_settings(getattr(args, "context", "on"))
    default_tokens = service.config.server.context_tokens
    records = []
    for rel in held:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        uri = (copy / rel).resolve().as_uri()
        rng = random.Random(f"{args.seed}:{rel}")
        for i, pos in enumerate(select_positions(text, args.positions_per_file, rng)):
            document = document_at(text, pos.offset)
            service.update_buffer(uri, document)
            for setting in order_at(settings, i):
                records.append(complete_at(service, name, rel, text, document, uri, pos, setting, default_tokens))
        service.drop_buffer(uri)
    return records, {"workspace": str(root), "held_out": held, "indexed_files": len(rel_files) - len(held),
                     "start_seconds": round(index_s, 1)}


def complete_at(service: Any, name: str, rel: str, text: str, document: str, uri: str, pos: Any,
                setting: str, default_tokens: int) -> dict[str, Any]:
    """One completion at a position with one context setting: its record (and a line on stderr)."""
    from rest_lsp.errors import ReportedError

    service.config.server.context = server_value(setting)
    service.config.server.context_tokens = context_tokens_of(setting, default_tokens)
    service.context_session.reset()  # each position is a session of its own, whatever came before
    error, items, outcome = "", [], None
    begun = time.perf_counter()
    try:
        outcome = service.complete(document, pos.offset, uri=uri)
        items = list(outcome.items)
    except ReportedError as exc:  # counted as empty, kept in the record
        error = f"{type(exc).__name__}: {exc}"
    latency = time.perf_counter() - begun
    s = score(text, pos.offset, pos.kind, items)
    line = text.count("\n", 0, pos.offset)
    last = (service.last or {}) if outcome else {}
    files = list(last.get("context_files") or [])
    if rel in files:  # the held-out file is not indexed and is the document itself: never quoted
        raise ReportedError(f"the held-out file {rel} entered its own context block ({files}): the figures "
                           "would be void", file=rel, files=files)
    record = {"repository": name, "file": rel, "line": line + 1, "context": setting,
              "column": pos.offset - (text.rfind("\n", 0, pos.offset) + 1), "kind": pos.kind,
              "completion": items[0] if items else "", **asdict(s), "latency_s": round(latency, 4),
              "prompt_tokens": outcome.prompt_tokens if outcome else 0,
              "context_tokens": last.get("context_tokens", 0), "context_files": files,
              "new_tokens": (outcome.stats or {}).get("new_tokens") if outcome else 0, "error": error}
    flags = "".join(f for f, on in (("E", s.empty), ("=", s.exact_match), ("N", s.starts_new_file),
                                     ("R", s.repeats_prefix)) if on)
    print(f"  {rel}:{record['line']}:{record['column']} {pos.kind:>3} ctx {setting:>6} sim {s.edit_similarity:.2f} "
          f"{flags:<3} {latency:5.2f} s  {s.shown_line.strip()[:40]!r} vs {s.expected.strip()[:40]!r}",
          file=sys.stderr)
    return record


def main(args: Any) -> int:
    """The ``rest-lsp bench quality`` command: run, print the table, write JSON, table and plot."""
    from rest_lsp.config.schema import ServerConfig
    from rest_lsp.engine.model import describe
    from rest_lsp.errors import ConfigError

    parse_settings(getattr(args, "context", "on"))  # a bad --context fails now, not after the first repository
    roots = [Path(w).resolve() for w in args.workspace or []]
    if not roots:
        raise ConfigError("bench quality needs at least one --workspace")
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--workspace {root} is not a directory", workspace=str(root))
    names = []
    for root in roots:  # unique, readable names
        name = root.name
        while name in names:
            name += "_"
        names.append(name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    records: list[dict[str, Any]] = []
    facts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rest-lsp-quality-") as tmp:
        work = Path(tmp)
        service = start_service(args, work / "index")
        try:
            for root, name in zip(roots, names):
                got, facts[name] = run_repository(service, root, name, work, args)
                records += got
            loaded = service.loaded
            model = describe(loaded)
        finally:
            service.close()
    settings = parse_settings(getattr(args, "context", "on"))
    rows = summaries(records, names, settings)
    ratios = context_ratios(rows)
    text = table(rows) + (("\n\n" + ratio_table(ratios)) if ratios else "")
    print(text)
    record = {
        **run_header(started, loaded.device),
        "model": model,
        "mode": args.mode,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "context": settings,
        "context_tokens": getattr(args, "context_tokens", ServerConfig.context_tokens),  # "on"; "on:N" says its own
        "repositories": facts,
        "summary": rows,
        "context_ratio": ratios,
        "positions": records,
    }
    (out / "quality.json").write_text(json.dumps(record, indent=2, default=str))
    (out / "quality.md").write_text(
        f"`{record['command']}` ({record['date']}, {loaded.resolved.name}, mode {args.mode}, up to {args.max_new_tokens} "
        f"new tokens, {record['machine']['torch_threads']} threads)\n\n{text}\n\n"
        "EM: exact match of the completion's line with the held-out text; ES: mean edit similarity "
        "(difflib ratio); line-end: eol and bol positions; definitions in rest_lsp/bench/cursor_scores.py; "
        "context on/off: the prompt's context block (server.context) on or off, same positions.\n")
    png = similarity_plot(records, out / "edit_similarity.png",
                          f"completions at held-out cursor positions, {loaded.resolved.name} ({args.mode})")
    print(f"written: {out / 'quality.json'}, {out / 'quality.md'}, {png}")
    return 0
