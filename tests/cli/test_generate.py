"""``rest-lsp generate`` end to end on a tiny saved model (no network, no embedded weights)."""

from __future__ import annotations

import json

import pytest

from engine_testing import save_tiny, single_thread  # noqa: F401
from rest_lsp.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_cli")
    save_tiny(path)
    return path


@pytest.mark.parametrize("mode", ["greedy", "rest"])
def test_generate_json(model_dir, tmp_path, capsys, mode):
    prompt = tmp_path / "p.txt"
    prompt.write_text("t1 t2 t3 t4 t1 t2 t3 t4 t1 t2")
    code = main(["generate", "--prompt-file", str(prompt), "--model", str(model_dir), "--device", "cpu",
                 "--mode", mode, "--max-new-tokens", "12", "--budget", "8", "--index", "none", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stats"]["mode"] == mode and out["stats"]["steps"] >= 1
    assert set(out["stats"]) >= {"tokens_per_step", "tokens_per_s", "draft_s", "forward_s"}


def test_generate_modes_agree_and_text_output(model_dir, tmp_path, capsys):
    prompt = tmp_path / "p.txt"
    prompt.write_text("t5 t6 t7 t5 t6")
    texts = []
    for mode in ("greedy", "rest"):
        assert main(["generate", "--prompt-file", str(prompt), "--model", str(model_dir), "--device", "cpu",
                     "--mode", mode, "--max-new-tokens", "10", "--index", "none", "--budget", "4"]) == 0
        captured = capsys.readouterr()
        texts.append(captured.out)
        assert "tokens/step" in captured.err and "retrieval" in captured.err
    assert texts[0] == texts[1]


def test_generate_reports_a_missing_model(tmp_path, capsys):
    prompt = tmp_path / "p.txt"
    prompt.write_text("x")
    assert main(["generate", "--prompt-file", str(prompt), "--model", str(tmp_path / "none")]) == 1
    assert "cannot load model" in capsys.readouterr().err
