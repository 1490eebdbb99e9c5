"""The Neovim plugin installed as editors/nvim/README.md says, then ghost text from the real server.

The plugin is the ``editors/nvim`` subfolder of the repository, so plugin managers are told where
it is.  Two installs are run, each from the README's own blocks (found by their ``<!-- test: …
-->`` markers), in a temporary home whose ``~/rest-lsp`` is a stand-in for a clone (links to this
repository's ``editors`` folder and to the ``rest-lsp`` executable under test):

- lazy.nvim: the README's spec file, loaded by ``editors/nvim/tests/lazy_stub.lua``, which does
  what lazy.nvim does with a local ``dir`` spec (no network: lazy.nvim itself is not installed);
- native packages: the README's shell lines run in that home, its ``init.lua`` lines as the
  user's ``init.lua``, and Neovim started without ``--clean`` so that it reads them.

Then the driver (editors/nvim/tests/complete.lua) waits for the server, for the ghost text, and
Tab inserts it.  The server settings (the tiny model) come from the server's own config file in
that home (``~/.config/rest-lsp/config.toml`` there), so the README's blocks run unchanged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from editors_testing import COL, LINE, REPO, SOURCE, editor_env, make_workspace, rest_lsp_executable, settings
from nvim_testing import drawn, needs_nvim, run_driver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

README = REPO / "editors" / "nvim" / "README.md"


def readme_block(tag: str) -> str:
    """The fenced code block right after ``<!-- test: TAG -->`` in the plugin's README, dedented."""
    text = README.read_text()
    m = re.search(rf"<!-- test: {re.escape(tag)} -->\n[ \t]*```\w*\n(.*?)\n[ \t]*```", text, re.S)
    assert m, f"no block marked <!-- test: {tag} --> in {README}"
    return textwrap.dedent(m[1])


def toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def user_home(tmp_path: Path, model_dir: Path, corpus: Path) -> tuple[Path, dict[str, str]]:
    """A temporary home with a stand-in clone at ~/rest-lsp and the server's config file; its env."""
    home = tmp_path / "home"
    env = editor_env(home)
    clone = home / "rest-lsp"
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / "editors").symlink_to(REPO / "editors", target_is_directory=True)
    (clone / ".venv" / "bin" / "rest-lsp").symlink_to(rest_lsp_executable())
    config = Path(env["XDG_CONFIG_HOME"]) / "rest-lsp" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("".join(
        f"[{section}]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())
        for section, values in settings(model_dir, corpus).items()
    ))
    return home, env


def assert_ghost_text_accepted(report: dict, expected: list[str], plugin: Path) -> None:
    """The plugin was loaded from ``plugin`` (the installed path), and its ghost text inserted."""
    assert report["installed_from"] == str(plugin / "lua" / "rest_lsp" / "init.lua"), report["installed_from"]
    assert report["mode"] == "ghost", report["mode"]
    assert drawn(report["ghost"]) == expected[0]
    assert "\n".join(report["lines"]) == SOURCE + expected[0]
    assert report["status"]["requests"]["accepted_items"] >= 1


def driver_spec(ws: Path, init: str) -> dict:
    # no "cmd"/"settings": the installed plugin's setup() (the README's) starts the server
    return {"file": str(ws / "ops.py"), "line": LINE, "col": COL, "init": init}


@needs_nvim
def test_lazy_nvim_spec_from_the_readme_shows_ghost_text(tmp_path, editor_model_dir, editor_corpus, editor_expected):
    home, env = user_home(tmp_path, editor_model_dir, editor_corpus)
    spec_file = Path(env["XDG_CONFIG_HOME"]) / "nvim" / "lua" / "plugins" / "rest-lsp.lua"
    spec_file.parent.mkdir(parents=True)
    spec_file.write_text(readme_block("lazy"))
    env["REST_LSP_LAZY_SPEC"] = str(spec_file)
    ws = make_workspace(tmp_path / "ws")
    report = run_driver(tmp_path, driver_spec(ws, str(REPO / "editors" / "nvim" / "tests" / "lazy_stub.lua")), env=env)
    assert_ghost_text_accepted(report, editor_expected(invoked=False), home / "rest-lsp" / "editors" / "nvim")


@needs_nvim
def test_native_package_from_the_readme_shows_ghost_text(tmp_path, editor_model_dir, editor_corpus, editor_expected):
    home, env = user_home(tmp_path, editor_model_dir, editor_corpus)
    env.pop("XDG_DATA_HOME")  # the README's paths are the default stdpath('data'): ~/.local/share/nvim
    link = subprocess.run(["bash", "-euc", readme_block("pack-link")], env=env, capture_output=True, text=True, timeout=60)
    assert link.returncode == 0, link.stderr
    package = home / ".local" / "share" / "nvim" / "site" / "pack" / "rest-lsp" / "start" / "rest-lsp"
    assert package.is_symlink() and os.path.realpath(package) == str((REPO / "editors" / "nvim").resolve())
    init = Path(env["XDG_CONFIG_HOME"]) / "nvim" / "init.lua"
    init.parent.mkdir(parents=True)
    init.write_text(readme_block("pack-init"))
    ws = make_workspace(tmp_path / "ws")
    # no --clean: Neovim reads init.lua and the start packages of this home, as a user's does
    report = run_driver(tmp_path, driver_spec(ws, ""), clean=False, env=env)
    assert_ghost_text_accepted(report, editor_expected(invoked=False), package)
