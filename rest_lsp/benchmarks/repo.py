"""``rest-lsp bench repo``: completions inside held-out files of a real repository.

The workload an editor produces: the repository is indexed without some held-out files (a copy
of it, so the user's tree is never touched), then completions are asked at many cursor
positions inside the held-out files, the prompt being the file up to the cursor (cut to the
server's prompt budget at a line start, as the server does).  The methods are the HumanEval
benchmark's, plus ``corpus_only``: the default configuration with the corpus tier but no
workspace index, which shows what indexing the workspace adds, and ``daemon``: the default
drafters plus the history source, warmed as the daemon warms it (the model's completions at
``--history-warmup`` positions of the indexed files) and learning each completion after it,
which is what the daemon drafts with on a workspace.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from rest_lsp.benchmarks import humaneval

METHODS = ("greedy", "hf_prompt_lookup", "rest_paper", "corpus_only", "default", "daemon")
humaneval.LABELS.setdefault("corpus_only", "default without the workspace index (corpus only)")
humaneval.LABELS.setdefault("daemon", "default + the history source, warmed as the daemon warms it")


def daemon_method(loaded: Any, config: Any, store: Any, warm: Sequence[Sequence[int]], max_new_tokens: int) -> Any:
    """The daemon's drafting on a workspace: the default drafters plus the history source,
    which starts with the warm-up's ``warm`` outputs and learns each completion after it."""
    from rest_lsp.benchmarks.drafters import with_history
    from rest_lsp.drafters import datastore_drafter
    from rest_lsp.engine.drafter import ContextSuffixDrafter, HistoryDrafter, MergedDrafter, RecyclingDrafter
    from rest_lsp.engine.engine import Engine

    r = config.retrieval
    history = HistoryDrafter(r.history_tokens, span=r.span)
    for out in warm:
        history.add(out)
    drafter = MergedDrafter([ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix),
                             RecyclingDrafter(int(loaded.model.config.vocab_size)), datastore_drafter(store, r), history])
    engine = Engine.from_loaded(loaded, config.decoding, drafter)
    return with_history(humaneval.engine_method(engine, max_new_tokens=max_new_tokens), history)


def held_out_files(files: Sequence[str], count: int, seed: int = 0) -> list[str]:
    """``count`` of the relative paths, chosen by a seeded hash of the path (stable across runs)."""
    def key(path: str) -> str:
        return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()

    return sorted(sorted(files, key=key)[:count])


def cursor_positions(text: str, count: int, rng: random.Random, min_line: int = 5) -> list[int]:
    """``count`` offsets where a completion is asked (``warmup.cursor_offsets``), sampled by ``rng``."""
    from rest_lsp.completion.warmup import cursor_offsets

    offsets = cursor_offsets(text, min_line)
    return sorted(rng.sample(offsets, min(count, len(offsets))))


def copy_without(root: Path, dest: Path, skip: set[str], rel_files: Sequence[str]) -> None:
    """Copy the indexable files of ``root`` to ``dest`` except the ``skip`` ones."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in rel_files:
        if rel in skip:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)


def split_repository(root: Path, config: Any, held_out: int, seed: int) -> tuple[list[str], list[str]]:
    """(every indexable file, the held-out Python files) of a repository, relative paths."""
    from indexer import sources
    from rest_lsp.errors import ConfigError

    rules = sources.Rules.from_config(config.index)
    rel_files = [sources.relpath(f.path, str(root)) for f in sources.walk(root, rules)]
    py_files = [f for f in rel_files if f.endswith(".py") and (root / f).stat().st_size > 2000]
    held = held_out_files(py_files, held_out, seed)
    if not held:
        raise ConfigError(f"no Python files over 2 kB under {root} to hold out", workspace=str(root))
    return rel_files, held


def completion_prompts(root: Path, held: Sequence[str], tokenizer: Any, max_prompt_tokens: int,
                       positions_per_file: int, seed: int) -> tuple[list[list[int]], list[str]]:
    """Prompt ids at cursor positions of the held-out files (the server's prefix cut), and where."""
    from rest_lsp.completion.prompt import fit_prefix

    rng = random.Random(seed)
    prompts, where = [], []
    for rel in held:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        for offset in cursor_positions(text, positions_per_file, rng):
            _, ids = fit_prefix(text[:offset], lambda s: tokenizer.encode(s, add_special_tokens=False),
                                max_prompt_tokens)
            if len(ids) >= 8:
                prompts.append(list(ids))
                where.append(f"{rel}:{text.count(chr(10), 0, offset) + 1}")
    return prompts, where


def main(args: Any) -> int:
    """The ``rest-lsp bench repo`` command."""
    import json
    import platform
    import sys

    import torch

    from rest_lsp.benchmarks import plots
    from rest_lsp.benchmarks.drafters import repository_workload, warmup_outputs
    from rest_lsp.drafters import open_corpus_datastore
    from rest_lsp.engine.model import describe
    from rest_lsp.errors import ConfigError

    root = Path(args.workspace).resolve()
    if not root.is_dir():
        raise ConfigError(f"--workspace {root} is not a directory", workspace=str(root))
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; expected some of {', '.join(METHODS)}", methods=unknown)
    config, loaded, out = humaneval.setup(args)
    started = time.perf_counter()
    work = repository_workload(loaded, config, args, out)
    store, held = work.store, work.held
    index_s = time.perf_counter() - started
    corpus, corpus_line = open_corpus_datastore(str(loaded.source), "", config)
    print(f"model: {loaded.source} ({loaded.forward} forward); workspace copy {work.copy} indexed in {index_s:.1f} s "
          f"({store.stats().get('workspace', {})}); held out: {', '.join(held)}; {corpus_line}")
    prompts, where = completion_prompts(root, held, loaded.tokenizer, config.server.max_prompt_tokens,
                                        args.positions_per_file, args.seed)
    methods = humaneval.build_methods(loaded, config, store, [n for n in names if n not in ("corpus_only", "daemon")],
                                      args.max_new_tokens, corpus_store=corpus)
    warm_info = None
    if "daemon" in names:
        warm, warm_info = warmup_outputs(loaded, config, store, work.warmup_prompts(
            loaded.tokenizer, config, args.history_warmup), args.max_new_tokens)
        methods["daemon"] = daemon_method(loaded, config, store, warm, args.max_new_tokens)
    if "corpus_only" in names and corpus is not None:
        methods["corpus_only"] = humaneval.build_methods(loaded, config, corpus, ["default"], args.max_new_tokens)["default"]
    methods = {n: methods[n] for n in names if n in methods}
    for fn in methods.values():
        fn(prompts[0][:32])
    print(f"{len(prompts)} cursor positions in {len(held)} held-out files x {len(methods)} methods, "
          f"{args.max_new_tokens} new tokens, {torch.get_num_threads()} threads")
    summaries = humaneval.summarize(humaneval.run_interleaved(methods, prompts))
    print(humaneval.table(summaries))
    record = {
        "command": "rest-lsp " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "device": str(loaded.device), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "model": describe(loaded),
        "workspace": str(root),
        "held_out": held,
        "positions": where,
        "index_seconds": round(index_s, 2),
        "history_warmup": warm_info,
        "datastore": store.stats(),
        "max_new_tokens": args.max_new_tokens,
        "methods": [s.to_dict() for s in summaries],
    }
    (out / "repo.json").write_text(json.dumps(record, indent=2, default=str))
    (out / "repo.md").write_text(f"`{record['command']}` ({record['date']})\n\n" + humaneval.table(summaries) + "\n")
    png = plots.speedup_bars(summaries, out / "repo_speedup.png", f"{root.name}: {len(prompts)} completions")
    print(f"written: {out / 'repo.json'}, {out / 'repo.md'}, {png}")
    store.close()
    return 0
