"""The ``rest-lsp`` command line: a thin dispatcher over one module per subcommand.

Each subcommand's module (in ``rest_lsp.commands``; ``bench``'s is ``rest_lsp.bench.commands``)
exposes ``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed namespace and returning an exit status).  Modules are imported here, but they import
their heavy dependencies (torch, transformers) only when run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rest_lsp import __version__
from rest_lsp.errors import ReportedError

#: the subcommands' modules, in the order shown by --help (``bench``'s lives in the benchmark package)
COMMAND_MODULES: tuple[str, ...] = (
    "rest_lsp.commands.serve", "rest_lsp.commands.index", "rest_lsp.commands.datastore",
    "rest_lsp.commands.generate", "rest_lsp.commands.complete", "rest_lsp.commands.model",
    "rest_lsp.bench.commands", "rest_lsp.commands.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="rest-lsp",
        description="Code completions decoded with retrieval-based speculative decoding.",
    )
    parser.add_argument("--version", action="version", version=f"rest-lsp {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # subcommand not built yet in this checkout
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rest-lsp`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ReportedError as exc:
        print(f"rest-lsp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rest-lsp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
