"""What the ``rest-lsp index`` actions share: the options naming an index (``--workspace``,
``--index-dir``, ``--tokenizer``, ``--config``), the config and tokenizer they give, and a progress bar.

Imported by ``rest_lsp.commands.index``, ``index_inspection`` and ``index_dense``; imports none of them."""

from __future__ import annotations

import argparse
import sys


def _where(p: argparse.ArgumentParser, any_kind: bool = False) -> None:
    p.add_argument("--workspace", metavar="DIR", default=None, help="workspace root (default: .)")
    kinds = (": a workspace or corpus index (`index build`), a sharded one (`index build --sharded/--ray`), "
             "a compact tier (`index compact --out`) or a served index's http(s):// URL") if any_kind else ""
    p.add_argument("--index-dir", metavar="DIR", default=None,
                   help=f"index directory (default: the user cache dir, keyed by workspace){kinds}")
    p.add_argument("--tokenizer", metavar="PATH", default=None,
                   help="tokenizer.json or model directory (default: the model's: model.name, else the default model)")
    p.add_argument("--config", metavar="FILE", default=None, help="config file (TOML or JSON)")


def _config(args):
    from rest_lsp.config.schema import Config
    from rest_lsp.config.sources import load_file

    if getattr(args, "config", None):
        config, problems = load_file(args.config)
        for problem in problems:
            print(f"rest-lsp: config: {problem}", file=sys.stderr)
    else:
        config = Config()
    if getattr(args, "corpus", None):
        config.index.corpus_roots = list(args.corpus)
    if getattr(args, "index_dir", None):
        config.index.index_dir = args.index_dir
    return config


def _tokenizer_source(args, config) -> str:
    """``--tokenizer``, else the tokenizer of the model the daemon would load (``config``'s
    ``model.name``; an empty name: the default model), so that the index is the daemon's."""
    if args.tokenizer:
        return args.tokenizer
    from rest_lsp.models.resolve import resolve

    # the tokenizer alone: a GGUF model's folder without its converted weights does
    return resolve(config.model.name, log=lambda message: print(message, file=sys.stderr), weights=False).folder


def _progress_bar(unit: str = "B"):
    """A progress callback drawing a tqdm bar on stderr; returns (callback, close)."""
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, unit_scale=unit == "B", file=sys.stderr, leave=False, dynamic_ncols=True)

    def progress(done: int, total: int, message: str) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_description_str(message[:60], refresh=False)
        bar.refresh()

    return progress, bar.close
