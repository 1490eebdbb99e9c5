"""The Neovim plugin (editors/nvim) in a real, headless Neovim: complete, accept, compare.

Neovim 0.11 takes the completion-popup path (``vim.lsp.completion``), 0.12+ the ghost-text path
(``vim.lsp.inline_completion``); the Lua driver is editors/nvim/tests/complete.lua.
Neovim comes from ``scripts/editor-test-deps.sh nvim`` (or REST_LSP_NVIM, or PATH);
``REST_LSP_EDITOR_SERVER`` replaces the server executable (debugging).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from editors_testing import (COL, LINE, REPO, SOURCE, editor_env, find_nvim, make_workspace, needs_editor,
                             rest_lsp_executable, settings)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NVIM, NVIM_VERSION = find_nvim()
needs_nvim = needs_editor(None if NVIM else NVIM_VERSION)


def run_driver(tmp_path, spec: dict, timeout: float = 300) -> dict:
    """Run the Lua driver in a headless Neovim; its JSON report."""
    out = tmp_path / "report.json"
    spec = {"plugin": str(REPO / "editors" / "nvim"), "out": str(out), "timeout_ms": int(timeout * 1000) - 30000, **spec}
    env = editor_env(tmp_path / "home")
    env["REST_LSP_TEST"] = json.dumps(spec)
    proc = subprocess.run(
        [NVIM, "--headless", "--clean", "-S", str(REPO / "editors" / "nvim" / "tests" / "complete.lua")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
    )
    assert out.exists(), f"no report (rc {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report.get("error") is None, json.dumps(report, indent=1)
    return report


def minor_version() -> tuple[int, int]:
    return tuple(int(x) for x in NVIM_VERSION.split("v", 1)[1].split(".")[:2])


@needs_nvim
@pytest.mark.parametrize("ui", ["ghost", "popup"])
def test_completion_is_inserted_as_the_server_computed_it(tmp_path, editor_model_dir, editor_corpus, editor_expected, ui):
    """Ghost text (0.12: vim.lsp.inline_completion; 0.11: the plugin's own) or, on 0.11, the popup."""
    ws = make_workspace(tmp_path / "ws")
    report = run_driver(tmp_path, {
        "cmd": [rest_lsp_executable(), "serve", "--stdio"],
        "settings": settings(editor_model_dir, editor_corpus),
        "file": str(ws / "ops.py"),
        "line": LINE,
        "col": COL,
        "commands": True,
        "ui": ui,
    })
    modern = minor_version() >= (0, 12)
    assert report["mode"] == ("inline" if modern else {"ghost": "ghost", "popup": "completion"}[ui]), report["mode"]
    popup = report["mode"] == "completion"
    expected = editor_expected(invoked=popup)  # the popup asks explicitly: several items
    assert expected and expected[0], "the tiny model gave no completion to compare"
    if popup:
        assert [item["text"] for item in report["items"]] == expected
    else:  # the ghost text drawn is the completion (first line inline, the rest as virtual lines)
        drawn = "".join(chunk[0] for mark in report["ghost"] for chunk in mark["virt_text"] or [])
        assert expected[0].startswith(drawn) and drawn, (drawn, expected[0])
    # the accepted text is the server's first item, inserted whole at the cursor
    assert "\n".join(report["lines"]) == SOURCE + expected[0]
    last = (SOURCE + expected[0]).split("\n")
    assert report["cursor"] == [len(last), len(last[-1].encode())]
    # the acceptance reached the server, and the statusline shows its figures
    assert report["status"]["requests"]["accepted_items"] >= 1
    assert report["statusline"].startswith("rest-lsp") and "ms" in report["statusline"]
    # :RestLspStatus shows the server's status, :RestLspToggle turns completions off (and on)
    assert "rest-lsp status" in report["status_message"] and "accepted_items" in report["status_message"]
    assert report["statusline_off"] == "rest-lsp: off"


@needs_nvim
@pytest.mark.parametrize("ui", ["ghost", "popup"])
def test_completion_comes_by_itself_while_typing(tmp_path, editor_model_dir, editor_corpus, editor_expected, ui):
    """Typing asks by itself: ghost text, or with autotrigger the 0.11 popup (one item)."""
    ws = make_workspace(tmp_path / "ws")
    (ws / "ops.py").write_text(SOURCE[:-1])  # the space after "return" is typed
    report = run_driver(tmp_path, {
        "cmd": [rest_lsp_executable(), "serve", "--stdio"],
        "settings": settings(editor_model_dir, editor_corpus),
        "file": str(ws / "ops.py"),
        "line": LINE,
        "col": COL - 1,
        "type": " ",
        "ui": ui,
    })
    expected = editor_expected(invoked=False)
    if report["mode"] == "completion":
        assert [item["text"] for item in report["items"]] == expected
    assert "\n".join(report["lines"]) == SOURCE + expected[0]


def run_lua(tmp_path, body: str) -> object:
    """Run ``body`` in a headless Neovim with the plugin on the runtimepath; the JSON it writes last."""
    script = f"vim.opt.rtp:prepend({json.dumps(str(REPO / 'editors' / 'nvim'))})\n{body}\nvim.cmd('qall!')\n"
    (tmp_path / "t.lua").write_text(script)
    proc = subprocess.run([NVIM, "--headless", "--clean", "-S", str(tmp_path / "t.lua")],
                          env=editor_env(tmp_path / "home"), capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_nvim
def test_missing_server_is_reported_with_the_fix(tmp_path):
    messages = run_lua(tmp_path, (
        "local messages = {}\n"
        "vim.notify = function(msg) table.insert(messages, msg) end\n"
        "require('rest_lsp').setup({ cmd = { '/nonexistent/rest-lsp', 'serve', '--stdio' } })\n"
        "io.stdout:write(vim.json.encode(messages))"
    ))
    assert any("not found" in m and "cmd = {" in m for m in messages), messages


@needs_nvim
def test_commands_exist_after_setup(tmp_path):
    names = run_lua(tmp_path, (
        f"require('rest_lsp').setup({{ cmd = {{ {json.dumps(rest_lsp_executable())}, 'serve', '--stdio' }}, filetypes = {{ 'none' }} }})\n"
        "local names = {}\n"
        "for _, name in ipairs({ 'RestLsp', 'RestLspStatus', 'RestLspReindex', 'RestLspToggle' }) do\n"
        "  names[name] = vim.fn.exists(':' .. name) == 2\n"
        "end\n"
        "io.stdout:write(vim.json.encode(names))"
    ))
    assert names == {"RestLsp": True, "RestLspStatus": True, "RestLspReindex": True, "RestLspToggle": True}


@needs_nvim
def test_checkhealth_reports_the_server_executable(tmp_path):
    lines = run_lua(tmp_path, (
        "require('rest_lsp').setup({ cmd = { '/nonexistent/rest-lsp', 'serve', '--stdio' }, filetypes = { 'none' } })\n"
        "vim.notify = function() end\n"
        "vim.cmd('checkhealth rest_lsp')\n"
        "io.stdout:write(vim.json.encode(vim.api.nvim_buf_get_lines(0, 0, -1, false)))"
    ))
    text = "\n".join(lines)
    assert "rest-lsp" in text and "server executable not found: /nonexistent/rest-lsp" in text
    assert "Neovim 0." in text
