"""The prompt window the document warm-up prefills (pure, no model): ``window_ids``, the kept
window start of ``fit_prefix``, ``line_offset``."""

from __future__ import annotations

from rest_lsp.completion.fim import FimTokens
from rest_lsp.completion.prompt import build_prompt, fit_prefix, line_offset, window_ids
from rest_lsp.engine.engine import common_prefix_len

FIM = FimTokens(prefix=1, suffix=2, middle=3)
DOC = "".join(f"line {i:03d} = {i}\n" for i in range(400))  # 15 characters a line


def encode_chars(text: str) -> list[int]:
    """A toy tokenizer: one token per character."""
    return [ord(c) for c in text]


def prompt_at(offset: int, keep_start: int | None = None, budget: int = 600):
    return build_prompt(DOC[:offset], DOC[offset:], encode_chars, budget, FIM, header="repo\n", max_suffix=40,
                        keep_start=keep_start)


def test_the_window_is_the_prompt_up_to_its_prefix_then_whole_lines_within_the_budget():
    at = DOC.index("line 100")
    prompt = prompt_at(at)
    ids = window_ids(prompt, DOC[at:], encode_chars)
    head = prompt.ids[: prompt.prefix_at]
    assert head == [*encode_chars("repo\n"), FIM.prefix]
    text = "".join(chr(t) for t in ids[len(head):])
    assert text.startswith(prompt.prefix_text) and len(text) > len(prompt.prefix_text)
    assert text.endswith("\n") and len(text) <= prompt.prefix_budget < len(text) + 15  # whole lines, as far as they fit


def test_a_request_further_down_the_window_shares_it_up_to_its_cursor():
    first = DOC.index("line 100")
    prompt = prompt_at(first)
    ids = window_ids(prompt, DOC[first:], encode_chars)
    start = first - len(prompt.prefix_text)
    for later in (DOC.index("line 101"), DOC.index("line 102") + 4):
        moved = prompt_at(later, keep_start=start)
        assert moved.prefix_text == DOC[start:later]  # the same window start
        upto_cursor = prompt.prefix_at + len(moved.prefix_text)
        assert common_prefix_len(ids, moved.ids) == upto_cursor
    # a start off the step grid (the warm-up's) is kept for a cursor moved up, while the window
    # still fills a quarter of the budget; without it the window would start elsewhere
    warm_start, up = DOC.index("line 070"), DOC.index("line 085")
    assert prompt_at(up, keep_start=warm_start).prefix_text == DOC[warm_start:up]
    assert not prompt_at(up).prefix_text.startswith("line 070")


def test_the_warm_up_window_reaches_below_the_cursor():
    from rest_lsp.completion.prompt import WARM_LEAD, tail_start

    at = DOC.index("line 200")
    budget = prompt_at(at).prefix_budget
    start = tail_start(DOC[:at], encode_chars, int(budget * WARM_LEAD))
    assert DOC[start - 1] == "\n" and int(budget * WARM_LEAD) - 15 < at - start <= int(budget * WARM_LEAD)
    warmed = prompt_at(at, keep_start=start)
    ids = window_ids(warmed, DOC[at:], encode_chars)
    below = DOC.index("line 215")  # 15 lines further down: still in the window, sharing it
    moved = prompt_at(below, keep_start=start)
    assert moved.prefix_text == DOC[start:below]
    assert common_prefix_len(ids, moved.ids) == moved.prefix_at + len(moved.prefix_text)


def test_a_kept_start_yields_when_the_window_would_overflow_or_hold_too_little():
    text = DOC[: DOC.index("line 200")]
    start = DOC.index("line 100")
    tail, _ = fit_prefix(text, encode_chars, 2000, keep_start=start)
    assert tail == text[start:]  # fits, and fills more than half
    tail, ids = fit_prefix(text, encode_chars, 1000, keep_start=start)
    assert tail != text[start:] and len(ids) <= 1000  # 1,500 characters from there: too many
    tail, _ = fit_prefix(text, encode_chars, 8000, keep_start=start)
    assert tail == text  # from there, less than a quarter of the budget: the longest window instead
    tail, _ = fit_prefix(text, encode_chars, 2000, keep_start=start + 3)
    assert tail != text[start + 3:]  # not a line start: ignored


def test_no_window_for_a_suffix_first_layout():
    fim = FimTokens(prefix=1, suffix=2, middle=3, suffix_first=True)
    at = DOC.index("line 050")
    prompt = build_prompt(DOC[:at], DOC[at:], encode_chars, 600, fim)
    assert prompt.prefix_at is None and window_ids(prompt, DOC[at:], encode_chars) == []


def test_line_offset():
    assert line_offset("a\nbb\nc", 0) == 0
    assert line_offset("a\nbb\nc", 2) == 5
    assert line_offset("a\nbb\nc", 3) is None
    assert line_offset("a\n", None) is None
