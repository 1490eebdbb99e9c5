"""Instruct framing (pure, no model): when a cursor begins a new function body, and the prompt."""

from __future__ import annotations

from rest_lsp.completion.instruct import (FENCE, OPEN, SYSTEM, build_instruct_prompt, framed_text, instruct_model,
                                          new_body_start)

HUMANEVAL_LIKE = 'from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    """ Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'


def encode_chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def render(messages):
    return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


def test_a_cursor_after_a_docstring_begins_a_new_body():
    start = new_body_start(HUMANEVAL_LIKE, "")
    assert start == HUMANEVAL_LIKE.index("def add")
    # indented, after the body's indentation, in a class, with the next method after the cursor
    cls = "class A:\n    def f(self, x):\n        '''Twice x.'''\n        "
    assert new_body_start(cls, "\n\n    def g(self):\n        pass\n") == cls.index("    def f")
    # an async def with a signature over two lines
    sig = 'async def fetch(url,\n                timeout=3):\n    """The body of url."""\n    '
    assert new_body_start(sig, "") == 0


def test_anywhere_else_the_file_prompt_stays():
    assert new_body_start("def f(x):\n    ", "") is None  # no docstring: nothing asked of the model
    assert new_body_start('def f(x):\n    """Twice x."""\n    y = x\n    ', "") is None  # a statement
    assert new_body_start(HUMANEVAL_LIKE + "    ret", "") is None  # a line begun
    assert new_body_start(HUMANEVAL_LIKE, "    return a + b\n") is None  # the body follows the cursor
    assert new_body_start("x = 1\n", "") is None  # no function
    assert new_body_start('def f(x:\n    """Doc."""\n    ', "") is None  # not Python yet
    assert new_body_start('def f(x):\n    """Doc."""\n    ', "x = 1") is None  # text after the cursor


def test_instruct_models_by_name():
    assert instruct_model(["qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B-Instruct"])
    assert not instruct_model(["bigcode/starcoder2-3b", "", None])


def test_the_prompt_asks_for_the_code_and_begins_the_reply_with_the_function():
    prompt = build_instruct_prompt(HUMANEVAL_LIKE, HUMANEVAL_LIKE.index("def add"), encode_chars, 2000, render)
    text = "".join(chr(t) for t in prompt.ids)
    head, reply = framed_text(render, HUMANEVAL_LIKE, HUMANEVAL_LIKE[HUMANEVAL_LIKE.index("def add"):])
    assert text == head + reply and prompt.framing == "instruct" and prompt.prefix_at is None
    assert text.startswith(f"<system>{SYSTEM}</system><user>Complete the following Python code:\n{OPEN}from typing")
    assert text.endswith(f"{FENCE}</user><assistant>{OPEN}" + HUMANEVAL_LIKE[HUMANEVAL_LIKE.index("def add"):])


def test_a_long_document_is_cut_to_the_budget_and_the_function_kept_whole():
    doc = "".join(f"x{i} = {i}\n" for i in range(500)) + HUMANEVAL_LIKE
    prompt = build_instruct_prompt(doc, doc.index("def add"), encode_chars, 600, render)
    text = "".join(chr(t) for t in prompt.ids)
    assert len(prompt.ids) <= 600 and "x0 = 0" not in text and "x499 = 499" in text
    assert text.endswith(OPEN + HUMANEVAL_LIKE[HUMANEVAL_LIKE.index("def add"):])
