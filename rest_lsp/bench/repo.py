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

import os
import time
from pathlib import Path
from typing import Any, Sequence

from rest_lsp.bench import humaneval

METHODS = ("greedy", "hf_prompt_lookup", "rest_paper", "corpus_only", "default", "daemon")
humaneval.LABELS.setdefault("corpus_only", "default without the workspace index (corpus only)")
humaneval.LABELS.setdefault("daemon", "default + the history source, warmed as the daemon warms it")


def daemon_method(loaded: Any, config: Any, store: Any, warm: Sequence[Sequence[int]], max_new_tokens: int) -> Any:
    """The daemon's drafting on a workspace: the default drafters plus the history source,
    which starts with the warm-up's ``warm`` outputs and learns each completion after it."""
    from rest_lsp.bench.drafters import with_history
    from rest_lsp.drafting.datastore import datastore_drafter
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


def main(args: Any) -> int:
    """The ``rest-lsp bench repo`` command."""
    import json
    import platform
    import sys

    import torch

    from rest_lsp.bench import plots
    from rest_lsp.bench.workloads import completion_prompts, repository_workload, warmup_outputs
    from rest_lsp.drafting.datastore import open_corpus_datastore
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
