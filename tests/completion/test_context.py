"""The context block's pure parts: names near the cursor, cutting lines, ranking, dedupe, the token
budget, the Qwen repository format and commented headers, the prompt's budget, and the session
rule that keeps a block while the user types on (no model)."""

from __future__ import annotations

from rest_lsp.completion import fim
from rest_lsp.completion.context import (EMPTY, Snippet, choose_block, comment_marker, dedupe, defined_names,
                                         definition_lines, fill, format_block, is_definition, query_names, rank,
                                         window_lines)
from rest_lsp.completion.context_session import ContextSession, Place, continues, place_of
from rest_lsp.completion.prompt import FILE_FLOOR_SHARE, PromptContext, build_prompt, context_cap
from rest_lsp.config.schema import Config

QWEN_VOCAB = {"a": 0, "<|endoftext|>": 1000, "<|fim_prefix|>": 1001, "<|fim_middle|>": 1002,
              "<|fim_suffix|>": 1003, "<|repo_name|>": 1004, "<|file_sep|>": 1005}


def encode_chars(text: str) -> list[int]:
    """A toy tokenizer: one token per character."""
    return [ord(c) for c in text]


def snip(path: str, text: str, score: float, start: int = 0, end: int = 10, kind: str = "match") -> Snippet:
    return Snippet(path, text, score, kind, doc=f"workspace:{path}", start=start, end=end)


# --- names near the cursor ---------------------------------------------------------------------
def test_query_names_are_the_nearest_identifiers_worth_looking_up():
    prefix = ("import os\n\ndef far_away():\n    pass\n"
              "result = compute_total(items, tax_rate)\nfor item in items:\n    self.render_row(item, widget)\n"
              "    retu")
    names = query_names(prefix, defined={"widget"})
    # nearest first; no keywords (for, in), builtins (print), defined names, 'self', the word being typed
    assert names == ["item", "render_row", "items", "tax_rate", "compute_total", "result"]
    assert query_names(prefix, limit=2) == ["widget", "item"]
    assert "far_away" not in query_names(prefix)  # beyond the last four lines


def test_defined_names_and_definition_lines():
    text = "class Shape:\n    def area(self):\n        pass\nasync def fetch(url):\n    ...\nLIMIT: int = 3\nx == y\n"
    assert defined_names(text) == {"Shape", "area", "fetch", "LIMIT"}
    assert is_definition("    def area(self):", "area") and is_definition("LIMIT = 4", "LIMIT")
    assert not is_definition("    LIMIT = 4", "LIMIT")  # an assignment counts at the line start only
    assert not is_definition("    return area(self)", "area") and not is_definition("LIMIT == 4", "LIMIT")
    assert not is_definition("def area_of(x):", "area")


# --- cutting lines -----------------------------------------------------------------------------
def test_window_lines_keep_whole_lines_around_the_match():
    text = "ut line\nl1\nl2\nl3 MATCH here\nl4\nl5\nl6\npartial"
    at = text.index("MATCH")
    assert window_lines(text, at, at + 5, 1, 2, False, False) == "l2\nl3 MATCH here\nl4\nl5\n"
    # the cut first and last lines are left out; at the document's ends they are whole
    assert window_lines(text, at, at + 5, 9, 9, False, False) == "l1\nl2\nl3 MATCH here\nl4\nl5\nl6\n"
    assert window_lines(text, at, at + 5, 9, 9, True, True) == text + "\n"
    assert window_lines("\n\nl1 M\n\n\nl2\n", 4, 5, 5, 0, True, True) == "l1 M\n"  # blank edges dropped


def test_definition_lines_stop_at_the_dedent_or_the_limit():
    text = "def f(x):\n    y = x\n\n    return y\nz = 1\n"
    assert definition_lines(text, True, 12) == "def f(x):\n    y = x\n\n    return y\n"
    assert definition_lines(text, True, 2) == "def f(x):\n    y = x\n"
    assert definition_lines("def g():\n    return 1\n    pass", False, 12) == "def g():\n    return 1\n"


# --- ranking, dedupe, budget -------------------------------------------------------------------
def test_rank_and_dedupe_keep_the_best_of_overlapping_snippets():
    a = snip("a.py", "x = 1\n", 10, 0, 50)
    b = snip("a.py", "y = 2\n", 12, 40, 90)  # overlaps a: the better one stays
    c = snip("a.py", "z = 3\n", 5, 90, 120)  # touches b's end only
    d = snip("b.py", "y = 2\n", 3, 0, 10)  # same text elsewhere: a duplicate
    e = snip("c.py", "  \n", 20)  # nothing in it
    assert dedupe(rank([a, b, c, d, e])) == [b, c]
    assert rank([a, b]) == [b, a]


def test_fill_takes_the_best_that_fit_and_skips_what_does_not():
    big, small, mid = snip("a.py", "a" * 50, 9), snip("b.py", "b" * 10, 5), snip("c.py", "c" * 30, 8)
    cost = lambda s, chosen: len(s.text)  # noqa: E731
    assert fill([big, mid, small], 45, cost) == [mid, small]
    assert fill([big, mid, small], 5, cost) == []


def test_the_block_fits_its_budget_and_pays_for_paths_once():
    snippets = [snip("a.py", f"line{i} = {i}\n", 10 - i, start=100 * i, end=100 * i + 50) for i in range(6)]
    block = choose_block(snippets, 60, encode_chars, None, "proj", "cur.py")
    assert block.tokens == len(block.text) <= 60 and block.text.startswith("# a.py\nline0 = 0\n...\n")
    assert [s.score for s in block.snippets] == sorted((s.score for s in block.snippets), reverse=True)
    assert choose_block(snippets, 0, encode_chars, None, "proj", "cur.py") is EMPTY
    assert choose_block(snippets, 5, encode_chars, None, "proj", "cur.py") is EMPTY  # not one fits


# --- formatting ----------------------------------------------------------------------------------
def test_qwen_repository_format_puts_other_files_between_the_repo_line_and_the_file():
    tokens = fim.choose(QWEN_VOCAB)
    assert tokens.repo_format
    header, file_header = tokens.headers("proj", "pkg/cur.py")
    chosen = [snip("util.py", "def helper():\n    return 1\n", 5), snip("pkg/base.py", "class Base:\n    pass\n", 9)]
    text, at = format_block(chosen, tokens, "proj", "pkg/cur.py")
    # the best file last, nearest the current one
    assert text == "<|file_sep|>util.py\ndef helper():\n    return 1\n<|file_sep|>pkg/base.py\nclass Base:\n    pass\n"
    assert at == len("<|repo_name|>proj\n")
    prompt = build_prompt("x = ", "\ny = 2\n", encode_chars, 1024, tokens, header=header, file_header=file_header,
                          context=PromptContext(text, at))
    whole = "<|repo_name|>proj\n" + text + "<|file_sep|>pkg/cur.py\n"
    assert prompt.ids[:len(whole) + 1] == [*encode_chars(whole), tokens.prefix]
    assert prompt.context_tokens == len(text) and prompt.header_tokens == len(header)


def test_starcoder2_repository_format():
    vocab = {"a": 0, "<|endoftext|>": 9, "<fim_prefix>": 1, "<fim_middle>": 2, "<fim_suffix>": 3,
             "<repo_name>": 4, "<file_sep>": 5}
    tokens = fim.choose(vocab)
    text, at = format_block([snip("u.py", "x = 1\n", 1)], tokens, "proj", "cur.py")
    header, _ = tokens.headers("proj", "cur.py")
    assert header[:at] + text + header[at:] == "<repo_name>proj<file_sep>u.py\nx = 1\n<file_sep>"


def test_templates_without_a_repository_format_get_commented_headers_opening_the_file():
    deepseek = fim.resolve(fim.DEEPSEEK, {"<｜fim▁begin｜>": 1, "<｜fim▁hole｜>": 2, "<｜fim▁end｜>": 3})
    assert not deepseek.repo_format
    chosen = [snip("a.py", "def f():\n    pass\n", 3), snip("b.py", "x = 1\n", 4)]
    text, at = format_block(chosen, deepseek, "proj", "cur.py")
    assert (text, at) == ("# a.py\ndef f():\n    pass\n\n# b.py\nx = 1\n\n", None)
    assert format_block(chosen, None, "", "web/app.ts")[0].startswith("// a.py\n")
    assert comment_marker("q.sql") == "--" and comment_marker("Makefile") == "#"
    prompt = build_prompt("x = ", "\ny\n", encode_chars, 1024, deepseek, context=PromptContext(text, None))
    assert prompt.ids[:len(text) + 1 + 4] == [1, *encode_chars(text), *encode_chars("x = ")]
    plain = build_prompt("x = ", "", encode_chars, 1024, None, context=PromptContext(text, None))
    assert plain.ids[:len(text)] == encode_chars(text) and plain.context_tokens == len(text)


# --- the prompt's budget ---------------------------------------------------------------------------
def test_the_block_never_pushes_the_file_below_its_floor():
    budget = 400
    cap = context_cap(budget, 20)
    assert cap == budget - 20 - 3 - int(budget * FILE_FLOOR_SHARE)
    tokens = fim.FimTokens(prefix=1, suffix=2, middle=3)
    whole = context_cap(budget, 0)
    fits = build_prompt("x" * 1000, "y\n" * 5, encode_chars, budget, tokens, context=PromptContext("c" * whole))
    assert fits.context_tokens == whole and len(fits.ids) == budget
    file_tokens = len(fits.ids) - whole - 3
    assert file_tokens == budget * FILE_FLOOR_SHARE and fits.suffix_text == "y\n" * 5
    too_big = build_prompt("x\n" * 500, "y\n" * 5, encode_chars, budget, tokens,
                           context=PromptContext("c" * (context_cap(budget, 0) + 1)))
    assert too_big.context_tokens == 0 and "c" not in "".join(map(chr, too_big.ids))
    # a block in the repository format needs its header: none, no block
    orphan = build_prompt("x = ", "", encode_chars, budget, tokens, context=PromptContext("ctx", header_at=0))
    assert orphan.context_tokens == 0 and orphan.ids == encode_chars("x = ")


def test_context_options_are_checked():
    config, problems = Config.from_dict({"server": {"context": "on", "context_tokens": -1}})
    assert (config.server.context, config.server.context_tokens) == ("auto", 128) and len(problems) == 2
    off, none = Config.from_dict({"server": {"context": "off", "context_tokens": 0}})
    assert (off.server.context, off.server.context_tokens) == ("off", 0) and not none


# --- the session rule ----------------------------------------------------------------------------
def test_a_session_continues_while_the_user_types_on_in_the_same_place():
    last = Place("file:///a.py", 10, 8, 100.0)
    assert continues(last, Place("file:///a.py", 10, 9, 100.3))  # one more character
    assert continues(last, Place("file:///a.py", 10, 7, 100.3))  # one deleted
    assert not continues(last, Place("file:///a.py", 11, 0, 100.3))  # a new line
    assert not continues(last, Place("file:///b.py", 10, 9, 100.3))  # another file
    assert not continues(last, Place("file:///a.py", 10, 9, 105.0))  # after a pause
    assert not continues(last, Place("file:///a.py", 10, 40, 100.3))  # the cursor jumped along the line
    assert not continues(last, Place("file:///a.py", 10, 9, 99.0))  # a clock that went back
    assert place_of("u", "ab\ncd\nef", 1.0) == Place("u", 2, 2, 1.0)


def test_the_session_keeps_its_block_and_starts_anew_when_the_rule_says_so():
    now = [0.0]
    session: ContextSession[str] = ContextSession(clock=lambda: now[0])
    chosen: list[str] = []

    def choose(name: str):
        return lambda: chosen.append(name) or name

    assert session.block_for("u", "x\nab", "k", choose("first")) == "first"
    now[0] = 0.2
    assert session.block_for("u", "x\nabc", "k", choose("second")) == "first"  # typed on: kept
    now[0] = 0.4
    assert session.block_for("u", "x\nabc\n", "k", choose("third")) == "third"  # a new line
    assert session.block_for("u", "x\nabc\n", "other", choose("fourth")) == "fourth"  # other settings
    session.reset()
    assert session.block_for("u", "x\nabc\n", "other", choose("fifth")) == "fifth"
    assert chosen == ["first", "third", "fourth", "fifth"] and (session.started, session.reused) == (4, 1)


def test_imported_names_used_last_come_first_then_the_unused_latest_import_first():
    from rest_lsp.completion.context import imported_names

    prefix = ("from a.b import Foo, Bar as B\n"
              "from .c import (\n    baz,\n    qux,\n)\n"
              "from star import *\nimport os\n\n"
              "def f():\n    y = B(Foo())\n    return baz(y)\n")
    assert imported_names(prefix) == ["baz", "Foo", "Bar", "qux"]  # Bar is used as B
    assert imported_names(prefix, skip=["Foo"]) == ["baz", "Bar", "qux"]
    assert imported_names(prefix, limit=2) == ["baz", "Foo"]
    assert imported_names("import os\nx = os.path\n") == []  # modules are not definitions
    assert imported_names("from m import self, cls, thing\n") == ["thing"]
    # two imports under one alias: each counts the alias's uses after its own import
    assert imported_names("from a import x as f\nf()\nfrom b import y as f\n") == ["x", "y"]
