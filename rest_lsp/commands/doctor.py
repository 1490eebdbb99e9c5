"""``rest-lsp doctor``: what is wrong with this installation, and how to fix it.

One check per line, each ``ok``, ``warn`` or ``problem``; every problem (and most warnings) comes
with its fix.  ``--json`` prints the same checks as one JSON object.  The exit status is 1 when a
problem was found, else 0 (warnings do not fail it).  The checks, in order (``CHECKS``):

python   the interpreter (3.11+) and this rest-lsp
torch    the torch build (CUDA or CPU) and the device completions run on
config   the server's config file (the one ``rest-lsp serve`` reads), and its invalid settings
model    the model resolves and loads (``model.name``, or ``--model``): kind, size, weights
         format, device, dtype, forward
fim      the fill-in-the-middle template detected in the model's vocabulary
index    the index the server would open for the workspace (``--workspace``, default: here): the
         corpus and workspace tiers, their sizes, when built, files changed since; compact and
         remote tiers when configured
cache    the cache folder (indexes, converted models): size, writable, what ``index prune`` frees
disk     free space where the cache is
memory   free memory against what the model needs (and the GPU's, on CUDA)
server   the ``rest-lsp`` an editor starts: on PATH, and this installation
editors  VS Code (``code``), code-server and Neovim (``nvim``) found on PATH, with their versions

The checks live in ``doctor_checks`` (the machine: python, torch, disk, memory, server, editors,
and the ``Check`` and ``Context`` they share) and ``doctor_model`` (config, model, fim, index,
cache); this module runs them and prints the report.

Nothing is downloaded: a hub model that is not cached yet is reported, not fetched; an index that
is missing is reported, not built.  docs/doctor.md describes each check and its fixes.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from typing import Any, Callable

from rest_lsp.commands.doctor_checks import (PROBLEM, WARN, Check, Context, cache_home, check_disk, check_editors,
                                             check_memory, check_python, check_server_command, check_torch)
from rest_lsp.commands.doctor_model import check_cache, check_config, check_fim, check_index, check_model

#: every check, in the order they run and print
CHECKS: tuple[str, ...] = ("python", "torch", "config", "model", "fim", "index", "cache", "disk", "memory",
                           "server", "editors")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    p = sub.add_parser("doctor", help="check the installation: Python, torch, the model, the index, disk, memory, editors")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="check this model.name instead of the config file's (a packaged name, a .gguf file, "
                        "ollama:NAME, a model folder, a hub name or 'embedded')")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="the server's config file (default: the user config dir's config.toml, as `serve`)")
    p.add_argument("--workspace", default=".", metavar="DIR", help="the workspace whose index is checked (default: .)")
    p.add_argument("--json", action="store_true", help="print the checks as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run every check, print them, and return 1 when one found a problem."""
    checks = run_checks(args.model, args.config, args.workspace)
    report = as_report(checks)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(checks))
    return 1 if report["problems"] else 0


def run_checks(model: str | None, config_path: str | None, workspace: str = ".") -> list[Check]:
    """Every check of ``CHECKS``, in order; a check that raises is reported as a problem."""
    ctx = Context(workspace=os.path.abspath(workspace))
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("torch", check_torch),
        ("config", lambda: check_config(ctx, config_path, model)),
        ("model", lambda: check_model(ctx)),
        ("fim", lambda: check_fim(ctx)),
        ("index", lambda: check_index(ctx)),
        ("cache", lambda: check_cache(ctx)),
        ("disk", lambda: check_disk(cache_home())),
        ("memory", lambda: check_memory(ctx)),
        ("server", check_server_command),
        ("editors", check_editors),
    ]
    assert tuple(name for name, _ in steps) == CHECKS
    checks = []
    for name, step in steps:
        try:
            checks.append(step())
        except Exception as exc:  # doctor reports, it never dies of what it checks
            checks.append(Check(name, PROBLEM, f"the check failed: {type(exc).__name__}: {exc}",
                                "run `rest-lsp -vv doctor` and report the traceback",
                                {"error": f"{type(exc).__name__}: {exc}"}))
    return checks


def as_report(checks: list[Check]) -> dict[str, Any]:
    """The JSON form: counts, then every check (name, status, summary, fix, details)."""
    problems = sum(c.status == PROBLEM for c in checks)
    return {
        "ok": problems == 0,
        "problems": problems,
        "warnings": sum(c.status == WARN for c in checks),
        "checks": [asdict(c) for c in checks],
    }


def format_report(checks: list[Check]) -> str:
    """One line per check, its fix under it when there is one, then the counts."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<8} {c.name:<{width}}  {c.summary}")
        if c.fix:
            lines.append(f"{'':<8} {'':<{width}}  fix: {c.fix}")
    problems = sum(c.status == PROBLEM for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    lines.append(f"{problems} problem(s), {warnings} warning(s)" if problems or warnings else "everything looks fine")
    return "\n".join(lines)
