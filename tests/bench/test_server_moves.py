"""The server benchmark's moves (pure parts, no server): the edits a move makes and its report."""

from __future__ import annotations

import random
from pathlib import Path

from rest_lsp.bench.server_moves import first_line, line_spans, move_target, moves_table, summary, without_line
from rest_lsp.bench.server_table import keystroke_record

TEXT = "def f(x):\n    y = x + 1\n\n    # note\n    return y\n"


def test_a_line_is_begun_again_after_its_indentation():
    text, cursor, removed = without_line(TEXT, 1)
    assert removed == "y = x + 1" and cursor == TEXT.index("y = x")
    assert text == "def f(x):\n    \n\n    # note\n    return y\n"
    assert line_spans("a\n  b")[1] == (2, 4, 5)


def test_a_move_goes_to_another_line_of_code_within_reach():
    rng = random.Random(0)
    targets = {move_target(TEXT, 1, 3, rng) for _ in range(50)}
    assert targets == {0, 4}  # not itself, not the blank line, not the comment
    assert move_target(TEXT, 0, 0, rng) is None


def test_the_exact_match_compares_the_first_line_shown():
    assert first_line(["y = x + 1\n    z = 2"]) == "y = x + 1"
    assert first_line([]) == "" and first_line([""]) == ""


def test_the_report_has_a_row_per_server():
    raw = {"moved_s": [0.5, 0.7, 0.6], "opened_s": [4.0, 5.0, 6.0], "prefilled": [70, 66, 900], "reused": [700, 720, 0],
           "prompt": [780, 790, 905], "exact": [True, False, True], "warm_wait_s": [3.0, None, 4.0]}
    row = summary(raw)
    assert row["moved_ms"]["p50"] == 600.0 and row["prefilled_p50"] == 70 and row["exact_match"] == 0.667
    assert row["warmed"] == "2/3" and row["warm_wait_s_p50"] == 3.5
    lines = moves_table({"trials": 3, "move_lines": 20, "pause_s": 15, "by_server": {"rest": row}})
    assert any(line.startswith("| rest | 600.0 / 700.0 | 5000.0 / 6000.0 | 70 / 700 / 790 | 0.667 | 2/3 (3.5) |")
               for line in lines)
    assert moves_table({}) == []


def test_the_typed_lines_report_has_a_row_per_server():
    from rest_lsp.bench.server_lines import lines_table

    lines = lines_table({"lines": 2, "chars": 12, "by_server": {"rest": {
        "keystrokes": 20, "p50_ms": 30.0, "p95_ms": 1500.0, "typed_through": 0.6, "decoded_p50_ms": 1200.0}}})
    assert "| rest | 20 | 30.0 / 1500.0 | 0.6 | 1200.0 |" in lines
    assert lines_table({}) == []


def test_a_keystroke_record_says_what_the_latency_was_spent_on():
    last = {"type_through": False, "new_tokens": 12, "steps": 9, "stop_reason": "stop"}
    record = keystroke_record(Path("/w/a.py"), 40, 0.3456, last, ["x = 1", "x = 2"])
    assert record == {"file": "/w/a.py", "offset": 40, "latency_ms": 345.6, "type_through": False,
                      "new_tokens": 12, "steps": 9, "stop_reason": "stop", "shown": "x = 1"}
    assert keystroke_record(Path("/w/a.py"), 40, 0.01, {"type_through": True}, [])["shown"] == ""
