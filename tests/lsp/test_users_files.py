"""The user's files are never written, and planted secrets reach no completion, query or index file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_testing import make_tiny_model_dir, server_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SECRET = "sk_live_PLANTED_7f3a9c1e5b2d4f60"


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: (size, mtime_ns, sha256)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def planted_workspace(ws: Path) -> None:
    """Code, plus the secret in every kind of file the default rules keep out of the index."""
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "m.py").write_text("def add(a, b):\n    return a + b\n\n\ndef key():\n    return \n")
    (ws / ".env").write_text(f"API_KEY={SECRET}\n")
    (ws / ".env.production").write_text(f"API_KEY={SECRET}\n")
    (ws / "server.pem").write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n")
    (ws / "id_rsa").write_text(f"{SECRET}\n")
    (ws / "credentials.json").write_text(json.dumps({"token": SECRET}))
    (ws / "ignored").mkdir()
    (ws / "ignored" / "leak.py").write_text(f"TOKEN = '{SECRET}'\n")
    (ws / ".gitignore").write_text("ignored/\n")


def test_the_workspace_is_never_written_and_secrets_stay_out(tmp_path):
    model = make_tiny_model_dir(tmp_path / "model")
    ws = tmp_path / "ws"
    planted_workspace(ws)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "c.py").write_text("x = 1\n")
    home = tmp_path / "home"
    env = server_env(home)
    config = tmp_path / "config.toml"
    config.write_text(f'[index]\ncorpus_roots = ["{corpus}"]\n[decoding]\nmax_new_tokens = 8\n')
    before = snapshot(ws)
    cli = [sys.executable, "-m", "rest_lsp.cli"]
    runs = [
        cli + ["index", "build", "--workspace", str(ws), "--tokenizer", str(model), "--config", str(config), "--json"],
        cli + ["complete", str(ws / "pkg" / "m.py"), "6", "12", "--model", str(model), "--config", str(config),
               "--workspace", str(ws), "--json", "--invoked"],
        cli + ["index", "query", "API_KEY=", "--workspace", str(ws), "--tokenizer", str(model), "--config", str(config),
               "--json", "--limit", "1000"],
        cli + ["index", "query", "TOKEN = '", "--workspace", str(ws), "--tokenizer", str(model), "--config", str(config),
               "--json", "--limit", "1000"],
    ]
    outputs = []
    for cmd in runs:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
        assert out.returncode == 0, out.stderr[-2000:]
        outputs.append(out.stdout)
    # nothing in the workspace was created, changed or removed
    assert snapshot(ws) == before
    # everything the commands wrote is under the cache (and config) directories of HOME
    written = [p for p in home.rglob("*") if p.is_file()]
    assert written and all(str(p).startswith(str(home / "cache")) for p in written), written
    # the secret is in no output (completion, queries) ...
    for text in outputs:
        assert SECRET not in text and "sk_live" not in text
    # ... in no index file, neither as text (paths, manifests) nor as token ids
    from indexer.tokens import load_tokenizer

    tok = load_tokenizer(str(model))
    needle = tok.encode(SECRET)
    index_files = [p for p in (home / "cache").rglob("*") if p.is_file()]
    assert any(p.name == "tokens.bin" for p in index_files)
    import numpy as np

    for p in index_files:
        data = p.read_bytes()
        assert SECRET.encode() not in data, p
        if p.name == "tokens.bin":
            ids = np.frombuffer(data, dtype=np.dtype(">u2")).tolist()
            inner = needle[2:-2]  # the secret's middle tokens (its edges merge with neighbours)
            assert not any(ids[i:i + len(inner)] == inner for i in range(len(ids) - len(inner) + 1)), p
    stats = json.loads(outputs[0])
    assert stats["workspace"]["docs"] == 2  # pkg/m.py and .gitignore: no secret file, nothing ignored
