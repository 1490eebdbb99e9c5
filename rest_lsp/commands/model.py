"""``rest-lsp model``: describe (``info``) and measure (``eval``) the model that decodes."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rest_lsp.errors import ModelError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``model`` subcommand and its ``info`` and ``eval`` actions."""
    p = sub.add_parser("model", help="describe or evaluate the model (the default one unless --model)")
    actions = p.add_subparsers(dest="model_action", metavar="ACTION")
    info = actions.add_parser("info", help="show the model in use and why: size, device, dtype, where its weights come from")
    _model_options(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=run_info)
    ev = actions.add_parser("eval", help="held-out loss, HumanEval parse rate and pass@1, speed")
    _model_options(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--limit", type=int, default=0, help="only the first N HumanEval problems")
    ev.add_argument("--parts", default="loss,humaneval,speed",
                    help="comma-separated subset of loss, humaneval, speed")
    ev.add_argument("--max-new-tokens", type=int, default=256, help="HumanEval generation cap")
    ev.add_argument("--samples", action="store_true", help="include every HumanEval completion")
    ev.set_defaults(func=run_eval)
    p.set_defaults(func=_help_for(p))


def _help_for(parser: argparse.ArgumentParser):
    """A command function that prints the parser's help (``rest-lsp model`` with no action)."""

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show_help


def _model_options(p: argparse.ArgumentParser) -> None:
    """Options choosing the model (the same fields as the ``model`` config section)."""
    p.add_argument("--model", default="", metavar="NAME",
                   help="a packaged model (qwen2.5-coder-0.5b, qwen2.5-coder-1.5b), a GGUF file, ollama:NAME, "
                        "a model folder, a hub name or 'embedded'; default: qwen2.5-coder-0.5b when "
                        "installed, else the embedded model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 means all cores")


def _load(args: argparse.Namespace):
    """Load the model named by the options through the engine's loader."""
    from rest_lsp.config.schema import Config
    from rest_lsp.engine.model import load_model
    from rest_lsp.errors import ConfigError

    config, problems = Config.from_dict(
        {"model": {"name": args.model, "device": args.device, "dtype": args.dtype, "threads": args.threads}}
    )
    if problems:
        raise ConfigError("invalid model options: " + "; ".join(problems), problems=problems)
    return load_model(config.model)


def model_info(args: argparse.Namespace) -> dict[str, Any]:
    """What ``model info`` reports, as a dict."""
    from rest_lsp.embedded import model as embedded_model
    from rest_lsp.engine.model import describe

    started = time.perf_counter()
    loaded = _load(args)
    info = describe(loaded)
    info["load_seconds"] = round(time.perf_counter() - started, 2)
    if info["kind"] == "embedded":
        info["embedded"] = embedded_model.describe_embedded()
    return info


def run_info(args: argparse.Namespace) -> int:
    """Print the active model's description."""
    info = model_info(args)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_table(info)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Measure the model and print the numbers."""
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"loss", "humaneval", "speed"}
    if unknown:
        from rest_lsp.errors import ConfigError

        raise ConfigError(f"--parts: unknown {sorted(unknown)}", parts=sorted(unknown))
    loaded = _load(args)
    from rest_lsp.engine.model import describe

    result: dict[str, Any] = {"model": describe(loaded)}
    result["threads"] = _torch_threads()
    if "loss" in parts:
        result["held_out"] = _held_out(loaded)
    if "humaneval" in parts:
        result["humaneval"] = _humaneval(loaded, args)
    if "speed" in parts:
        result["speed"] = _speed(loaded)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_eval(result)
    return 0


def _torch_threads() -> int:
    """The number of torch CPU threads in use."""
    import torch

    return torch.get_num_threads()


def _held_out(loaded) -> dict[str, Any]:
    """Held-out loss on the embedded model's validation files (the record names them)."""
    from rest_lsp.embedded import model as embedded_model
    from rest_lsp.bench import model_eval

    from pathlib import Path

    # a model trained by training/train_embedded.py names its own held-out files; any other
    # model is scored on the embedded model's (per-byte numbers stay comparable)
    directory = Path(loaded.source)
    if not (directory / embedded_model.TRAINING_RECORD).is_file():
        directory = embedded_model.EMBEDDED_DIR
    record = embedded_model.training_record(directory)
    names = record.get("val_files", [])
    if not names:
        raise ModelError("no training record names held-out files",
                         path=str(directory / embedded_model.TRAINING_RECORD))
    paths, missing = model_eval.resolve_held_out(names)
    texts = [p.read_bytes().decode("utf-8", errors="replace") for p in paths]
    window = record.get("settings", {}).get("seq_len", 1024)
    eos = min(loaded.eos_token_ids) if loaded.eos_token_ids else 0
    result = model_eval.held_out_loss(loaded.model, loaded.tokenizer, texts, eos, window=window)
    result["files_missing"] = len(missing)
    return result


def _humaneval(loaded, args: argparse.Namespace) -> dict[str, Any]:
    """Greedy HumanEval numbers (completions kept only with ``--samples``)."""
    from rest_lsp.bench import model_eval

    result = model_eval.humaneval(loaded.model, loaded.tokenizer, loaded.eos_token_ids,
                                  limit=args.limit, max_new_tokens=args.max_new_tokens)
    if not args.samples:
        result.pop("samples")
    return result


def _speed(loaded) -> list[dict[str, float]]:
    """Greedy decoding speed at prompt lengths 128 and 1024 (prompt: a stdlib source file)."""
    from pathlib import Path

    from rest_lsp.bench import model_eval

    text = Path(argparse.__file__).read_text(encoding="utf-8")  # long; same on every Python 3.11
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    return model_eval.decode_speed(loaded.model, ids, runner=loaded.runner)


def _print_table(info: dict[str, Any], indent: str = "") -> None:
    """Print a nested dict as aligned ``key: value`` lines."""
    width = max((len(k) for k in info), default=0)
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_table(value, indent + "  ")
        else:
            print(f"{indent}{key:<{width}}  {value}")


def _print_eval(result: dict[str, Any]) -> None:
    """Print the evaluation in a few readable lines."""
    m = result["model"]
    print(f"model       {m['source']}  ({m['parameters']:,} parameters, {m['device']}, {m['dtype']}, "
          f"{result['threads']} threads)")
    if "held_out" in result:
        h = result["held_out"]
        print(f"held-out    {h['nats_per_token']:.4f} nats/token, {h['nats_per_byte']:.4f} nats/byte "
              f"({h['bits_per_byte']:.4f} bits/byte) over {h['tokens_scored']:,} tokens of {h['files']} files")
    if "humaneval" in result:
        e = result["humaneval"]
        print(f"humaneval   parse {e['parse_rate']:.1%} (with code beyond the docstring "
              f"{e['parse_rate_nonempty']:.1%}), pass@1 {e['pass_at_1']:.1%} "
              f"({e['passed']}/{e['problems']}), greedy, max {e['max_new_tokens']} new tokens")
    for row in result.get("speed", []):
        print(f"speed       prompt {row['prompt_tokens']:>5} tokens: {row['decode_tokens_per_s']:.1f} tokens/s "
              f"greedy decode, prefill {row['prefill_seconds'] * 1000:.0f} ms (transformers forward)")
        if "engine_decode_tokens_per_s" in row:
            print(f"            prompt {row['prompt_tokens']:>5} tokens: {row['engine_decode_tokens_per_s']:.1f} tokens/s "
                  f"greedy decode, prefill {row['engine_prefill_seconds'] * 1000:.0f} ms "
                  f"(rest-lsp's loop, {result['model'].get('forward')} forward)")
