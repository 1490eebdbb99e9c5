"""Unit tests for the prompt builder and the stop rules (pure, no model)."""

from __future__ import annotations

from rest_lsp.completion.prompt import FimTokens, build_prompt, fit_prefix, split_at
from rest_lsp.completion.stops import cursor_of, cut, finish


def encode_chars(text: str) -> list[int]:
    """A toy tokenizer: one token per character."""
    return [ord(c) for c in text]


def complete(doc: str, generated: str) -> str:
    """Apply the stop rules to ``generated`` at the cursor marked by `|` in ``doc``."""
    prefix, suffix = split_at(doc.replace("|", ""), doc.index("|"))
    return finish(generated, cursor_of(prefix, suffix))


def test_prefix_fits_budget_and_starts_at_a_stepped_line():
    text = "".join(f"line {i}\n" for i in range(200))
    tail, ids = fit_prefix(text, encode_chars, 300)
    assert len(ids) <= 300 and text.endswith(tail)
    assert tail.startswith("line ") and tail.startswith(f"line {int(tail.split()[1])}\n")
    # one more line appended keeps the same start: KV reuse across keystrokes
    tail2, _ = fit_prefix(text + "x = 1", encode_chars, 300)
    assert tail2.startswith(tail.split("\n")[0])


def test_prompt_without_fim_is_prefix_only():
    prompt = build_prompt("def f():\n    ", "\n", encode_chars, 100)
    assert prompt.ids == encode_chars("def f():\n    ") and not prompt.fim


def test_prompt_with_fim_orders_prefix_suffix_middle():
    fim = FimTokens(prefix=1, suffix=2, middle=3)
    prompt = build_prompt("a = ", "\nb = 2\n", encode_chars, 100, fim)
    assert prompt.ids == [1, *encode_chars("a = "), 2, *encode_chars("\nb = 2\n"), 3]
    assert prompt.fim


def test_prompt_stays_within_budget():
    fim = FimTokens(prefix=1, suffix=2, middle=3)
    prompt = build_prompt("x\n" * 500, "y\n" * 500, encode_chars, 64, fim)
    assert len(prompt.ids) <= 64


def test_single_line_mode_stops_at_newline_and_at_text_after_cursor():
    assert complete("print(|)\n", "x + 1)\nmore\n") == "x + 1"
    assert complete("x = foo(|, 2)\n", "a, 2)\n") == "a"


def test_block_end_by_indentation():
    doc = "def f(x):\n    |\n"
    gen = "y = x + 1\n    return y\n\ndef g():\n    pass\n"
    assert complete(doc, gen) == "y = x + 1\n    return y"


def test_block_opener_stops_at_sibling():
    doc = "class A:\n    def f(self):|\n"
    gen = "\n        return 1\n\n    def g(self):\n        return 2\n"
    assert complete(doc, gen) == "\n        return 1"


def test_unbalanced_closing_bracket_stops():
    # the `)` after the cursor already closes the call: the completion must not close it again
    assert complete("foo(|)\n", "a, b)") == "a, b"
    # nothing after the cursor closes it: the completion may
    assert complete("foo(|\n", "a, b)\nbar()") == "a, b)\nbar()"
    # a closer that was never opened
    assert complete("x = |\n", "1]\n") == "1"


def test_stops_before_repeating_the_next_line():
    doc = "def f():\n    |\n    return x\n"
    assert complete(doc, "x = 1\n    return x\n") == "x = 1"


def test_no_repeated_lines():
    doc = "def f():\n    |\n"
    assert complete(doc, "a = 1\n    a = 1\n    a = 1\n") == "a = 1"


def test_streaming_cut_waits_for_complete_lines():
    cursor = cursor_of("def f():\n    ", "\n")
    text, stop = cut("x = 1\n    y", cursor)
    assert not stop and text == "x = 1\n    y"
    text, stop = cut("x = 1\ndef g", cursor)
    assert not stop  # the last line is not complete yet
    text, stop = cut("x = 1\ndef g():\n", cursor)
    assert stop and text == "x = 1"


def test_strings_and_comments_do_not_count_as_brackets():
    assert complete("s = |\n", "')' + \"]\"  # )\n") == "')' + \"]\"  # )"


def test_heal_strips_trailing_whitespace_and_visible_requires_it():
    from rest_lsp.completion.prompt import heal, visible

    assert heal("def f():\n    ") == ("def f():", "\n    ")
    assert heal("x = 1") == ("x = 1", "")
    assert visible("\n    return 1", "\n    ") == "return 1"
    assert visible("\n        deeper", "\n    ") == "    deeper"
    assert visible("\n  ", "\n    ") == ""  # still inside the healed whitespace
    assert visible(" = 2", "\n    ") is None  # diverged from what the user typed
