"""Unit tests for the prompt builder and the stop rules (pure, no model)."""

from __future__ import annotations

from rest_lsp.completion.fim import FimTokens
from rest_lsp.completion.prompt import build_prompt, fit_prefix, split_at
from rest_lsp.completion.stops import cursor_of, cut, defined_names, finish, undefined_calls


def encode_chars(text: str) -> list[int]:
    """A toy tokenizer: one token per character."""
    return [ord(c) for c in text]


def complete(doc: str, generated: str, one_statement: bool = True) -> str:
    """Apply the stop rules to ``generated`` at the cursor marked by `|` in ``doc``."""
    prefix, suffix = split_at(doc.replace("|", ""), doc.index("|"))
    return finish(generated, cursor_of(prefix, suffix, one_statement=one_statement))


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
    # nothing after the cursor closes it: the completion may (and, multi-line, go on)
    assert complete("foo(|\n", "a, b)\nbar()", one_statement=False) == "a, b)\nbar()"
    # a closer that was never opened
    assert complete("x = |\n", "1]\n") == "1"


def test_stops_before_repeating_the_next_line():
    doc = "def f():\n    |\n    return x\n"
    assert complete(doc, "x = 1\n    return x\n") == "x = 1"


def test_no_repeated_lines():
    doc = "def f():\n    |\n"
    assert complete(doc, "a = 1\n    a = 1\n    a = 1\n") == "a = 1"


def test_streaming_cut_judges_a_begun_line_by_its_indentation_only():
    cursor = cursor_of("def f():\n    ", "\n")
    text, stop = cut("x = 1\n    y", cursor)
    assert not stop and text == "x = 1\n    y"
    # the last line is not complete, but its code begins left of the block: the block ended
    assert cut("x = 1\ndef g", cursor) == ("x = 1", True)
    assert cut("x = 1\ndef g():\n", cursor) == ("x = 1", True)
    # a begun line that repeats the one before is judged once it ends
    assert cut("x = 1\n    x = 1", cursor) == ("x = 1\n    x = 1", False)


def test_strings_and_comments_do_not_count_as_brackets():
    assert complete("s = |\n", "')' + \"]\"  # )\n") == "')' + \"]\"  # )"


def test_heal_last_takes_back_the_prefix_last_token_and_visible_requires_it():
    from rest_lsp.completion.prompt import heal_last, visible

    pieces = {1: "def", 2: " f", 3: "():", 4: "\n   ", 5: " ret"}
    text = "def f():\n    ret"
    assert heal_last([1, 2, 3, 4, 5], text, pieces.get, keep_one=True) == ([1, 2, 3, 4], 5, " ret")
    assert heal_last([1, 2, 3, 4, 5], text, None, keep_one=True) == ([1, 2, 3, 4, 5], None, "")
    # a token whose text does not end the prefix (a decoding mismatch) is left alone
    assert heal_last([1, 2, 3], text, pieces.get, keep_one=True) == ([1, 2, 3], None, "")
    # a prompt of one token keeps it unless something else is in the prompt (FIM, a header)
    assert heal_last([5], " ret", pieces.get, keep_one=True) == ([5], None, "")
    assert heal_last([5], " ret", pieces.get, keep_one=False) == ([], 5, " ret")
    assert visible(" return 1", " ret") == "urn 1"
    assert visible("\n        deeper", "\n    ") == "    deeper"
    assert visible("\n  ", "\n    ") == ""  # still inside the healed text
    assert visible(" = 2", "\n    ") is None  # diverged from what the user typed


def test_build_prompt_heals_the_prefix_not_the_fim_tokens():
    from rest_lsp.completion.fim import FimTokens
    from rest_lsp.completion.prompt import build_prompt

    def encode(s):
        return [ord(c) for c in s]

    fim = FimTokens(prefix=1001, suffix=1002, middle=1003)
    prompt = build_prompt("ab", "cd\n", encode, 100, fim, token_text=chr)
    assert prompt.ids == [1001, ord("a"), 1002, ord("c"), ord("d"), ord("\n"), 1003]
    assert (prompt.healed, prompt.healed_text) == (ord("b"), "b")
    plain = build_prompt("ab", "", encode, 100, None, token_text=chr)
    assert plain.ids == [ord("a")] and plain.healed == ord("b")


def test_token_extensions_list_the_tokens_that_begin_with_a_token():
    from rest_lsp.completion.healing import TokenExtensions

    vocab = {"re": 1, "ret": 2, "return": 3, "rex": 4, "r": 5, "<|end|>": 6, "s": 7}
    index = TokenExtensions(vocab, excluded={6})
    assert index.extending(2).tolist() == [2, 3]
    assert index.extending(1).tolist() == [1, 2, 3, 4]
    assert index.extending(7).tolist() == [7]
    assert 6 not in TokenExtensions(vocab, excluded={6}).extending(5).tolist()


def test_a_blank_cursor_line_ends_the_completion_below_its_first_line():
    prefix = 'def f(xs):\n    """Sum."""\n'
    text = "    total = 0\n    for x in xs:\n        total += x\n    return total\n\n\n# Check it\nprint(f([1]))\n"
    assert finish(text, cursor_of(prefix, "")) == "    total = 0\n    for x in xs:\n        total += x\n    return total"
    # a first line that opens a block is one statement of the body, not the body's header
    text = "    for x in xs:\n        print(x)\n    return xs\n\nf([1])\n"
    assert finish(text, cursor_of(prefix, "")) == "    for x in xs:\n        print(x)\n    return xs"


def test_a_completion_starting_on_the_next_line_may_dedent_and_ends_where_it_dedents_further():
    prefix = "class A:\n    def f(self):\n        return 1"
    text = "\n\n    def g(self):\n        return 2\n\n\nprint(A())\n"
    assert finish(text, cursor_of(prefix, "")) == "\n\n    def g(self):\n        return 2"
    # after a block opener the user typed, the body is the completion; its level ends it
    prefix = "def f():"
    assert finish("\n    return 1\n\ndef g():\n", cursor_of(prefix, "")) == "\n    return 1"


def test_healing_ends_the_prompt_where_a_following_word_puts_the_boundary():
    from rest_lsp.completion.prompt import boundary_before_a_word, heal_last

    # a toy tokenizer like byte-level BPE: a run of spaces is one token at the end of a text, but
    # before a word its last space goes with the word
    vocab = {"def": 1, ":": 2, "\n": 3, "    ": 4, "   ": 5, " ": 6, " x": 7, " if": 8, "x": 9}
    pieces = {i: p for p, i in vocab.items()}

    def encode(text):
        out, i = [], 0
        while i < len(text):
            for piece in sorted(vocab, key=len, reverse=True):
                if text.startswith(piece, i) and not (piece == "    " and text[i + 4:i + 5].isalpha()):
                    out.append(vocab[piece])
                    i += len(piece)
                    break
            else:
                raise ValueError(text[i:])
        return out

    text = "def:\n    "
    assert encode(text)[-1] == 4 and encode(text + "x")[-2:] == [5, 7]
    assert boundary_before_a_word(text, encode, pieces.get) == ([1, 2, 3, 5], " ")
    assert heal_last(encode(text), text, pieces.get, keep_one=True, encode=encode) == ([1, 2, 3, 5], 6, " ")
    # a text whose end a word does not change: the last token is healed
    assert heal_last(encode("def:"), "def:", pieces.get, keep_one=True, encode=encode) == ([1], 2, ":")


def test_a_completion_cut_by_the_token_limit_ends_with_its_last_complete_line():
    cursor = cursor_of("def f(n):\n", "")
    text = "    a, b = 0, 1\n    for _ in range(3, n +"
    assert finish(text, cursor, truncated=True) == "    a, b = 0, 1"
    assert finish(text, cursor) == text  # not truncated: shown as generated
    assert finish("    return fib(n", cursor, truncated=True) == "    return fib(n"  # one line: kept


def test_a_line_inserted_into_code_completes_one_statement():
    doc = "def f(xs):\n    total = 0\n    |\n    return total\n"
    assert complete(doc, "for x in xs:\n        total += x\n    print(total)\n    return total\n") == \
        "for x in xs:\n        total += x"
    assert complete(doc, "total += 1\n    total *= 2\n") == "total += 1"
    # brackets the statement opens carry it over lines, to where they close
    assert complete(doc, "total = sum(\n        xs,\n    )\n    total += 1\n") == "total = sum(\n        xs,\n    )"
    # a first line the model leaves blank is not the statement
    assert complete(doc, "\n    total += 1\n    total *= 2\n") == "\n    total += 1"


def test_multi_line_completions_are_for_the_start_of_an_empty_block_only():
    tail = "x = 1\n    y = 2\n"
    # a block opened right above with nothing of it below: the block, as many lines as written
    assert complete("def f():\n    |\n\ndef g():\n    pass\n", tail) == "x = 1\n    y = 2"
    assert complete("def f():\n    |", tail) == "x = 1\n    y = 2"
    # a docstring under the header is nothing of the block yet; a comment is something (as in Cody)
    assert complete('def f():\n    """Doc.\n\n    More.\n    """\n    |', tail) == "x = 1\n    y = 2"
    assert complete('def f():\n    """Doc."""\n    |', tail) == "x = 1\n    y = 2"
    assert complete('def f():\n    # note\n    |', tail) == "x = 1"
    # the end of a block (as Cody and Copilot do): one statement
    assert complete("def f():\n    a = 0\n    |\n\ndef g():\n    pass\n", tail) == "x = 1"
    assert complete("def f():\n    a = 0\n    |", tail) == "x = 1"
    # a string that is no docstring ends a statement of the block
    assert complete('def f():\n    a = """s\n    """\n    |', tail) == "x = 1"
    assert complete('def f():\n    a = """s"""\n    |', tail) == "x = 1"
    # a header right above whose body goes on below: an insertion, one statement
    assert complete("def f():\n    |\n    return 1\n", tail) == "x = 1"
    # a comment that ends with a colon opens nothing
    assert cursor_of("def f():\n    # note:\n    ", "\n    return 1\n").statement_only
    assert not cursor_of("x = 1\n# note:\n", "").empty_block
    assert not cursor_of("def f():\n    ", "\n    return 1\n", one_statement=False).statement_only
    assert complete("f(1)\n|x\n", "y = 2\nz = 3\n") == "y = 2"  # mid-line: the single-line rule


def test_a_line_being_written_completes_one_statement():
    assert complete("def f(xs):\n    total = |", "0\n    for x in xs:\n        total += x\n") == "0"
    # brackets open on the line carry the statement over lines
    assert complete("x = foo(|", "a,\n    b)\ny = 2\n") == "a,\n    b)"
    assert complete("x = foo(|", "\n    a,\n    b)\ny = 2\n") == "\n    a,\n    b)"
    # a header the completion finishes: its block
    assert complete("def f(xs):\n    for x in x|", "s:\n        print(x)\n    return xs\n") == \
        "s:\n        print(x)"
    # a header the user wrote: its body, as many lines as the model writes
    assert complete("def f(xs):|", "\n    a = 1\n    return a\n\ndef g():\n") == "\n    a = 1\n    return a"
    # multiline = "always": the old rules
    assert complete("def f(xs):\n    total = |", "0\n    return total\n", one_statement=False) == \
        "0\n    return total"


def test_one_statement_waits_for_complete_lines_while_streaming():
    cursor = cursor_of("def f():\n    a = 0\n    ", "\n    return a\n")
    assert cut("if a:\n        a", cursor) == ("if a:\n        a", False)
    assert cut("if a:\n        a += 1\n    ret", cursor) == ("if a:\n        a += 1", True)
    assert cut("a = g(\n        1", cursor) == ("a = g(\n        1", False)
    assert cut("a += 1\n", cursor) == ("a += 1", True)


def test_the_end_of_a_block_is_seen_on_the_first_code_of_a_line():
    cursor = cursor_of("def f(n):\n", "")
    # the dedented line is begun: the block ended, nothing more need be decoded
    assert cut("    return n\n\nprint", cursor) == ("    return n", True)
    # only indentation so far: not yet judged
    assert cut("    return n\n", cursor) == ("    return n\n", False)
    # a line of the block begun: goes on; the repeated-line rule waits for the line to end
    assert cut("    a = 1\n    a = 1", cursor) == ("    a = 1\n    a = 1", False)
    assert cut("    a = 1\n    a = 1\n", cursor) == ("    a = 1", True)


def test_a_function_the_completion_calls_and_the_model_writes_next_is_kept():
    doc = 'import math\n\ndef count(n):\n    """How many primes up to n."""\n|'
    body = "    return sum(1 for k in range(n) if is_prime(k))\n"
    helper = "def is_prime(k):\n    return k > 1 and all(k % d for d in range(2, k))\n"
    assert complete(doc, body + "\n\n" + helper + "\n\nprint(count(10))\n") == body + "\n\n" + helper.rstrip()
    # a function the document defines, a builtin, an import or a method: no helper needed
    assert complete(doc, "    return math.floor(n)\n\ndef floor(x):\n    return x\n") == "    return math.floor(n)"
    assert complete(doc + "\n\ndef is_prime(k):\n    pass\n", body + "\ndef is_prime(k):\n    return 1\n") == body.rstrip()
    assert complete(doc, "    return len(str(n))\n\ndef len(x):\n    return 0\n") == "    return len(str(n))"
    # a function it does not call ends the completion as before
    assert complete(doc, body + "\ndef other(k):\n    return k\n") == body.rstrip()
    # helpers one after the other, each called by what comes before it
    two = "def is_prime(k):\n    return odd(k)\n\ndef odd(k):\n    return k % 2\n"
    assert complete(doc, body + "\n" + two + "\nx = 1\n") == body + "\n" + two.rstrip()


def test_a_begun_line_that_may_define_the_called_function_is_awaited():
    cursor = cursor_of('def count(n):\n    """Doc."""\n', "")
    body = "    return is_prime(n)\n\n"
    assert cut(body + "def is_pr", cursor) == (body + "def is_pr", False)
    assert cut(body + "de", cursor) == (body + "de", False)
    assert cut(body + "def other(", cursor) == ("    return is_prime(n)", True)
    assert cut(body + "print(", cursor) == ("    return is_prime(n)", True)
    assert cut("    return n\n\ndef is_pr", cursor) == ("    return n", True)  # nothing called: at once


def test_defined_names_reads_definitions_assignments_and_imports():
    text = "import os, sys as s\nfrom a.b import (c, d as e)\nx: int = 1\ny == 2\n  def g(): pass\nclass K:\n"
    assert defined_names(text) == {"os", "s", "c", "e", "x", "g", "K"}
    assert undefined_calls("f(1) + g(2) + len(x) + o.h(3) + (4)\nif (x): pass", frozenset({"g"})) == {"f"}
