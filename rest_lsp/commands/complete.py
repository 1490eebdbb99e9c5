"""``rest-lsp complete FILE LINE COL``: one completion through the server's own path, no editor."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rest_lsp.errors import ConfigError, SourceError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``complete`` subcommand."""
    p = sub.add_parser("complete", help="complete FILE at LINE COL (1-based) the way the server would")
    p.add_argument("file", help="the file to complete in")
    p.add_argument("line", type=int, help="line number, 1-based")
    p.add_argument("col", type=int, help="column (characters), 1-based; past the end means end of line")
    p.add_argument("--workspace", help="workspace to index (default: the file's git root, else its folder)")
    p.add_argument("--no-workspace", action="store_true", help="use the corpus index only")
    p.add_argument("--model", help="model.name (docs/models.md); default: the default model")
    p.add_argument("--max-new-tokens", type=int, help="tokens to generate at most")
    p.add_argument("--invoked", action="store_true", help="answer as to an explicit request (several items)")
    p.add_argument("--config", metavar="FILE", help="config file (TOML or JSON)")
    p.add_argument("--json", action="store_true", help="print JSON: items, stats, latency")
    p.set_defaults(func=run)


def workspace_of(file: Path) -> Path:
    """The git root containing ``file``, else its folder."""
    try:
        out = subprocess.run(
            ["git", "-C", str(file.parent), "rev-parse", "--show-toplevel"],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return file.parent


def offset_of(text: str, line: int, col: int) -> int:
    """The character offset of 1-based (line, col) in ``text``, clamped to the line."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise ConfigError(f"line {line} is outside the file (1..{len(lines)})", line=line)
    if col < 1:
        raise ConfigError(f"column {col} must be >= 1", col=col)
    start = sum(len(l) + 1 for l in lines[: line - 1])
    return start + min(col - 1, len(lines[line - 1]))


def run(args: argparse.Namespace) -> int:
    """Build/open the index, load the model, print the completion."""
    from rest_lsp.commands.index_common import _progress_bar
    from rest_lsp.commands.serve import read_config_file
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config

    file = Path(args.file).resolve()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {file}: {exc}", path=str(file)) from exc
    offset = offset_of(text, args.line, args.col)  # a bad position fails before any loading
    data = read_config_file(args.config)
    if args.model:
        data.setdefault("model", {})["name"] = args.model
    if args.max_new_tokens:
        data.setdefault("decoding", {})["max_new_tokens"] = args.max_new_tokens
    config = Config.strict(data)
    folders = [] if args.no_workspace else [str(Path(args.workspace).resolve() if args.workspace else workspace_of(file))]
    service = CompletionService(config, folders)
    progress, close = _progress_bar()
    try:
        service.start(progress=progress)
    finally:
        close()
    service.update_buffer(file.as_uri(), text)
    outcome = service.complete(text, offset, file.as_uri(), args.invoked)
    service.close()
    if args.json:
        print(json.dumps({
            "items": outcome.items,
            "latency_ms": round(outcome.latency_s * 1000, 1),
            "prompt_tokens": outcome.prompt_tokens,
            "fim": outcome.fim,
            "stats": outcome.stats,
        }, indent=2))
        return 0
    if not outcome.items:
        print("(no completion)", file=sys.stderr)
    for i, item in enumerate(outcome.items):
        if len(outcome.items) > 1:
            print(f"--- item {i + 1} ---")
        print(item)
    print(f"[{outcome.latency_s * 1000:.0f} ms; {outcome.summary()}]", file=sys.stderr)
    return 0
