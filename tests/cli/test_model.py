"""``rest-lsp model info`` and ``model eval``, and the measurement helpers behind them."""

from __future__ import annotations

import json

import pytest

from rest_lsp.bench import model_eval
from rest_lsp.cli import main
from rest_lsp.engine.model import resolve_device, resolve_dtype

INFO_FIELDS = {"name", "kind", "why", "source", "model_type", "parameters", "device", "dtype", "embedded"}


def test_model_info_json(capsys):
    assert main(["model", "info", "--json", "--threads", "1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert INFO_FIELDS <= info.keys()
    assert info["kind"] == "embedded" and "REST_LSP_DEFAULT_MODEL" in info["why"]
    device = resolve_device("auto")  # model.device and model.dtype are "auto": what this machine has
    assert info["device"] == str(device)
    assert info["dtype"] == str(resolve_dtype("auto", device)).removeprefix("torch.")
    assert info["parameters"] == info["embedded"]["parameters"]


def test_model_info_text(capsys):
    assert main(["model", "info", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "embedded" in out


def test_missing_model_is_an_error_exit(capsys, tmp_path):
    assert main(["model", "info", "--model", str(tmp_path / "nope")]) != 0
    assert "nope" in capsys.readouterr().err


def test_unknown_eval_part_is_a_config_error(capsys):
    assert main(["model", "eval", "--parts", "loss,vibes"]) == 2
    assert "vibes" in capsys.readouterr().err


@pytest.mark.slow
def test_model_eval_json_on_two_problems(capsys):
    argv = ["model", "eval", "--json", "--limit", "2", "--max-new-tokens", "16", "--parts", "humaneval",
            "--threads", "1", "--samples"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    h = result["humaneval"]
    assert h["problems"] == 2 and len(h["samples"]) == 2
    assert 0 <= h["pass_at_1"] <= h["parse_rate"] <= 1


PROMPT = 'def f(x):\n    """Double x."""\n'


def test_function_body_stops_at_column_zero():
    assert model_eval.function_body("    return 2 * x\n\ndef g():\n    pass\n") == "    return 2 * x\n\n"
    assert model_eval.function_body("    return x\n") == "    return x\n"


def test_adds_statements_ignores_a_docstring_alone():
    assert not model_eval.adds_statements(PROMPT + "\n", "f")
    assert model_eval.adds_statements(PROMPT + "    return 2 * x\n", "f")
    assert not model_eval.adds_statements(PROMPT + "    return (\n", "f")


def test_passes_tests_runs_the_program():
    assert model_eval.passes_tests(PROMPT + "    return 2 * x\nassert f(2) == 4\n", timeout=20)
    assert not model_eval.passes_tests(PROMPT + "    return x\nassert f(2) == 4\n", timeout=20)
