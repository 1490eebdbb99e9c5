"""``rest-lsp complete`` end to end in a subprocess, with a tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lsp_testing import make_tiny_model_dir, server_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_complete_prints_json_items_and_stats(tmp_path):
    model = make_tiny_model_dir(tmp_path / "model", steer=("a", "b"))  # writes a run of a/b tokens
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "m.py").write_text("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    \n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "c.py").write_text("x = 1\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[index]\ncorpus_roots = ["{corpus}"]\n[decoding]\nmax_new_tokens = 8\n')
    out = subprocess.run(
        [sys.executable, "-m", "rest_lsp.cli", "complete", str(ws / "m.py"), "6", "5",
         "--model", str(model), "--config", str(config), "--workspace", str(ws), "--json"],
        capture_output=True, text=True, env=server_env(tmp_path / "home"), timeout=170,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["items"] and all(set(item) <= {"a", "b"} for item in result["items"])
    assert 1 <= result["stats"]["new_tokens"] <= 8
    assert result["prompt_tokens"] > 0


def test_complete_reports_a_bad_position(tmp_path):
    f = tmp_path / "one.py"
    f.write_text("x = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "rest_lsp.cli", "complete", str(f), "40", "1", "--model", str(tmp_path / "none")],
        capture_output=True, text=True, env=server_env(tmp_path / "home"), timeout=60,
    )
    assert out.returncode != 0
    assert "rest-lsp: error: line 40 is outside the file" in out.stderr
