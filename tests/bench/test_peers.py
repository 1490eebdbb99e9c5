"""The pure parts of `rest-lsp bench peers` and of the server benchmark's report."""

from __future__ import annotations

import pytest

from rest_lsp.bench.peers import PeerRun, agreement, summarize, table


def test_agreement_is_the_share_before_the_first_difference():
    assert agreement([1, 2, 3], [1, 2, 3]) == 1.0
    assert agreement([1, 2, 9, 9], [1, 2, 3, 4]) == 0.5
    assert agreement([], [1, 2]) == 0.0
    assert agreement([1, 2], [1, 2, 3, 4]) == 0.5  # stopped early: half the reference reproduced


def test_summary_rates_decoding_after_the_first_token_and_compares_with_the_first_method():
    runs = [
        PeerRun("ref", 0, [1, 2, 3, 4, 5], wall_s=1.0, first_token_s=0.2),
        PeerRun("ours", 0, [1, 2, 3, 4, 5], wall_s=0.6, first_token_s=0.2),
        PeerRun("ref", 1, [7, 8, 9], wall_s=1.0, first_token_s=0.5),
        PeerRun("ours", 1, [7, 0, 0], wall_s=0.5, first_token_s=0.1),
    ]
    rows = {r["method"]: r for r in summarize(runs, ["ref", "ours"])}
    assert rows["ref"]["identical"] == 1.0 and rows["ref"]["vs_llama_cpp_greedy"] == 1.0
    assert rows["ours"]["identical"] == 0.5
    assert rows["ours"]["agreement"] == pytest.approx((1.0 + 1 / 3) / 2)
    # decoding: tokens after the first over the time after the first
    assert rows["ref"]["decode_tokens_per_s"] == pytest.approx(6 / (0.8 + 0.5))
    assert rows["ours"]["decode_tokens_per_s"] == pytest.approx(6 / (0.4 + 0.4))
    assert rows["ours"]["vs_llama_cpp_greedy"] > 1.0
    assert rows["ours"]["tokens_per_s"] == pytest.approx(8 / 1.1)
    text = table(list(rows.values()), {"read_gb_per_s": 20.0, "matmul_gflops": 100.0, "weight_bytes": 5e8,
                                       "one_token_bound_tokens_per_s": 40.0, "rows_16_bound_tokens_per_s": 90.0})
    assert "| ours |" in text and "<= 40 tokens/s" in text


def test_server_report_shows_prefilled_tokens_of_first_requests_and_keystrokes():
    from rest_lsp.bench.server_table import table as server_table

    record = {
        "latency_ms": {"rest": {"p50": 300, "p95": 900}, "greedy": {"p50": 310, "p95": 950}},
        "cold_latency_ms": {"rest": {"p50": 1200, "p95": 3000}, "greedy": {"p50": 1250, "p95": 3100}},
        "tokens_per_step": {"rest": 1.1, "greedy": 1.0},
        "prefilled_tokens_p50": {"rest": {"first": 700, "keystroke": 66}, "greedy": {"first": 701, "keystroke": 67}},
        "p50_ratio_rest_over_greedy": 0.97, "cold_p50_ratio_rest_over_greedy": 0.96, "identical_items_share": 1.0,
        "typing": {"edits_per_s": 20, "last_request_p95_ms": 1000, "idle_p95_ms": 900, "ratio_p95": 1.1,
                   "rss_mb_before": 800, "rss_mb_after": 810},
        "kv_reuse_after_one_char_edit": [],
    }
    text = server_table(record)
    assert "| rest | 300 / 900 | 1200 / 3000 | 1.1 | 700 / 66 |" in text
