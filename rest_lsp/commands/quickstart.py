"""What ``rest-lsp serve`` shows a person who starts it in a terminal: it works, and what next.

Not a subcommand of its own: ``serve`` calls ``welcome`` when its stdin is a terminal.  It builds
the index of the current folder with a progress bar (the server then finds it cached), runs one
completion as a demonstration, and says how to connect an editor.
"""

from __future__ import annotations

import os
import sys
from typing import Any

DEMO_TEXT = "def fibonacci(n):\n    "

EDITOR_HELP = """\
rest-lsp speaks the Language Server Protocol on stdin/stdout; an editor starts it for you:
  VS Code : install editors/vscode (see its README); it runs `rest-lsp serve --stdio`
  Neovim  : require('rest_lsp').setup()  from editors/nvim (see its README)
  any LSP client: command `{exe} serve --stdio`
Try a completion without an editor:
  {exe} complete FILE LINE COL
Waiting for an LSP client on stdin (Ctrl-C to quit).
"""


def demo_listing(typed: str, completion: str | None) -> str:
    """The demo as a reader sees code: the typed text then the completion, each line indented
    by four spaces and marked (``|`` typed, ``+`` completed), so the completion's own indentation
    reads as it would in the editor."""
    if completion is None:
        return "    (no completion)"
    lines = (typed + completion).split("\n")
    typed_lines = typed.count("\n")  # lines wholly typed; the cursor's line is marked completed
    return "\n".join(f"  {'|' if i < typed_lines else '+'} {line}" for i, line in enumerate(lines))


def welcome(data: dict[str, Any]) -> None:
    """Index the current folder with progress, run a demo completion, print how to connect."""
    from rest_lsp.commands.index_common import _progress_bar
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config

    err = sys.stderr
    exe = os.path.basename(sys.argv[0]) or "rest-lsp"
    config, problems = Config.from_dict(data)
    for problem in problems:
        print(f"rest-lsp: config: {problem}", file=err)
    folder = os.getcwd()
    print(f"rest-lsp: loading the model and indexing {folder} (plus the corpus) ...", file=err)
    service = CompletionService(config, [folder], log=lambda message: print(message, file=err))
    progress, close = _progress_bar()
    try:
        service.start(progress=progress)
    except Exception as exc:  # the server itself would report this to the editor
        close()
        print(f"rest-lsp: start-up failed: {exc}", file=err)
        return
    close()
    print(service.ready_message(), file=err)
    try:
        outcome = service.complete(DEMO_TEXT, len(DEMO_TEXT))
        print(f"rest-lsp: demo completion of {DEMO_TEXT!r} ({outcome.latency_s * 1000:.0f} ms):", file=err)
        print(demo_listing(DEMO_TEXT, outcome.items[0] if outcome.items else None), file=err)
    except Exception as exc:
        print(f"rest-lsp: demo completion failed: {exc}", file=err)
    service.close()
    print(EDITOR_HELP.format(exe=exe), file=err)
