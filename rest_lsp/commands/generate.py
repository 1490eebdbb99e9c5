"""``rest-lsp generate``: decode a continuation of a prompt file and show where the time went."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rest_lsp.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand."""
    p = sub.add_parser("generate", help="generate a continuation of a prompt file (greedy or REST)")
    p.add_argument("--prompt-file", required=True, metavar="F", help="text to continue ('-' for stdin)")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="default: decoding.max_new_tokens")
    p.add_argument("--mode", choices=("greedy", "rest"), default="rest",
                   help="greedy: our plain loop, one token per forward; rest: speculative (default)")
    p.add_argument("--model", default="", metavar="NAME", help="model.name (docs/models.md); default: the default model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")
    p.add_argument("--budget", type=int, default=None,
                   help="draft tokens per step; 0 = adaptive (default: decoding.draft_budget)")
    p.add_argument("--index", default="", metavar="DIR",
                   help="datastore directory; default: the default corpus index when built; 'none': no datastore")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="seed of sampled decoding")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from rest_lsp.config.schema import Config

    decoding: dict[str, Any] = {}
    if args.max_new_tokens is not None:
        decoding["max_new_tokens"] = args.max_new_tokens
    if args.budget is not None:
        decoding["draft_budget"] = args.budget
    if args.temperature is not None:
        decoding["temperature"] = args.temperature
    if args.top_p is not None:
        decoding["top_p"] = args.top_p
    model = {"name": args.model, "device": args.device, "dtype": args.dtype, "threads": args.threads}
    config, problems = Config.from_dict({"model": model, "decoding": decoding})
    if problems:
        raise ConfigError("invalid options: " + "; ".join(problems), problems=problems)
    return config


def build_drafter(loaded: Any, config: Any, index: str = "") -> tuple[Any, str]:
    """The REST drafter: the context drafter, plus the datastore when one can be opened."""
    from rest_lsp.drafting.datastore import datastore_drafter, open_corpus_datastore
    from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, RecyclingDrafter

    r = config.retrieval
    own = [ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix),
           RecyclingDrafter(int(loaded.model.config.vocab_size))]
    if index == "none":
        return MergedDrafter(own), "drafting from the prompt and the model's own top-k only (--index none)"
    source = Path(loaded.source)
    ref = str(source) if (source / "tokenizer.json").is_file() else loaded.tokenizer
    store, message = open_corpus_datastore(ref, index, config)
    if store is None:
        return MergedDrafter(own), f"{message}; drafting from the prompt and the model's own top-k only"
    drafter = MergedDrafter(own + [datastore_drafter(store, r)])
    return drafter, f"drafting from the prompt, the model's own top-k and {message}"


def run(args: argparse.Namespace) -> int:
    """Load the model, decode, print the text and the statistics."""
    from rest_lsp.engine.engine import Engine
    from rest_lsp.engine.model import describe, load_model

    config = _config(args)
    text = sys.stdin.read() if args.prompt_file == "-" else Path(args.prompt_file).read_text(encoding="utf-8")
    loaded = load_model(config.model)
    drafter, drafting = (None, "greedy: no drafts") if args.mode == "greedy" else build_drafter(loaded, config, args.index)
    engine = Engine.from_loaded(loaded, config.decoding, drafter)
    ids = loaded.tokenizer.encode(text, add_special_tokens=False) or sorted(loaded.eos_token_ids)[:1]
    gen = engine.complete(ids, config.decoding.max_new_tokens, mode=args.mode, seed=args.seed)
    completion = loaded.tokenizer.decode(list(gen.tokens), skip_special_tokens=True)
    stats = gen.stats
    if args.json:
        print(json.dumps({"text": completion, "tokens": list(gen.tokens), "drafting": drafting,
                          "model": describe(loaded), "stats": stats.to_dict()}))
        return 0
    print(completion)
    print("---", file=sys.stderr)
    print(f"mode {args.mode}; {drafting}", file=sys.stderr)
    print(
        f"steps {stats.steps}, tokens/step {stats.tokens_per_step:.2f}, tokens/s {stats.tokens_per_s:.1f}, "
        f"mean budget {stats.to_dict()['mean_budget']:.1f}",
        file=sys.stderr,
    )
    print(
        f"time: model {stats.forward_s * 1e3:.0f} ms, retrieval {stats.draft_s * 1e3:.0f} ms, "
        f"tree {stats.tree_s * 1e3:.0f} ms, other {stats.other_s * 1e3:.0f} ms, "
        f"prefill {stats.prefill_s * 1e3:.0f} ms ({stats.prefill_tokens} tokens); stop: {stats.stop_reason}",
        file=sys.stderr,
    )
    return 0
