"""``rest-lsp bench quality``: how good the completions are at cursor positions in held-out files.

``bench repo`` measures speed; this measures what the user sees.  Each repository is copied
without some held-out Python files (``repo.split_repository`` / ``repo.copy_without``: the
user's tree is never touched) and a ``CompletionService`` is started on the copy (its index is
built in a temporary directory).  At cursor positions in each held-out file a completion is
asked through ``CompletionService.complete``: the server's prompt (repository header with the
file's path in the copy, fill-in-the-middle prefix and suffix, cut to the prompt budget), token
healing, stop rules and decoding, as an editor gets it.

Suggested run (two repositories we did not write, installed as packages)::

    rest-lsp bench quality --workspace .venv/lib/python3.11/site-packages/pygls \\
        --workspace .venv/lib/python3.11/site-packages/click --out bench-out/quality

Cursor positions (``select_positions``, deterministic by ``--seed`` and the file's path), on
lines of at least ``MIN_LINE_CHARS`` non-blank characters, half of them of each family:

* ``mid``: inside a line, after at least one non-space character and before its last one;
* ``eol``: at the end of a line (a following non-blank line exists): the next line is to come;
* ``bol``: after the indentation of a line, as after Enter and the editor's auto-indent.

The text to predict (``expected_span``) is what the held-out file holds from the cursor to the
end of the cursor's line when that is not blank (``mid``, ``bol``); when it is blank (``eol``),
the next non-blank line, with its indentation (blank lines between are skipped).  The document
completed is the whole file *without* that text (``document_at``): prefix and suffix around a
missing line remainder, as in an editor where the line is being written; with the text left in,
the suffix would begin with the answer and the right completion would be nothing.  The document
is also the file's open buffer (``update_buffer``: the live tier), as in an editor.

Metrics per position (pure functions, see ``score``): ``first_line`` of the completion (the
text up to its first newline when the expected text is on the cursor's line, else its first
non-blank line with its indentation), ``exact_match`` (that line and the expected text equal,
trailing whitespace stripped), ``edit_similarity`` (``difflib.SequenceMatcher(None, a, b,
autojunk=False).ratio()`` of the same two strings: 2 * matching characters / total characters;
0 for an empty completion), ``empty`` (no completion item), ``starts_new_file`` and
``repeats_prefix`` (the two heuristics, documented at their functions) and the latency of the
``complete`` call (the engine's KV cache is kept between requests, as in a session).
"""

from __future__ import annotations

import difflib
import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from rest_lsp.benchmarks.quantiles import nearest_rank
from rest_lsp.benchmarks.record import run_header

#: lines shorter than this (stripped) get no cursor position
MIN_LINE_CHARS = 4
#: the cursor position families; "mid" is mid-line, "eol" and "bol" are line-end positions
KINDS = ("mid", "eol", "bol")
#: text that only the model's prompt format (or a new file) has: never in a completion
FILE_MARKERS = ("<|file_sep|>", "<|repo_name|>", "<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>",
                "<|fim_middle|>", "<|fim_pad|>", "<file_sep>", "<repo_name>", "<filename>")
_CODING = re.compile(r"#\s*(-\*-\s*)?(en)?coding[:=]")
_IMPORT = re.compile(r"(import\s+\w|from\s+[\w.]+\s+import\b)")
_TRAILING_WORD = re.compile(r"\w+$")


@dataclass(frozen=True)
class Position:
    """A cursor offset in a file and its family (one of ``KINDS``)."""

    offset: int
    kind: str


# ----- positions and the text to predict ----------------------------------------------------
def _lines(text: str) -> list[tuple[int, str]]:
    """(start offset, line without its newline) of every line of ``text``."""
    out, start = [], 0
    for line in text.split("\n"):
        out.append((start, line))
        start += len(line) + 1
    return out


def select_positions(text: str, count: int, rng: random.Random, min_chars: int = MIN_LINE_CHARS) -> list[Position]:
    """``count`` cursor positions (fewer when the file has too few lines), sorted by offset:
    ``ceil(count / 2)`` mid-line, the rest at line ends (``eol`` or ``bol``, by ``rng``).

    Every position has a non-empty ``expected_span``; lines of under ``min_chars`` stripped
    characters are skipped; a line gets at most one mid-line and one line-end position.
    """
    lines = _lines(text)
    eligible = [i for i, (_, line) in enumerate(lines) if len(line.strip()) >= min_chars]
    later_text = [False] * len(lines)  # whether a non-blank line follows line i
    seen = False
    for i in range(len(lines) - 1, -1, -1):
        later_text[i] = seen
        seen = seen or bool(lines[i][1].strip())
    n_mid = (count + 1) // 2
    mids = sorted(rng.sample(eligible, min(n_mid, len(eligible))))
    ends = sorted(rng.sample(eligible, min(count - len(mids), len(eligible))))
    out: set[Position] = set()
    for i in mids:
        start, line = lines[i]
        indent = len(line) - len(line.lstrip())
        columns = range(indent + 1, len(line.rstrip()))  # a non-space before, one after
        if columns:
            out.add(Position(start + rng.choice(columns), "mid"))
    for i in ends:
        start, line = lines[i]
        kind = rng.choice(("eol", "bol"))
        if kind == "eol" and not later_text[i]:
            kind = "bol"
        if kind == "bol" and i == 0:
            kind = "eol" if later_text[i] else ""
        if kind == "eol":
            out.add(Position(start + len(line), "eol"))
        elif kind == "bol":
            out.add(Position(start + len(line) - len(line.lstrip()), "bol"))
    return sorted(out, key=lambda p: p.offset)


def expected_span(text: str, offset: int) -> tuple[str, int, bool]:
    """(expected text, end offset of it in ``text``, whether it is on the cursor's line).

    The rest of the cursor's line when it is not blank; else the next non-blank line with its
    indentation (end: that line's end); ``("", len(text), False)`` when no such line follows.
    """
    eol = text.find("\n", offset)
    eol = len(text) if eol == -1 else eol
    rest = text[offset:eol]
    if rest.strip():
        return rest, eol, True
    pos = eol
    while pos < len(text):
        start = pos + 1
        end = text.find("\n", start)
        end = len(text) if end == -1 else end
        if text[start:end].strip():
            return text[start:end], end, False
        pos = end
    return "", len(text), False


def expected_text(text: str, offset: int) -> str:
    """The text to predict at ``offset`` (see ``expected_span``)."""
    return expected_span(text, offset)[0]


def document_at(text: str, offset: int) -> str:
    """The document completed at ``offset``: ``text`` without the expected span."""
    _, end, _ = expected_span(text, offset)
    return text[:offset] + text[end:]


# ----- metrics ---------------------------------------------------------------------------------
def first_line(completion: str, same_line: bool = True) -> str:
    """The completion's line compared with the expected text: up to its first newline when the
    expected text is on the cursor's line, else its first non-blank line (indentation kept)."""
    if same_line:
        return completion.split("\n", 1)[0]
    return next((line for line in completion.split("\n") if line.strip()), "")


def exact_match(line: str, expected: str) -> bool:
    """``line`` is ``expected`` (trailing whitespace stripped from both; a blank never matches)."""
    return bool(expected.strip()) and line.rstrip() == expected.rstrip()


def edit_similarity(line: str, expected: str) -> float:
    """``difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()`` of the two, trailing
    whitespace stripped: 2 * matched characters / characters of both (1.0: equal)."""
    a, b = line.rstrip(), expected.rstrip()
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _column_of_first_line(completion: str, prefix: str) -> tuple[str, bool]:
    """(the completion's first non-blank line, whether it starts at column 0 of the document)."""
    lines = completion.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            if i > 0:
                return line, not line[:1].isspace()
            line_before = prefix[prefix.rfind("\n") + 1:]
            return line, line_before == "" and not line[:1].isspace()
    return "", False


def starts_new_file(completion: str, prefix: str, kind: str) -> bool:
    """Whether the completion begins what begins a file (a small heuristic), i.e. any of:

    * a prompt-format marker (``FILE_MARKERS``: ``<|file_sep|>``, ``<|repo_name|>``, ...)
      anywhere in it;
    * its text (leading whitespace stripped) starts with a shebang ``#!`` or a coding line
      (``# -*- coding: ...``, ``# coding=...``);
    * its first non-blank line starts at column 0 with a docstring quote (``\"\"\"``, ``'''``)
      while the prefix is not blank (the cursor is not at the file's start);
    * the cursor is mid-line (``kind == "mid"``), the completion ends that line without writing
      on it, and its first non-blank line is at column 0 and an ``import``/``from .. import``.
    """
    if any(marker in completion for marker in FILE_MARKERS):
        return True
    head = completion.lstrip()
    if head.startswith("#!") or _CODING.match(head.split("\n", 1)[0]):
        return True
    line, column0 = _column_of_first_line(completion, prefix)
    if not column0:
        return False
    if line.startswith(('"""', "'''")) and prefix.strip():
        return True
    ends_line = not completion.split("\n", 1)[0].strip()
    return kind == "mid" and ends_line and bool(_IMPORT.match(line))


def repeats_prefix(completion: str, prefix: str) -> bool:
    """Whether the completion begins by writing again what is before the cursor (a small
    heuristic).  With ``before`` the cursor line's text before the cursor, stripped (nothing to
    repeat when it is blank), any of:

    * the completion begins on a new line (its text on the cursor's line is blank) and its first
      non-blank line, stripped, equals ``before`` (the same line written again under itself);
    * the completion goes on on the cursor's line (writes there), ``before`` has at least 3
      characters and the completion, leading spaces and tabs stripped, starts
      with it (``x = foo(`` completed by ``x = foo(a)``);
    * the word the cursor ends (``\\w+`` just before it) has at least 3 characters and the
      completion starts with it, no space between (``    ret`` completed by ``return x``).
    """
    line_before = prefix[prefix.rfind("\n") + 1:]
    before = line_before.strip()
    if not before or not completion.strip():
        return False
    same_line = completion.split("\n", 1)[0]
    if not same_line.strip():
        first = next((line for line in completion.split("\n") if line.strip()), "")
        if first.strip() == before:
            return True
    elif len(before) >= 3 and completion.lstrip(" \t").startswith(before):
        return True
    word = _TRAILING_WORD.search(line_before)
    return word is not None and len(word.group()) >= 3 and completion.startswith(word.group())


@dataclass
class Score:
    """The metrics of one completion at one position."""

    expected: str
    shown_line: str
    empty: bool
    exact_match: bool
    edit_similarity: float
    starts_new_file: bool
    repeats_prefix: bool


def score(text: str, offset: int, kind: str, items: Sequence[str]) -> Score:
    """Every metric of the completion ``items`` (the service's items; the first is shown) at
    ``offset`` of the held-out file ``text``."""
    expected, _, same_line = expected_span(text, offset)
    completion = items[0] if items else ""
    line = first_line(completion, same_line)
    prefix = text[:offset]
    return Score(expected=expected, shown_line=line, empty=not items,
                 exact_match=exact_match(line, expected), edit_similarity=round(edit_similarity(line, expected), 4),
                 starts_new_file=bool(items) and starts_new_file(completion, prefix, kind),
                 repeats_prefix=bool(items) and repeats_prefix(completion, prefix))


# ----- summaries -------------------------------------------------------------------------------
def _rates(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    return {"positions": n,
            "exact_match": sum(r["exact_match"] for r in records) / n if n else 0.0,
            "edit_similarity": statistics.fmean(r["edit_similarity"] for r in records) if n else 0.0}


def summarize(records: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    """The figures of one repository's (or all) positions; ``records`` as ``quality.json``'s."""
    n = len(records)
    latencies = [r["latency_s"] for r in records]
    out = {"repository": name, **_rates(records),
           "empty": sum(r["empty"] for r in records),
           "empty_rate": sum(r["empty"] for r in records) / n if n else 0.0,
           "starts_new_file": sum(r["starts_new_file"] for r in records),
           "repeats_prefix": sum(r["repeats_prefix"] for r in records),
           "errors": sum(bool(r.get("error")) for r in records),
           "latency_p50_s": nearest_rank(latencies, 0.5), "latency_p90_s": nearest_rank(latencies, 0.9)}
    out["mid_line"] = _rates([r for r in records if r["kind"] == "mid"])
    out["line_end"] = _rates([r for r in records if r["kind"] != "mid"])
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the summaries."""
    lines = ["| repository | positions | empty | exact match | edit sim. | mid-line EM / ES (n) | "
             "line-end EM / ES (n) | starts new file | repeats prefix | p50 | p90 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, e = r["mid_line"], r["line_end"]
        lines.append(f"| {r['repository']} | {r['positions']} | {r['empty_rate']:.1%} ({r['empty']}) | "
                     f"{r['exact_match']:.1%} | {r['edit_similarity']:.3f} | "
                     f"{m['exact_match']:.1%} / {m['edit_similarity']:.3f} ({m['positions']}) | "
                     f"{e['exact_match']:.1%} / {e['edit_similarity']:.3f} ({e['positions']}) | "
                     f"{r['starts_new_file']} | {r['repeats_prefix']} | "
                     f"{r['latency_p50_s']:.2f} s | {r['latency_p90_s']:.2f} s |")
    return "\n".join(lines)


def similarity_plot(records: Sequence[dict[str, Any]], out: Path, title: str) -> Path:
    """The distribution of edit similarity per repository (a histogram, exact matches at 1)."""
    from rest_lsp.benchmarks.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    names = list(dict.fromkeys(r["repository"] for r in records))
    bins = [i / 10 for i in range(11)]
    for name in names:
        values = [r["edit_similarity"] for r in records if r["repository"] == name]
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


# ----- the run ---------------------------------------------------------------------------------
def start_service(args: Any, index_dir: Path) -> Any:
    """A completion service on the chosen model (no workspace yet), its index under ``index_dir``."""
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config import Config
    from rest_lsp.errors import ConfigError

    config, problems = Config.from_dict({
        "model": {"name": args.model, "threads": args.threads},
        "decoding": {"max_new_tokens": args.max_new_tokens, "mode": args.mode},
        "retrieval": {"history_warmup": 0},
        "index": {"index_dir": str(index_dir)},
    })
    if problems:
        raise ConfigError("invalid options: " + "; ".join(problems), problems=problems)
    return CompletionService(config, folders=[], log=lambda m: print(m, file=sys.stderr))


def _progress(done: int, total: int, message: str) -> None:
    if total:
        print(f"\r{message}: {done}/{total}", end="", file=sys.stderr, flush=True)


def run_repository(service: Any, root: Path, name: str, work: Path, args: Any) -> tuple[list[dict[str, Any]], dict]:
    """Every position of one repository's held-out files: (records, facts of the repository)."""
    from rest_lsp.benchmarks import repo
    from rest_lsp.errors import RestLspError

    rel_files, held = repo.split_repository(root, service.config, args.held_out, args.seed)
    copy = work / name / root.name  # the copy's folder name is the repository header's name
    repo.copy_without(root, copy, set(held), rel_files)
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
    records = []
    for rel in held:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        uri = (copy / rel).resolve().as_uri()
        rng = random.Random(f"{args.seed}:{rel}")
        for pos in select_positions(text, args.positions_per_file, rng):
            document = document_at(text, pos.offset)
            service.update_buffer(uri, document)
            error, items, outcome = "", [], None
            begun = time.perf_counter()
            try:
                outcome = service.complete(document, pos.offset, uri=uri)
                items = list(outcome.items)
            except RestLspError as exc:  # counted as empty, kept in the record
                error = f"{type(exc).__name__}: {exc}"
            latency = time.perf_counter() - begun
            s = score(text, pos.offset, pos.kind, items)
            line = text.count("\n", 0, pos.offset)
            record = {"repository": name, "file": rel, "line": line + 1,
                      "column": pos.offset - (text.rfind("\n", 0, pos.offset) + 1), "kind": pos.kind,
                      "completion": items[0] if items else "", **asdict(s), "latency_s": round(latency, 4),
                      "prompt_tokens": outcome.prompt_tokens if outcome else 0,
                      "new_tokens": (outcome.stats or {}).get("new_tokens") if outcome else 0, "error": error}
            records.append(record)
            flags = "".join(f for f, on in (("E", s.empty), ("=", s.exact_match), ("N", s.starts_new_file),
                                             ("R", s.repeats_prefix)) if on)
            print(f"  {rel}:{record['line']}:{record['column']} {pos.kind:>3} sim {s.edit_similarity:.2f} "
                  f"{flags:<3} {latency:5.2f} s  {s.shown_line.strip()[:40]!r} vs {s.expected.strip()[:40]!r}",
                  file=sys.stderr)
        service.drop_buffer(uri)
    return records, {"workspace": str(root), "held_out": held, "indexed_files": len(rel_files) - len(held),
                     "start_seconds": round(index_s, 1)}


def main(args: Any) -> int:
    """The ``rest-lsp bench quality`` command: run, print the table, write JSON, table and plot."""
    from rest_lsp.engine.model import describe
    from rest_lsp.errors import ConfigError

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
    rows = [summarize([r for r in records if r["repository"] == n], n) for n in names]
    if len(names) > 1:
        rows.append(summarize(records, "all"))
    text = table(rows)
    print(text)
    record = {
        **run_header(started, loaded.device),
        "model": model,
        "mode": args.mode,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "repositories": facts,
        "summary": rows,
        "positions": records,
    }
    (out / "quality.json").write_text(json.dumps(record, indent=2, default=str))
    (out / "quality.md").write_text(
        f"`{record['command']}` ({record['date']}, {loaded.resolved.name}, mode {args.mode}, up to {args.max_new_tokens} "
        f"new tokens, {record['machine']['torch_threads']} threads)\n\n{text}\n\n"
        "EM: exact match of the completion's line with the held-out text; ES: mean edit similarity "
        "(difflib ratio); line-end: eol and bol positions; definitions in rest_lsp/benchmarks/quality.py.\n")
    png = similarity_plot(records, out / "edit_similarity.png",
                          f"completions at held-out cursor positions, {loaded.resolved.name} ({args.mode})")
    print(f"written: {out / 'quality.json'}, {out / 'quality.md'}, {png}")
    return 0
