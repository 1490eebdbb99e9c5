"""Faults and security of the running daemon.

- Model failures: a model that fails to load, a tokenizer that does not fit the model, out of
  memory while decoding: a clear message to the editor, the daemon stays up, and it recovers when
  the config is fixed (``workspace/didChangeConfiguration`` reloads the model).
- Secrets and git-ignored files never enter any tier, open buffers included; files outside the
  workspace folders are refused for indexing (saves, watched-file events, buffers).
- Sockets: ``--tcp`` listens on loopback only, and that is the daemon's only listening socket;
  over stdio it has none.  ``trust_remote_code`` is off and pickle weights are refused by default.
- kill -9 of the daemon during index builds and refreshes (``rest_lsp.bench.stress.crash``; the
  100-trial run is ``rest-lsp bench crash``, figures in ``BENCHMARKS.md``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lsp_testing import EMBEDDED, TOKENIZER_FILES, init_options, server_env
from rest_lsp.bench.stress.client import RawClient, inline_params, serve_argv

pytestmark = [pytest.mark.timeout(240)]

SECRET = "sk_live_FAULTS_9d8c7b6a5f4e3d2c"
TEXT = "def square(x):\n    return "

#: a daemon whose engine raises torch's out-of-memory error while the file FLAG exists
OOM_WRAPPER = textwrap.dedent('''
    import os, sys
    import torch
    from rest_lsp.engine import engine as engine_mod
    real = engine_mod.Engine.complete
    def complete(self, *args, **kwargs):
        if os.path.exists(os.environ["REST_LSP_TEST_OOM_FLAG"]):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, *args, **kwargs)
    engine_mod.Engine.complete = complete
    from rest_lsp.cli import main
    sys.exit(main(["serve", "--stdio"]))
''')


# the tiny steered model (" x"/" y") and corpus: the editor tests' session fixtures (conftest.py)


def mismatched_model(path: Path) -> Path:
    """A model with a 64-token vocabulary next to the embedded 16k tokenizer."""
    import shutil

    import transformers

    path.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (EMBEDDED / name).exists():
            shutil.copy(EMBEDDED / name, path / name)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, bos_token_id=None, eos_token_id=0)
    transformers.LlamaForCausalLM(config).save_pretrained(path, safe_serialization=True)
    return path


def listening_sockets(pid: int) -> list[str]:
    """``host:port`` of every listening TCP socket the process owns (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    found.append(cols[1])
    return found


@pytest.mark.slow
def test_model_failures_are_reported_and_the_daemon_recovers(tmp_path, editor_model_dir, editor_corpus):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "m.py").write_text("def add(a, b):\n    return a + b\n")
    script = tmp_path / "oom_serve.py"
    script.write_text(OOM_WRAPPER)
    flag = tmp_path / "oom"
    env = {**server_env(tmp_path / "home"), "REST_LSP_TEST_OOM_FLAG": str(flag)}
    client = RawClient([sys.executable, str(script)], env=env, stderr_path=tmp_path / "stderr.log")
    try:
        missing = tmp_path / "no-such-model"
        client.initialize(ws, init_options(missing, editor_corpus))
        line = client.wait_ready()
        assert "cannot load model" in line and str(missing) in line, line
        client.wait_log(lambda m: "cannot load model" in m)
        assert any(n["method"] == "window/showMessage" and n["params"]["type"] == 1 for n in client.notifications)
        uri = (ws / "t.py").as_uri()
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}})
        assert client.call("textDocument/inlineCompletion", inline_params(uri, 1, 11))["result"]["items"] == []
        # a tokenizer that does not fit the model: named as such
        bad = mismatched_model(tmp_path / "mismatch")
        client.notify("workspace/didChangeConfiguration", {"settings": {"model": {"name": str(bad)}}})
        line = client.wait_log(lambda m: "tokenizer mismatch" in m)
        assert "64" in line, line
        # the config is fixed: the model loads, completions come back
        client.notify("workspace/didChangeConfiguration", {"settings": {"model": {"name": str(editor_model_dir)}}})
        client.wait_log(lambda m: m.startswith("rest-lsp ready"))
        good = client.call("textDocument/inlineCompletion", inline_params(uri, 1, 11))["result"]["items"]
        assert good and good[0]["insertText"].strip()
        # out of memory while decoding: an error message, an empty result, the daemon goes on
        flag.write_text("1")
        uri = (ws / "t2.py").as_uri()  # a new document: not the result shared from the last request
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}})
        assert client.call("textDocument/inlineCompletion", inline_params(uri, 1, 11))["result"]["items"] == []
        message = client.wait_log(lambda m: "out of memory" in m)
        assert "max_new_tokens" in message and "device" in message
        flag.unlink()
        again = client.call("textDocument/inlineCompletion", inline_params(uri, 1, 11))["result"]["items"]
        assert [i["insertText"] for i in again] == [i["insertText"] for i in good]
        status = client.call("workspace/executeCommand", {"command": "rest-lsp.status"})["result"]
        assert status["state"] == "ready" and status["requests"]["failed"] == 1
        assert listening_sockets(client.pid) == []  # stdio: no socket at all
        assert client.stop() == 0
    finally:
        client.kill()


def plant(ws: Path, outside: Path) -> None:
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "m.py").write_text("def add(a, b):\n    return a + b\n")
    (ws / ".gitignore").write_text("ignored/\n")
    (ws / "ignored").mkdir()
    (ws / "ignored" / "leak.py").write_text(f"TOKEN = '{SECRET}'\n")
    (ws / ".env").write_text(f"API_KEY={SECRET}\n")
    outside.mkdir()
    (outside / "other.py").write_text(f"OUTSIDE_TOKEN = '{SECRET}'\n")


@pytest.mark.slow
def test_secrets_ignored_and_outside_files_enter_no_tier(tmp_path, editor_model_dir, editor_corpus):
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    plant(ws, outside)
    home = tmp_path / "home"
    client = RawClient(serve_argv(), env=server_env(home), stderr_path=tmp_path / "stderr.log")
    try:
        client.initialize(ws, init_options(editor_model_dir, editor_corpus))
        assert client.wait_ready().startswith("rest-lsp ready")
        # the editor opens the secret, the ignored file and a file outside the workspace ...
        for path in (ws / ".env", ws / "ignored" / "leak.py", outside / "other.py"):
            client.notify("textDocument/didOpen", {"textDocument": {"uri": path.as_uri(), "languageId": "python",
                                                                    "version": 1, "text": path.read_text()}})
            client.notify("textDocument/didSave", {"textDocument": {"uri": path.as_uri()}})
        client.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": (outside / "other.py").as_uri(), "type": 1}]})
        # ... and a normal buffer, which does enter (the control: the query would see a leak)
        control = ws / "pkg" / "open.py"
        client.notify("textDocument/didOpen", {"textDocument": {"uri": control.as_uri(), "languageId": "python",
                                                                "version": 1, "text": "CONTROL_MARKER = 'visible_value'\n"}})
        def seen(text: str) -> list[dict]:
            return client.call("workspace/executeCommand", {"command": "rest-lsp.query", "arguments": [text]})["result"]["candidates"]
        client.wait(lambda: any("visible_value" in c["text"] for c in seen("CONTROL_MARKER = '")), 60, "the control buffer")
        outputs = []
        for prefix in ("API_KEY=", "TOKEN = '", "OUTSIDE_TOKEN = '", "sk_live_"):
            outputs.append(json.dumps(seen(prefix)))
        uri = (ws / "pkg" / "t.py").as_uri()
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "API_KEY="}})
        outputs.append(json.dumps(client.call("textDocument/inlineCompletion", inline_params(uri, 0, 8, invoked=True))))
        status = client.call("workspace/executeCommand", {"command": "rest-lsp.status"})["result"]
        assert client.stop() == 0
    finally:
        client.kill()
    for text in outputs:
        assert SECRET not in text and "sk_live" not in text
    assert status["index"]["workspace"]["docs"] == 2  # pkg/m.py and .gitignore
    for p in (home / "cache").rglob("*"):
        if p.is_file():
            assert SECRET.encode() not in p.read_bytes(), p


@pytest.mark.slow
def test_tcp_listens_on_loopback_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = subprocess.run([sys.executable, "-m", "rest_lsp.cli", "serve", "--tcp", f"0.0.0.0:{port}"],
                             capture_output=True, text=True, env=server_env(tmp_path), timeout=60)
    assert refused.returncode == 2 and "loopback" in refused.stderr
    proc = subprocess.Popen([sys.executable, "-m", "rest_lsp.cli", "serve", "--tcp", f":{port}"],
                            stderr=subprocess.PIPE, env=server_env(tmp_path))
    try:
        assert b"listening on 127.0.0.1" in proc.stderr.readline()
        conn = None
        for _ in range(600):  # each try blocks up to 0.1 s on connect: bounded, no sleep
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=0.1)
                break
            except OSError:
                conn = None
                if proc.poll() is not None:
                    break
        assert conn is not None
        try:  # checked while connected: the daemon serves one client and stops when it leaves
            assert listening_sockets(proc.pid) == [f"0100007F:{port:04X}"]  # 127.0.0.1:port, nothing else
        finally:
            conn.close()
    finally:
        proc.kill()
        proc.wait()


def test_remote_code_off_and_pickle_weights_refused(tmp_path):
    import torch
    import transformers

    from rest_lsp.config.schema import Config
    from rest_lsp.engine.model import load_model
    from rest_lsp.errors import ModelError

    assert Config().model.trust_remote_code is False
    path = mismatched_model(tmp_path / "pickled")
    model = transformers.LlamaForCausalLM.from_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")  # the same weights as a pickle
    (path / "model.safetensors").unlink()
    cfg, _ = Config.from_dict({"model": {"name": str(path)}})
    with pytest.raises(ModelError):
        load_model(cfg.model)


@pytest.mark.slow
def test_kill_9_during_builds_and_refreshes_leaves_a_loadable_index(tmp_path, editor_model_dir):
    """Two trials of ``rest-lsp bench crash`` (which runs 100): every index opens with full checksums
    after every kill, and the start after the last kill reaches ready with no repair by hand."""
    from rest_lsp.bench.stress.crash import run_trials

    ws = tmp_path / "src"
    ws.mkdir()
    for i in range(8):
        (ws / f"m{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n\n" * 200)
    record = run_trials(ws, trials=2, seed=1, model=str(editor_model_dir), first_window=6.0)
    assert record["every_index_valid"] and record["final_start_ready"]
    assert len(record["results"]) == 3 and record["results"][-1]["opened"] >= 1
