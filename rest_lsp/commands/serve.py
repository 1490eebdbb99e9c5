"""``rest-lsp serve``: run the language server over stdio (default) or loopback TCP."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from rest_lsp.errors import ConfigError

#: the hosts ``--tcp`` binds without ``--allow-remote``
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser("serve", help="run the language server (LSP over stdio by default)")
    p.add_argument("--stdio", action="store_true", help="speak LSP over stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead (loopback only by default)")
    p.add_argument("--allow-remote", action="store_true", help="allow --tcp to bind a non-loopback address")
    p.add_argument("--config", metavar="FILE", help="config file (TOML or JSON); default: the user config dir's config.toml")
    p.add_argument("--log-file", metavar="FILE", help="write the server log to FILE as well")
    p.set_defaults(func=run)


def default_config_path() -> Path:
    """Where the user's config file lives when ``--config`` is not given."""
    import platformdirs

    return Path(platformdirs.user_config_dir("rest-lsp")) / "config.toml"


def read_config_file(path: str | None) -> dict[str, Any]:
    """The raw settings of the config file (``{}`` when the default file does not exist)."""
    from rest_lsp.config.sources import read_file

    file = Path(path) if path else default_config_path()
    if not path and not file.exists():
        return {}
    return read_file(file)


def parse_tcp(value: str, allow_remote: bool) -> tuple[str, int]:
    """``HOST:PORT`` checked: a valid port, and a loopback host unless remote is allowed."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--tcp {value!r}: expected HOST:PORT with a port in 1..65535", value=value)
    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise ConfigError(
            f"--tcp {value!r}: {host} is not a loopback address; pass --allow-remote to expose "
            "completions (and your code) to the network",
            value=value,
        )
    return host, int(port)


def _dump_stacks_on_signal() -> None:
    """``kill -USR1 PID`` prints every thread's stack to stderr: how to debug a stuck daemon."""
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)


def run(args: argparse.Namespace) -> int:
    """Start the server and block until the client disconnects."""
    data = read_config_file(args.config)
    _dump_stacks_on_signal()
    from rest_lsp.lsp.memory import cap_kernel_caches, snapshot_heap_on_signal, tame_heap

    tame_heap()  # before the server's threads start allocating
    cap_kernel_caches()  # before torch is imported: oneDNN and ideep read it once
    snapshot_heap_on_signal()  # only with REST_LSP_HEAP_SNAPSHOTS set: finding a leak
    if args.log_file:
        handler = logging.FileHandler(args.log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    from rest_lsp.lsp.server import create_server

    server = create_server(data)
    if args.tcp:
        host, port = parse_tcp(args.tcp, args.allow_remote)
        print(f"rest-lsp: listening on {host}:{port}", file=sys.stderr)
        server.start_tcp(host, port)
        return server.exit_code
    if sys.stdin.isatty():
        from rest_lsp.commands.quickstart import welcome

        welcome(data)
    server.start_io()
    return server.exit_code
