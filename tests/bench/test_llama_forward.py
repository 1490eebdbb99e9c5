"""`rest-lsp bench llama`: its pure parts, and one small run on the real 0.5B GGUF file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rest_lsp.bench.llama_forward import CACHE_TYPES, Setting, parse_settings, setting_name, table
from rest_lsp.errors import ConfigError


def test_settings_are_every_cache_pair_with_every_weight_layout_in_the_order_given():
    got = parse_settings("f16/q8_0, f16/f16", [True, False])
    assert got == [Setting("f16", "q8_0", True), Setting("f16", "q8_0", False),
                   Setting("f16", "f16", True), Setting("f16", "f16", False)]
    assert parse_settings("bf16/f16", [None]) == [Setting("bf16", "f16", None)]
    assert CACHE_TYPES["f16"] == 1 and CACHE_TYPES["q8_0"] == 8 and CACHE_TYPES["bf16"] == 30  # ggml.h's ids


@pytest.mark.parametrize("text", ["f16", "f32/f16", "f16/q4_0", ""])
def test_unknown_or_missing_cache_types_are_refused_with_their_value(text):
    with pytest.raises(ConfigError) as err:
        parse_settings(text, [True])
    assert err.value.values["kv"] == text


def test_table_shows_prefill_cost_ratios_and_exact_rows():
    results = [
        {"setting": setting_name("f16", "q8_0", True), "prefill_tokens_per_s": 211.0, "max_rows": 3,
         "cost_ms": {"1": 20.0, "2": 44.0, "3": 60.0}, "exact": {"2": True, "3": True}},
        {"setting": setting_name("f16", "f16", False), "prefill_tokens_per_s": 280.0, "max_rows": 3,
         "cost_ms": {"1": 25.0, "2": 30.0, "3": 35.0}, "exact": {"2": False, "3": False}},
    ]
    text = table(results, 700)
    assert "| K f16 / V q8_0, repacked | 211 | 20.0 | 2.20, 3.00 | 1, 2, 3 of 3 |" in text
    assert "| K f16 / V f16, file layout | 280 | 25.0 | 1.20, 1.40 | 1 only of 3 |" in text
    assert "prefill tokens/s (700 tokens)" in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_small_run_on_the_real_model_writes_json_table_and_plot(tmp_path):
    from real_model_testing import NAME, require_packaged_model
    from rest_lsp.engine.llama_cpp_build import available

    require_packaged_model()
    ok, why = available()
    if not ok:
        pytest.skip(why)
    out = tmp_path / "llama"
    run = subprocess.run([sys.executable, "-m", "rest_lsp.cli", "bench", "llama", "--model", NAME, "--threads", "2", "--kv",
                          "f16/q8_0,f16/f16", "--context", "300", "--rounds", "1", "--repeats", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=500)
    assert run.returncode == 0, run.stderr[-2000:]
    record = json.loads((out / "llama.json").read_text())
    by_values = {s["values"]: s for s in record["settings"]}
    assert record["context"] == 300
    # the runner's cache (f16 keys, q8_0 values) keeps every row it allows exact; llama.cpp's own
    # f16/f16 does not once a few hundred tokens are cached (flash attention's split path for one row)
    assert all(by_values["q8_0"]["exact"].values()) and by_values["q8_0"]["exact"]
    assert not any(by_values["f16"]["exact"].values())
    assert by_values["q8_0"]["cost_ms"]["1"] > 0 and by_values["q8_0"]["prefill_tokens_per_s"] > 0
    assert (out / "llama.md").read_text().count("| K f16 /") == 2 and (out / "llama.png").stat().st_size > 0
