"""The history warm-up: the model's own completions at cursor positions of the workspace.

DReSD and SuffixDecoding both find that a datastore of the model's own outputs drafts its next
outputs far better than human text does, and on the repository workload that holds for the
embedded model too (`rest-lsp bench drafters`, BENCHMARKS.md): an exact-match source of the
model's completions elsewhere in the workspace accepts more than the workspace's own text.  So
once the index is ready the daemon completes ``retrieval.history_warmup`` cursor positions spread
over the workspace's files, in the background and only while no request has come for
``IDLE_S`` seconds, and adds each output to the history source (the oldest outputs, so the
user's own completions evict them first).  A request preempts a warm-up completion at its next
step; that completion is dropped and its position retried.  The count done is persisted with
the history, so a restart resumes and a finished warm-up never runs again for that model.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

#: seconds without a completion request before a warm-up completion may start
IDLE_S = 2.0
#: lines at the top of a file where no warm-up cursor is put (imports, headers)
MIN_LINE = 5


def cursor_offsets(text: str, min_line: int = MIN_LINE) -> list[int]:
    """Where a completion may be asked in ``text``: after the indentation of each non-blank line
    from line ``min_line`` on (0-based), as an editor's cursor sits when a line is begun."""
    offsets, pos = [], 0
    for i, line in enumerate(text.splitlines(keepends=True)):
        stripped = line.lstrip(" \t")
        if i >= min_line and stripped.strip():
            offsets.append(pos + len(line) - len(stripped))
        pos += len(line)
    return offsets


def warmup_positions(paths: Sequence[str], read: Callable[[str], str | None], count: int, seed: int = 0,
                     min_line: int = MIN_LINE) -> list[tuple[str, int]]:
    """Up to ``count`` (path, offset) cursor positions over the files ``paths``: one per file in
    a seeded order, round after round, so that a large workspace is sampled widely and a small
    one densely.  ``read(path)`` gives a file's text (None: skip it); files are read only until
    the first round has ``count`` positions, so a huge workspace is never held in memory.  The
    same files, count and seed give the same positions, whatever the order of ``paths``, and a
    larger count extends the same sequence."""
    order = sorted(paths)
    random.Random(seed).shuffle(order)
    pools: list[tuple[str, list[int]]] = []
    for path in order:
        if len(pools) >= count:
            break
        offsets = cursor_offsets(read(path) or "", min_line)
        if offsets:
            random.Random(f"{seed}:{path}").shuffle(offsets)  # per file: independent of the order
            pools.append((path, offsets))
    picked: list[tuple[str, int]] = []
    depth = 0
    while len(picked) < count and any(depth < len(offsets) for _, offsets in pools):
        for path, offsets in pools:
            if depth < len(offsets) and len(picked) < count:
                picked.append((path, offsets[depth]))
        depth += 1
    return picked


@dataclass
class WarmupResult:
    """What one warm-up run did."""

    #: positions completed in this run
    completed: int = 0
    #: completions preempted by a request (their positions were retried)
    preempted: int = 0
    tokens: int = 0
    #: the run stopped before the last position (the workspace closed)
    stopped: bool = False


def warm_history(positions: Sequence[tuple[str, int]], prompt_at: Callable[[str, int], list[int] | None],
                 decode: Callable[[list[int]], list[int] | None], add: Callable[[list[int]], None],
                 wait_idle: Callable[[], bool] = lambda: True,
                 progress: Callable[[int, int], None] | None = None) -> WarmupResult:
    """Complete each position and ``add`` the output to the history.

    ``prompt_at(path, offset)``: the prompt ids there (None: skip the position, e.g. the file is
    gone); ``decode(ids)``: the output, or None when a request preempted it (the position is
    retried after the next idle wait); ``wait_idle()``: blocks until the daemon is idle, False
    when the warm-up must stop; ``progress(done, total)`` after each position.
    """
    result = WarmupResult()
    i = 0
    while i < len(positions):
        if not wait_idle():
            result.stopped = True
            break
        ids = prompt_at(*positions[i])
        out = decode(ids) if ids else []
        if out is None:
            result.preempted += 1
            continue
        if out:
            add(out)
            result.tokens += len(out)
        result.completed += 1
        i += 1
        if progress is not None:
            progress(i, len(positions))
    return result


def workspace_files(workspace: str, config: Any) -> list[str]:
    """The relative paths of every file the sparse index takes (its skip rules), not read."""
    from indexer.building import sources

    root = str(Path(workspace).resolve())
    return [sources.relpath(f.path, root) for f in sources.walk(root, sources.Rules.from_config(config.index))]


def read_text(root: str | Path, rel: str) -> str | None:
    """A workspace file's text, or None when it cannot be read (gone since the walk)."""
    try:
        return (Path(root) / rel).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def wanted(service: Any) -> bool:
    """Whether the service's workspace history still has warm-up positions to complete (never in
    greedy mode, which drafts nothing)."""
    d = service.drafting
    return (d is not None and d.folder is not None and d.history is not None
            and service.config.decoding.mode != "greedy" and d.warmed < service.config.retrieval.history_warmup)


def run_warmup(service: Any, progress: Callable[[int, int, str], None]) -> str:
    """Warm the history of ``service``'s workspace (on a background thread); a status line, or
    "" when no position was left.  ``progress(done, total, message)`` after each position (total:
    ``retrieval.history_warmup``, or fewer where the workspace has fewer positions).  Saved every
    ``SAVE_EVERY`` positions and at the end."""
    from rest_lsp.drafting.session import SAVE_EVERY

    d, config, engine = service.drafting, service.config, service.engine
    target = config.retrieval.history_warmup
    root = Path(d.folder).resolve()
    base = d.warmed
    positions = warmup_positions(workspace_files(d.folder, config), lambda rel: read_text(root, rel), target)[base:]
    if not positions:
        return ""

    def prompt_at(path: str, offset: int) -> list[int] | None:
        text = read_text(root, path)  # read again: the file may have changed since
        if text is None or offset > len(text):
            return None
        # as a request there, with its own context block: the user's session keeps its block
        return service.prompt_for(text, offset, (Path(d.folder).absolute() / path).as_uri(), session=False)[0].ids

    def decode(ids: list[int]) -> list[int] | None:
        seen = service.figures.requests
        gen = engine.complete(ids, config.decoding.max_new_tokens, mode=config.decoding.mode,
                              should_stop=lambda: d.closing.is_set() or service.figures.requests != seen)
        return None if gen.stats.stop_reason == "cancelled" else list(gen.tokens)

    def add(tokens: list[int]) -> None:
        d.history.add(tokens)

    def wait_idle() -> bool:
        while not d.closing.is_set():
            quiet = time.monotonic() - service.last_request_at
            if quiet >= IDLE_S:
                return True
            d.closing.wait(min(IDLE_S, IDLE_S - quiet))  # re-checked: requests move the mark
        return False

    def step(done: int, total: int) -> None:
        d.warmed = base + done
        progress(d.warmed, base + total, f"warming the history: {d.warmed}/{base + total} completions")
        if done % SAVE_EVERY == 0:
            d.save()

    t0 = time.perf_counter()
    result = warm_history(positions, prompt_at, decode, add, wait_idle, step)
    d.save()
    state = "stopped (workspace closed)" if result.stopped else "warmed"
    return (f"rest-lsp: history {state}: {d.warmed}/{base + len(positions)} completions, {result.tokens} tokens in "
            f"{time.perf_counter() - t0:.0f} s ({result.preempted} preempted by requests)")
