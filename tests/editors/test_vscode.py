"""The VS Code extension (editors/vscode) as published, and in a real VS Code: code-server driven
by headless Chromium.

The extension is built into a .vsix by its own build (``npm run package``: ``@vscode/vsce``), whose
contents are checked as the Marketplace would take them (manifest, license, icon, changelog, one
bundled script, README links), then installed with ``code-server --install-extension``; the
driver (editors/vscode/e2e/drive.js, playwright-core) types into a Python file, waits until the
ghost text equals the completion that ``rest-lsp complete`` computes independently, dismisses it
(Esc), asks again (Alt+\\: several items), cycles to the second item (Alt+]), accepts it (Tab)
and saves; another run presses the extension's own keys (accept-line, toggle) and reads the
Keyboard Shortcuts editor.
``REST_LSP_SCREENSHOT=docs/vscode-inline.png`` keeps its screenshot; ``REST_LSP_EDITOR_SERVER``
replaces the server executable (debugging).  The tools come from ``scripts/editor-test-deps.sh``;
each missing one skips the test with the command to install it.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from editors_testing import (
    DEPS,
    INSTALL_HINT,
    SOURCE,
    code_server_entry,
    editor_env,
    find_chromium,
    find_node,
    make_workspace,
    needs_editor,
    playwright_core,
    rest_lsp_executable,
)
from lsp_testing import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

EXTENSION = REPO / "editors" / "vscode"
TYPED = "return "  # typed at the end of the file, which then reads SOURCE


def missing_build_tool() -> str | None:
    if find_node() is None:
        return f"node is not installed (install: {INSTALL_HINT} vscode)"
    if not all((EXTENSION / "node_modules" / ".bin" / tool).exists() for tool in ("vsce", "esbuild")):
        return f"the extension's build tools are not installed (cd editors/vscode && npm ci, or {INSTALL_HINT} vscode)"
    return None


def missing_tool() -> str | None:
    if missing_build_tool() is not None:
        return missing_build_tool()
    if code_server_entry() is None:
        return f"code-server is not installed (install: {INSTALL_HINT} vscode)"
    if find_chromium() is None:
        return f"chromium is not installed (install: {INSTALL_HINT} vscode, or apt-get install chromium)"
    if playwright_core() is None:
        return f"playwright-core is not installed (install: {INSTALL_HINT} vscode)"
    return None


MISSING = missing_tool()
needs_code_server = needs_editor(MISSING)
needs_vsce = needs_editor(missing_build_tool())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_logged(cmd: list[str], env: dict, log_path: Path, ready_text: str) -> tuple[subprocess.Popen, threading.Event]:
    """Start ``cmd`` with its output copied to ``log_path``; the event is set when a line contains
    ``ready_text`` or the process ends (a condition to wait on, no polling)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ready = threading.Event()

    def copy() -> None:
        with log_path.open("wb") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if ready_text.encode() in line:
                    ready.set()
        ready.set()  # the process ended: whoever waits looks at proc.poll()

    threading.Thread(target=copy, daemon=True).start()
    return proc, ready


@pytest.fixture(scope="module")
def packaged() -> tuple[Path, str]:
    """The extension built by its own build, ``npm run package`` (vsce), and what it printed."""
    path = EXTENSION / "rest-lsp.vsix"
    path.unlink(missing_ok=True)
    out = subprocess.run(["npm", "run", "package"], cwd=EXTENSION, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)  # a vsce question ("Do you want to continue?") fails at once
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert path.exists()
    return path, out.stdout + out.stderr


@pytest.fixture(scope="module")
def vsix(packaged) -> Path:
    return packaged[0]


def manifest() -> dict:
    return json.loads((EXTENSION / "package.json").read_text())


def key_label(key: str) -> str:
    """``shift+alt+l`` -> ``Shift+Alt+L``, as VS Code and the README write it."""
    return "+".join(part.upper() if len(part) == 1 else part.capitalize() for part in key.split("+"))


@needs_vsce
def test_the_vsix_is_what_the_marketplace_takes(packaged):
    path, log = packaged
    # vsce asked nothing and warned about nothing
    assert "WARNING" not in log and "Do you want to continue" not in log, log[-3000:]
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        pkg = json.loads(z.read("extension/package.json"))
        # publishable: not private; who publishes it, where its source is, its license and icon
        assert "private" not in pkg
        assert pkg["publisher"] and pkg["engines"]["vscode"].startswith("^")
        assert pkg["license"] == "MIT"
        assert urlsplit(pkg["repository"]["url"]).scheme == "https"
        assert pkg["categories"] and len(pkg["keywords"]) >= 5
        # the license the repository has (the extension keeps a copy: vsce takes no file outside it)
        root_license = (REPO / "LICENSE").read_text()
        assert "MIT License" in root_license
        assert (EXTENSION / "LICENSE").read_text() == root_license
        assert z.read("extension/LICENSE.txt").decode() == root_license
        # the icon: a 128x128 PNG
        icon = z.read("extension/" + pkg["icon"])
        assert icon[:8] == b"\x89PNG\r\n\x1a\n" and icon[12:16] == b"IHDR"
        assert struct.unpack(">II", icon[16:24]) == (128, 128)
        # a changelog with this version
        assert f"## {pkg['version']}" in z.read("extension/changelog.md").decode()
        # one bundled script (vscode-languageclient inside), no sources, no node_modules
        scripts = sorted(n for n in names if n.endswith(".js"))
        assert scripts == ["extension/out/extension.js"], scripts
        assert not [n for n in names if n.startswith(("extension/node_modules/", "extension/src/"))]
        assert pkg["main"] == "./out/extension.js"
        bundle = z.read("extension/out/extension.js").decode()
        assert "vscode-languageclient" in bundle or "LanguageClient" in bundle
        assert 'require("vscode")' in bundle
        # README links to the repository point at files that exist (relative links rewritten
        # with the repository's URL, which the Marketplace page needs)
        readme = z.read("extension/readme.md").decode()
    repo_url = pkg["repository"]["url"].removesuffix(".git")
    linked = re.findall(r"\]\((" + re.escape(repo_url) + r"/(?:blob|raw)/HEAD/[^)\s#]+)", readme)
    assert linked, "the README links to nothing in the repository"
    for url in linked:
        rel = posixpath.normpath(url.split("/HEAD/", 1)[1])
        assert (REPO / rel).exists(), f"{url} -> {rel} does not exist"


@needs_vsce
def test_commands_keybindings_and_their_docs():
    pkg = manifest()
    commands = {c["command"]: c["title"] for c in pkg["contributes"]["commands"]}
    bindings = {b["command"]: b for b in pkg["contributes"]["keybindings"]}
    assert set(bindings) == {"restLsp.acceptLine", "restLsp.toggle"}
    assert set(bindings) <= set(commands)
    # every contributed command is registered by the extension's code
    source = (EXTENSION / "src" / "extension.ts").read_text()
    for command in commands:
        assert f"registerCommand('{command}'" in source, command
    # accept-line only while ghost text is shown, in an editor that can take it
    assert "inlineSuggestionVisible" in bindings["restLsp.acceptLine"]["when"]
    assert "!editorReadonly" in bindings["restLsp.acceptLine"]["when"]
    # the README tells the keys and the commands' titles
    readme = (EXTENSION / "README.md").read_text()
    for command, binding in bindings.items():
        assert key_label(binding["key"]) in readme, f"README does not give the key of {command}"
        assert commands[command] in readme, f"README does not name {commands[command]}"
    assert "--install-extension" in readme and "rest-lsp.vsix" in readme


def user_settings(model_dir: Path, corpus: Path, server_path: str) -> dict:
    """VS Code user settings: the extension's settings for the tiny model, and a quiet workbench."""
    return {
        "rest-lsp.serverPath": server_path,
        "rest-lsp.model.name": str(model_dir),
        "rest-lsp.model.threads": 1,
        "rest-lsp.index.corpusRoots": [str(corpus)],
        "rest-lsp.decoding.maxNewTokens": 16,
        "rest-lsp.server.debounceMs": 0,
        "workbench.startupEditor": "none",
        "security.workspace.trust.enabled": False,
        "extensions.ignoreRecommendations": True,
        "extensions.autoUpdate": False,
        "extensions.autoCheckUpdates": False,
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "workbench.tips.enabled": False,
        "window.commandCenter": False,
        "chat.commandCenter.enabled": False,
        # no suggestion widget over the ghost text (Tab would accept the widget's item)
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "editor.suggestOnTriggerCharacters": False,
        "editor.wordBasedSuggestions": "off",
    }


def drive_code_server(tmp_path: Path, vsix: Path, settings: dict, spec: dict) -> tuple[dict, Path]:
    """Install the extension into a fresh code-server, open a workspace whose ops.py is SOURCE
    without TYPED, run the driver with ``spec``; the driver's report and the workspace."""
    home = tmp_path / "home"
    env = editor_env(home)
    user_data, extensions = tmp_path / "user-data", tmp_path / "extensions"
    (user_data / "User").mkdir(parents=True)
    (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=1))
    ws = make_workspace(tmp_path / "ws")
    (ws / "ops.py").write_text(SOURCE[: -len(TYPED)])
    node = find_node()
    entry = str(code_server_entry())
    dirs = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]

    out = subprocess.run([node, entry, *dirs, "--install-extension", str(vsix)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "successfully installed" in out.stdout, out.stdout + out.stderr

    port = free_port()
    server, listening = start_logged(
        [node, entry, "--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--disable-telemetry", "--disable-update-check",
         "--disable-workspace-trust", "--disable-getting-started-override", *dirs, str(ws)],
        env, tmp_path / "code-server.log", "HTTP server listening",
    )
    try:
        assert listening.wait(120) and server.poll() is None, (tmp_path / "code-server.log").read_text()[-3000:]
        report_file = tmp_path / "report.json"
        spec = {
            "url": f"http://127.0.0.1:{port}/?folder={ws}",
            "chromium": find_chromium(),
            "file": "ops.py",
            "path": str(ws / "ops.py"),
            "type": TYPED,
            "out": str(report_file),
            "timeout_ms": 240000,
            **spec,
        }
        drive_env = dict(env, REST_LSP_E2E=json.dumps(spec), NODE_PATH=str(DEPS / "browser" / "node_modules"))
        proc = subprocess.run([node, str(EXTENSION / "e2e" / "drive.js")], env=drive_env, capture_output=True, text=True, timeout=600)
        assert report_file.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(report_file.read_text()), ws
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@needs_code_server
def test_ghost_text_is_the_server_completion_and_tab_accepts_it(tmp_path, vsix, editor_model_dir, editor_corpus, editor_expected):
    expected = editor_expected(invoked=False)[0]
    invoked = editor_expected(invoked=True)
    assert expected and invoked, "the tiny model gave no completion to compare"
    assert len(set(invoked)) >= 2, f"an explicit request must offer two items to cycle through: {invoked}"
    screenshot = tmp_path / "vscode-inline.png"
    report, ws = drive_code_server(tmp_path, vsix, user_settings(editor_model_dir, editor_corpus, rest_lsp_executable()), {
        "expected": expected,
        "expected_invoked": invoked[0],
        "expected_next": invoked[1],
        "screenshot": str(screenshot),
        "bad_server_path": str(tmp_path / "no-such-dir" / "rest-lsp"),
    })
    if os.environ.get("REST_LSP_SCREENSHOT") and screenshot.exists():
        shutil.copy(screenshot, os.environ["REST_LSP_SCREENSHOT"])
    assert report.get("error") is None, json.dumps(report, indent=1, ensure_ascii=False)
    # the ghost text VS Code showed is the server's completion ...
    assert report["ghost"] == expected
    # ... Esc dismissed it, Alt+\ asked again (the first of the invoked items), Alt+] cycled to
    # the second, Tab inserted that one, the file was saved with it, and the acceptance reached
    # the server
    assert report["ghost_invoked"] == invoked[0]
    assert report["ghost_next"] == invoked[1]
    assert (ws / "ops.py").read_text() == SOURCE + invoked[1]
    assert '"accepted_items": 1' in report["status_output"]
    # the status bar shows readiness, then the last latency and tokens per step
    assert "ready" in report["statusbar_ready"]["label"]
    assert "ms" in report["statusbar"]["text"] and "tok/step" in report["statusbar"]["text"]
    # a server path that does not exist is reported with the fix
    assert "rest-lsp.serverPath" in report["not_found_message"]
    assert screenshot.exists()


@needs_code_server
def test_classic_completion_item_inserts_the_whole_completion(tmp_path, vsix, editor_model_dir, editor_corpus, editor_expected):
    invoked = editor_expected(invoked=True)
    settings = user_settings(editor_model_dir, editor_corpus, rest_lsp_executable())
    settings["rest-lsp.server.classicCompletion"] = True
    # ghost text off: VS Code sends an inline request right after the completion request, and the
    # server supersedes the one in flight by the newer one, whatever their kinds (reported)
    settings["editor.inlineSuggest.enabled"] = False
    report, ws = drive_code_server(tmp_path, vsix, settings, {"classic": True})
    assert report.get("error") is None, json.dumps(report, indent=1, ensure_ascii=False)
    # one suggestion per item, labelled with the first line of its text; Enter inserted the first,
    # a multi-line text, as it is (VS Code would otherwise indent its later lines once more)
    assert len(report["suggestions"]) == len(invoked) and "\n" in invoked[0]
    assert (ws / "ops.py").read_text() == SOURCE + invoked[0]


@needs_code_server
def test_accept_line_and_toggle_keys(tmp_path, vsix, editor_model_dir, editor_corpus, editor_expected):
    """The extension's own keys, pressed in code-server: accept-line takes the ghost text's first
    line, toggle turns completions off and on; and the Keyboard Shortcuts editor shows them bound
    to the installed extension's commands and to nothing else."""
    expected = editor_expected(invoked=False)[0]
    assert "\n" in expected, f"the tiny model must write two lines: {expected!r}"
    first_line = expected.split("\n", 1)[0]
    bindings = {b["command"]: b["key"] for b in manifest()["contributes"]["keybindings"]}
    accept_line, toggle = bindings["restLsp.acceptLine"], bindings["restLsp.toggle"]
    control = "shift+alt+i"  # one of VS Code's own: the search must find those
    report, ws = drive_code_server(tmp_path, vsix, user_settings(editor_model_dir, editor_corpus, rest_lsp_executable()), {
        "expected": expected,
        "keys": {
            "accept_line": key_label(accept_line),
            "accepted": TYPED + first_line,
            "toggle": key_label(toggle),
            "bindings": [accept_line, toggle, control],
        },
    })
    assert report.get("error") is None, json.dumps(report, indent=1, ensure_ascii=False)
    assert report["ghost"] == expected
    # accept-line inserted the first line and its line break, nothing more (the rest stayed ghost text)
    assert (ws / "ops.py").read_text() == SOURCE + first_line + "\n"
    # toggle: off (message, status bar, the server's status), then on again
    assert "completions are off" in report["toggled_off"]["label"] and "off" in report["toggled_off"]["text"]
    assert "rest-lsp: state ready (completions off);" in report["status_off"]
    assert "ready" in report["toggled_on"]["label"]
    assert "rest-lsp: state ready;" in report["status_on"]
    # the Keyboard Shortcuts editor: each key is the installed extension's command, and only that
    rows = report["keybindings"]
    for key, command in ((accept_line, "restLsp.acceptLine"), (toggle, "restLsp.toggle")):
        assert len(rows[key]) == 1, rows[key]
        assert f"({command})" in rows[key][0]["command"] and rows[key][0]["source"] == "rest-lsp", rows[key]
    assert "inlineSuggestionVisible" in rows[accept_line][0]["when"]
    assert any(r["source"] == "System" for r in rows[control]), rows[control]
