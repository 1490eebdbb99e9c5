"""``rest-lsp bench crash``: kill -9 the daemon at random points of index builds and refreshes.

Every trial starts ``rest-lsp serve --stdio`` on the same cache directory, changes the workspace
first (so the start refreshes the index) and, on even trials, the corpus filters (so the start
builds a new corpus index); once the daemon is ready it keeps rewriting and saving files (delta
refreshes, compactions that write a new base shard and swap the pointer).  At a random moment it
is killed with SIGKILL.  Then every index directory in the cache must open with full checksums
(old or new state, never a mix), and the next trial's start must reach "rest-lsp ready" with no
repair by hand.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rest_lsp.bench.stress.client import RawClient, serve_argv
from rest_lsp.bench.stress.soak import _env, copy_workspace


def check_indexes(cache: Path, tokenizer: Any) -> dict[str, int]:
    """Open every index under ``cache`` with full verification; raises on a bad one."""
    from indexer.storage import indexdir
    from indexer.datastore import Datastore

    counts = {"opened": 0, "absent": 0}
    root = cache / "rest-lsp" / "index"
    for kind in ("workspaces", "corpus"):
        for directory in sorted((root / kind).glob("*")) if (root / kind).is_dir() else []:
            if not (directory / indexdir.POINTER).exists():
                counts["absent"] += 1  # killed before its first pointer: nothing to load yet
                continue
            store = Datastore.open(directory, tokenizer, verify="full")
            problems = store.verify()
            store.close()
            if problems:
                raise AssertionError(f"{directory}: {problems}")
            counts["opened"] += 1
    return counts


def run_trials(workspace: Path, trials: int, seed: int, model: str, first_window: float = 15.0) -> dict[str, Any]:
    """``trials`` killed starts and one last start that must come up; kill times are uniform over
    ``first_window`` seconds until a start has reached ready, then over its time to ready + 4 s."""
    from indexer.tokens import load_tokenizer
    from rest_lsp.engine.model import EMBEDDED_DIR

    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="rest-lsp-crash-"))
    tokenizer = load_tokenizer(model or str(EMBEDDED_DIR))
    results: list[dict[str, Any]] = []
    try:
        ws = copy_workspace(workspace, tmp / "ws")
        corpus = copy_workspace(workspace, tmp / "corpus")
        files = sorted(ws.rglob("*.py"))
        env = _env(tmp / "home")
        cache = tmp / "home" / "cache"
        window = None
        for trial in range(trials + 1):  # the last start is not killed: it must come up
            for i in range(3):  # changes on disk that this start must pick up
                f = files[rng.randrange(len(files))]
                f.write_text(f.read_text() + f"\n# trial {trial} change {i}\n")
            options = {"model": {"name": model}, "decoding": {"max_new_tokens": 8},
                       "index": {"corpus_roots": [str(corpus)], "compact_tokens": 1,
                                 "corpus_shard_tokens": 20_000,
                                 "exclude_globs": [f"*.trial{trial % 2}"]}}  # a new corpus key
            client = RawClient(serve_argv(), env=env, stderr_path=tmp / "stderr.log")
            t0 = time.monotonic()
            last = trial == trials
            kill_at = None if last else rng.uniform(0.0, window or first_window)
            outcome = _drive(client, ws, files, options, rng, t0, kill_at)
            if last:
                client.stop()
            else:
                client.kill()
            if window is None and outcome["ready_s"] is not None:
                window = outcome["ready_s"] + 4.0  # kills spread over start-up, builds and refreshes
            outcome.update(trial=trial, killed_at_s=kill_at, **check_indexes(cache, tokenizer))
            results.append(outcome)
            print(f"trial {trial:3d}: killed at {kill_at if kill_at is None else round(kill_at, 2)} s, "
                  f"phase {outcome['phase']}, indexes opened {outcome['opened']}", flush=True)
        phases: dict[str, int] = {}
        for r in results[:-1]:
            phases[r["phase"]] = phases.get(r["phase"], 0) + 1
        starts = [r for r in results if r["ready_s"] is not None]
        return {"trials": trials, "seed": seed, "kills_by_phase": phases,
                "final_start_ready": results[-1]["ready_s"] is not None,
                "every_index_valid": True, "starts_ready": len(starts),
                "ready_s_max": max((r["ready_s"] for r in starts), default=None), "results": results}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drive(client: RawClient, ws: Path, files: list[Path], options: dict, rng: random.Random, t0: float,
           kill_at: float | None) -> dict[str, Any]:
    """Start a session and work it until ``kill_at`` (None: until ready plus one refresh)."""
    phase, ready_s = "starting", None
    deadline = None if kill_at is None else t0 + kill_at

    def remaining() -> float:
        return 600.0 if deadline is None else max(0.0, deadline - time.monotonic())

    try:
        client.initialize(ws, options, timeout=remaining() or 0.001)
        phase = "indexing"
        line = client.wait_ready(remaining() or 0.001)
        if not line.startswith("rest-lsp ready"):
            raise AssertionError(f"start failed: {line}")
        ready_s = time.monotonic() - t0
        phase = "refreshing"
        n = 0
        while deadline is None and n < 1 or deadline is not None and time.monotonic() < deadline:
            f = files[rng.randrange(len(files))]
            f.write_text(f.read_text() + f"\ndef crash_refresh_{n}():\n    return {n}\n")
            client.notify("textDocument/didSave", {"textDocument": {"uri": f.as_uri()}})
            client.call("workspace/executeCommand", {"command": "rest-lsp.status"}, timeout=remaining() or 0.001)
            n += 1
    except TimeoutError:
        pass  # the kill time came first
    return {"phase": phase, "ready_s": None if ready_s is None else round(ready_s, 2)}


def main(args) -> int:
    record = run_trials(Path(args.workspace).resolve(), args.trials, args.seed, args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"{record['trials']} kill -9 trials: kills by phase {record['kills_by_phase']}; every index valid after "
          f"every kill; {record['starts_ready']} starts reached ready (slowest {record['ready_s_max']} s); "
          f"final start ready: {record['final_start_ready']}")
    return 0 if record["final_start_ready"] else 1
