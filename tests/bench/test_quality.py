"""``bench quality``'s pure parts: positions, expected text, metrics, heuristics, summary, plot."""

from __future__ import annotations

import json
import random

import pytest

from rest_lsp.bench import cursor_scores
from rest_lsp.bench import quality

SOURCE = '''"""A module."""

import os


def greet(name):
    message = "hello " + name

    return message.upper()


class Box:
    def __init__(self, value):
        self.value = value
'''


def test_expected_is_the_rest_of_the_line_or_the_next_non_blank_line():
    at = SOURCE.index("hello")  # mid-line
    assert cursor_scores.expected_span(SOURCE, at) == ('hello " + name', SOURCE.index("\n", at), True)
    end = SOURCE.index(" + name") + len(" + name")  # end of the line: the blank line is skipped
    expected, stop, same_line = cursor_scores.expected_span(SOURCE, end)
    assert expected == "    return message.upper()" and not same_line
    assert SOURCE[stop] == "\n" and SOURCE[:stop].endswith("upper()")
    bol = SOURCE.index("return")  # after the indentation
    assert cursor_scores.expected_text(SOURCE, bol) == "return message.upper()"
    assert cursor_scores.expected_span(SOURCE, len(SOURCE)) == ("", len(SOURCE), False)
    assert cursor_scores.expected_text("x = 1\n   \n", 5) == ""  # only blanks follow


def test_the_document_lacks_exactly_the_expected_text():
    at = SOURCE.index("hello")
    doc = cursor_scores.document_at(SOURCE, at)
    assert doc == SOURCE.replace('hello " + name', "", 1)
    end = SOURCE.index(" + name") + len(" + name")
    doc = cursor_scores.document_at(SOURCE, end)
    assert "return message.upper()" not in doc and doc[:end] == SOURCE[:end]
    assert doc[end:].startswith("\n\n\nclass Box")  # the line after the predicted one follows


def test_first_line_exact_match_and_similarity():
    assert cursor_scores.first_line("foo(x)\n    bar") == "foo(x)"
    assert cursor_scores.first_line("\n\n    return x\nmore", same_line=False) == "    return x"
    assert cursor_scores.first_line("\n\n    return x", same_line=True) == ""
    assert cursor_scores.exact_match("return x  ", "return x")
    assert not cursor_scores.exact_match("return  x", "return x")
    assert not cursor_scores.exact_match("", "   ")  # a blank expected text never matches
    assert cursor_scores.edit_similarity("return x", "return x \n") == 1.0
    assert cursor_scores.edit_similarity("", "return x") == 0.0
    assert cursor_scores.edit_similarity("abcd", "abce") == pytest.approx(0.75)  # 2 * 3 / 8
    assert 0 < cursor_scores.edit_similarity("return y", "return x") < 1


def test_starts_new_file():
    prefix = "def f():\n    x = foo("
    assert cursor_scores.starts_new_file("a)\n<|file_sep|>b.py", prefix, "mid")
    assert cursor_scores.starts_new_file("\n#!/usr/bin/env python", prefix, "mid")
    assert cursor_scores.starts_new_file("\n# -*- coding: utf-8 -*-", prefix, "eol")
    assert cursor_scores.starts_new_file("# coding=utf-8\nimport os", prefix, "eol")
    assert not cursor_scores.starts_new_file("# the decoding: step", prefix, "eol")
    assert cursor_scores.starts_new_file('\n"""Module docstring."""', "x = 1", "eol")
    assert cursor_scores.starts_new_file("\nimport os", prefix, "mid")
    assert cursor_scores.starts_new_file("\nfrom a.b import c", prefix, "mid")
    # ordinary code, an indented docstring, an import at a line end, a docstring at the file start
    assert not cursor_scores.starts_new_file("a, b)", prefix, "mid")
    assert not cursor_scores.starts_new_file('\n    """Doc."""', "def f():", "eol")
    assert not cursor_scores.starts_new_file("\nimport os", "import sys", "eol")
    assert not cursor_scores.starts_new_file('"""Doc."""', "", "bol")
    assert not cursor_scores.starts_new_file("", prefix, "mid")


def test_repeats_prefix():
    assert cursor_scores.repeats_prefix("return x", "def f():\n    ret")  # the word being typed again
    assert not cursor_scores.repeats_prefix("urn x", "def f():\n    ret")
    assert cursor_scores.repeats_prefix("x = foo(a)", "    x = foo(")  # the line before the cursor again
    assert cursor_scores.repeats_prefix("\n    y = 2", "    y = 2")  # the same line under itself
    assert not cursor_scores.repeats_prefix("\n    y = 3", "    y = 2")
    assert not cursor_scores.repeats_prefix("name.strip()", "    name = ")  # x = x.f() is not a repeat
    assert not cursor_scores.repeats_prefix("ab", "    ab")  # shorter than 3 characters
    assert not cursor_scores.repeats_prefix("return x", "def f():\n    ")  # nothing before the cursor
    assert not cursor_scores.repeats_prefix("", "    ret")


def test_positions_are_deterministic_in_range_and_mixed():
    text = "\n".join(f"    value_{i} = compute({i}, name='x{i}')" if i % 3 else "" for i in range(60)) + "\n"
    a = cursor_scores.select_positions(text, 10, random.Random("0:f.py"))
    b = cursor_scores.select_positions(text, 10, random.Random("0:f.py"))
    c = cursor_scores.select_positions(text, 10, random.Random("1:f.py"))
    assert a == b and a != c
    assert len(a) == 10 and [p.offset for p in a] == sorted(p.offset for p in a)
    assert sum(p.kind == "mid" for p in a) == 5 and {p.kind for p in a} - {"mid"} <= {"eol", "bol"}
    for p in a:
        assert 0 < p.offset < len(text)
        line_start = text.rfind("\n", 0, p.offset) + 1
        line_end = text.find("\n", p.offset)
        before, after = text[line_start:p.offset], text[p.offset:line_end]
        assert cursor_scores.expected_text(text, p.offset).strip()
        if p.kind == "mid":
            assert before.strip() and after.strip()
        elif p.kind == "eol":
            assert not after and before.strip()
        else:
            assert not before.strip() and after.strip() and before == "    "


def test_short_lines_get_no_position():
    text = "x\n\nab\nabc\n" * 5
    assert cursor_scores.select_positions(text, 10, random.Random(0)) == []
    # one line, nothing after it: a mid-line position only (no next line, no line before)
    only = cursor_scores.select_positions("abcd = 1\n", 3, random.Random(0))
    assert len(only) == 1 and only[0].kind == "mid" and 1 <= only[0].offset < 8


def test_score_summary_table_and_plot(tmp_path):
    at = SOURCE.index("hello")
    good = cursor_scores.score(SOURCE, at, "mid", ['hello " + name'])
    assert good.exact_match and good.edit_similarity == 1.0 and not good.empty
    empty = cursor_scores.score(SOURCE, at, "mid", [])
    assert empty.empty and not empty.exact_match and empty.edit_similarity == 0.0 and not empty.repeats_prefix
    records = []
    for s, kind, latency in ((good, "mid", 0.1), (empty, "eol", 0.3)):
        records.append({"repository": "r", "kind": kind, "latency_s": latency, **s.__dict__})
    row = quality.summarize(records, "r")
    assert row["positions"] == 2 and row["empty"] == 1 and row["empty_rate"] == 0.5
    assert row["exact_match"] == 0.5 and row["edit_similarity"] == 0.5
    assert row["mid_line"] == {"positions": 1, "exact_match": 1.0, "edit_similarity": 1.0}
    assert row["line_end"]["positions"] == 1 and row["line_end"]["exact_match"] == 0.0
    assert row["latency_p50_s"] == 0.3 and row["latency_p90_s"] == 0.3
    json.dumps(row)
    text = quality.table([row])
    assert "| r | 2 | 50.0% (1) | 50.0% | 0.500 |" in text
    png = quality.similarity_plot(records, tmp_path / "s.png", "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_is_registered():
    import argparse

    from rest_lsp.bench import commands as bench

    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "quality", "--workspace", "a", "--workspace", "b", "--held-out", "1"])
    assert args.workspace == ["a", "b"] and args.held_out == 1 and args.positions_per_file == 10
    assert args.max_new_tokens == 64 and args.mode == "rest" and args.out == "bench-out/quality"
