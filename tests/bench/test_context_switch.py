"""The benchmarks' ``--context`` switch: settings, interleaving, the with/without rows and ratios of
``bench quality`` and the servers and latency ratios of ``bench server`` (pure parts, no model)."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest

from rest_lsp.bench import context_settings
from rest_lsp.bench import quality
from rest_lsp.bench import server as server_bench
from rest_lsp.errors import ConfigError


def test_settings_are_parsed_checked_and_interleaved():
    assert context_settings.parse_settings("on,off") == ["on", "off"]
    assert context_settings.parse_settings(" off , on,off") == ["off", "on"]
    for bad in ("", "yes", "on,maybe"):
        with pytest.raises(ConfigError):
            context_settings.parse_settings(bad)
    assert [context_settings.server_value(s) for s in ("on", "off")] == ["auto", "off"]
    assert context_settings.order_at(["on", "off"], 0) == ["on", "off"]
    assert context_settings.order_at(["on", "off"], 1) == ["off", "on"]
    assert context_settings.ratio(0.3, 0.2) == 1.5 and context_settings.ratio(0.3, 0) is None


def test_a_block_budget_is_a_setting_of_its_own():
    assert context_settings.parse_settings("on:128,on,off") == ["on:128", "on", "off"]
    for bad in ("on:", "on:-1", "off:5", "on:x"):
        with pytest.raises(ConfigError):
            context_settings.parse_settings(bad)
    assert context_settings.server_value("on:128") == "auto"
    assert [context_settings.context_tokens_of(s, 384) for s in ("on:128", "on", "off")] == [128, 384, 384]
    assert context_settings.with_context(["on:128", "off", "on"]) == ["on:128", "on"]
    three = ["on:128", "on", "off"]
    assert [context_settings.order_at(three, i) for i in range(3)] == [
        ["on:128", "on", "off"], ["on", "off", "on:128"], ["off", "on:128", "on"]]
    assert {context_settings.order_at(three, i)[0] for i in range(3)} == set(three)  # each goes first alike


def record(repo: str, context: str, exact: bool, latency: float, tokens: int = 0) -> dict:
    return {"repository": repo, "context": context, "kind": "mid", "exact_match": exact,
            "edit_similarity": 1.0 if exact else 0.5, "empty": False, "starts_new_file": False,
            "repeats_prefix": False, "latency_s": latency, "context_tokens": tokens}


def test_quality_rows_per_setting_and_the_ratio_of_exact_match():
    records = [record("a", "on", True, 0.2, 300), record("a", "on", True, 0.2, 200), record("a", "off", True, 0.1),
               record("a", "off", False, 0.1), record("b", "on", False, 0.4, 100), record("b", "off", False, 0.3)]
    rows = quality.summaries(records, ["a", "b"], ["on", "off"])
    assert [(r["repository"], r["context"], r["positions"]) for r in rows] == [
        ("a", "on", 2), ("a", "off", 2), ("b", "on", 1), ("b", "off", 1), ("all", "on", 3), ("all", "off", 3)]
    assert rows[0]["with_block"] == 2 and rows[0]["context_tokens_p50"] == 300 and rows[1]["with_block"] == 0
    ratios = quality.context_ratios(rows)
    a = ratios[0]
    assert (a["repository"], a["exact_match_on"], a["exact_match_off"], a["exact_match_ratio"]) == ("a", 1.0, 0.5, 2.0)
    assert a["edit_similarity_ratio"] == round(1.0 / 0.75, 3) and a["latency_p50_ratio"] == 2.0
    assert ratios[1]["exact_match_ratio"] is None  # nothing matched without: no ratio
    json.dumps({"summary": rows, "context_ratio": ratios})
    text = quality.table(rows) + "\n" + quality.ratio_table(ratios)
    assert "| a (context on) | 2 |" in text and "| a | on | 2 | 100.0% / 50.0% | 2.00x |" in text and "| n/a |" in text
    # one setting only: one row per repository, no ratio
    single = quality.summaries([r for r in records if r["context"] == "on"], ["a"], ["on"])
    assert len(single) == 1 and quality.context_ratios(single) == []


def test_each_block_budget_gets_its_ratio_to_off():
    records = [record("a", "on:64", False, 0.1, 60), record("a", "on", True, 0.3, 300), record("a", "off", False, 0.1),
               record("a", "on:64", True, 0.1, 50), record("a", "on", True, 0.3, 280), record("a", "off", True, 0.1)]
    rows = quality.summaries(records, ["a"], ["on:64", "on", "off"])
    ratios = quality.context_ratios(rows)
    assert [(r["context"], r["exact_match_ratio"], r["latency_p50_ratio"]) for r in ratios] == [
        ("on:64", 1.0, 1.0), ("on", 2.0, 3.0)]
    assert "| a | on:64 | 2 | 50.0% / 50.0% | 1.00x |" in quality.ratio_table(ratios)


def test_quality_command_compares_both_settings_by_default():
    from rest_lsp.bench import commands as bench

    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "quality", "--workspace", "a"])
    assert args.context == "on,off" and args.context_tokens == 128
    args = parser.parse_args(["bench", "server", "--workspace", "a", "--context", "on,off", "--modes", "rest"])
    assert (args.context, args.modes, args.context_tokens) == ("on,off", "rest", 128)


def fake_servers(labels) -> dict:
    return {label: SimpleNamespace(options={"decoding": {"mode": mode},
                                            "server": {"context": context_settings.server_value(c)}})
            for label, mode, c in labels}


def test_server_labels_keep_the_old_names_for_one_setting():
    one = server_bench.server_labels(["rest", "greedy"], ["on"])
    assert one == [("rest", "rest", "on"), ("greedy", "greedy", "on")]
    both = server_bench.server_labels(["rest"], ["on", "off"])
    assert both == [("rest context on", "rest", "on"), ("rest context off", "rest", "off")]
    assert server_bench.parse_modes("rest, greedy,rest") == ["rest", "greedy"]
    with pytest.raises(SystemExit):
        server_bench.parse_modes("beam")


def test_server_ratios_rest_over_greedy_and_with_over_without_the_block():
    labels = server_bench.server_labels(["rest", "greedy"], ["on", "off"])
    servers = fake_servers(labels)
    assert server_bench._mode_pairs(servers) == [("rest context on", "greedy context on"),
                                                  ("rest context off", "greedy context off")]
    latency = {"rest context on": {"p50": 110.0}, "greedy context on": {"p50": 200.0},
               "rest context off": {"p50": 100.0}, "greedy context off": {"p50": 180.0}}
    cold = {k: {"p50": v["p50"] * 3} for k, v in latency.items()}
    out = server_bench.ratios(latency, cold, servers)
    assert out["p50_ratio_rest_over_greedy"] == 0.55
    greedy = round(200 / 180, 3)
    assert out["p50_ratio_context_on_over_off"] == {"rest": {"keystroke": 1.1, "first": 1.1},
                                                    "greedy": {"keystroke": greedy, "first": greedy}}
    one = server_bench.ratios({"rest": {"p50": 1.0}}, {"rest": {"p50": 2.0}}, fake_servers([("rest", "rest", "on")]))
    assert one == {}  # one server: nothing to compare


def test_server_table_reports_the_context_ratios():
    record = {
        "latency_ms": {"rest context on": {"p50": 110, "p95": 300}, "rest context off": {"p50": 100, "p95": 280}},
        "cold_latency_ms": {"rest context on": {"p50": 400, "p95": 900}, "rest context off": {"p50": 380, "p95": 850}},
        "tokens_per_step": {"rest context on": 2.0, "rest context off": 2.1},
        "prefilled_tokens_p50": {"rest context on": {"first": 900, "keystroke": 2}},
        "identical_items_share": {}, "context_tokens_p50": {"rest context on": 350, "rest context off": 0},
        "p50_ratio_context_on_over_off": {"rest": {"keystroke": 1.1, "first": 1.053}},
        "typing": {"edits_per_s": 20, "last_request_p95_ms": 1, "idle_p95_ms": 1, "ratio_p95": 1.0,
                   "rss_mb_before": 1, "rss_mb_after": 1},
        "kv_reuse_after_one_char_edit": [{"prompt_tokens": 900, "reused_tokens": 899, "prefill_tokens": 1}],
        "kv_reuse_by_server": {"rest context off": [{"prompt_tokens": 600, "reused_tokens": 598, "prefill_tokens": 2}]},
    }
    text = server_bench.table(record)
    assert "| rest context on | 110 / 300 | 400 / 900 | 2.0 | 900 / 2 |" in text
    assert "p50 with / without the context block, rest: 1.1 after a keystroke, 1.053 for first requests" in text
    assert "context block tokens p50: rest context on 350" in text
    assert "KV reuse after a one-character edit, rest context off (prompt / reused / prefilled tokens): " \
           "600/598/2" in text
    assert "900/899/1" not in text  # the main server's trials are in the by-server lines, not twice
