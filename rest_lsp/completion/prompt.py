"""The prompt of one completion: text around the cursor turned into token ids within a budget.

Pure functions over an ``encode`` callable, so they are tested without a model.  The prefix is
cut at line starts that move in steps (``LINE_STEP`` lines) rather than one line at a time: two
consecutive requests in a long file then share the same first tokens, which lets the engine reuse
its KV cache instead of prefilling again.  The fill-in-the-middle layout comes from the model's
template (``rest_lsp.completion.fim``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rest_lsp.completion.fim import FimTokens

#: the prefix window's first line moves in steps of this many lines (KV reuse, see module doc)
LINE_STEP = 32
#: share of the token budget given to the suffix in fill-in-the-middle prompts
SUFFIX_SHARE = 0.25
#: most of the token budget a repository header may take; a longer one is left out whole
HEADER_SHARE = 0.25
#: share of the token budget always left to the file's own text (prefix and suffix): the context
#: block (``PromptContext``) never pushes the cursor's prefix below it
FILE_FLOOR_SHARE = 0.5
#: a document's previous window start is kept while the prefix from it fills this share of its
#: budget (``fit_prefix``); the warm-up starts a window this far above the cursor: ``WARM_LEAD``
KEEP_FILL = 0.25
#: the share of the prefix's budget the document warm-up puts above the cursor (the rest of the
#: window lies below it, where the user may go next)
WARM_LEAD = 0.5
#: the FIM tokens a prompt may hold (prefix, suffix, middle)
FIM_TOKENS = 3

Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class Prompt:
    """Token ids to decode from, with the text they were made of."""

    ids: list[int]
    prefix_text: str
    suffix_text: str
    fim: bool
    #: tokens of the repository header (0: none)
    header_tokens: int = 0
    #: the prefix's last token, taken back (token healing; None: none was), and its text: the
    #: first generated token must begin with that text, which the user does not see again
    healed: int | None = None
    healed_text: str = ""
    #: tokens of the context block (0: none)
    context_tokens: int = 0
    #: where the prefix's tokens begin in ``ids`` (None: after the suffix, a suffix-first layout)
    prefix_at: int | None = None
    #: the most tokens the prefix could take in this prompt (its share of the budget)
    prefix_budget: int = 0
    #: "file": the file's own text (prefix, or FIM); "instruct": a chat asking for a function's
    #: body (``completion.instruct``)
    framing: str = "file"


@dataclass(frozen=True)
class PromptContext:
    """The context block as it enters a prompt: its text, and where it goes.

    ``header_at``: the block is in the model's repository format and goes inside the header, this
    many characters in (after the repository line, before the file's own path); None: it opens
    the file's own text (after the opening FIM token, before ``file_header``), as comments.
    """

    text: str
    header_at: int | None = None


def context_cap(budget: int, header_tokens: int) -> int:
    """The most tokens a context block may take of a prompt of ``budget`` tokens whose headers
    take ``header_tokens``: whatever leaves ``FILE_FLOOR_SHARE`` of the budget to the file's text."""
    return max(0, budget - header_tokens - FIM_TOKENS - int(budget * FILE_FLOOR_SHARE))


def split_at(text: str, offset: int) -> tuple[str, str]:
    """The document split at a character offset into (before cursor, after cursor)."""
    offset = max(0, min(offset, len(text)))
    return text[:offset], text[offset:]


def visible(generated: str, removed: str) -> str | None:
    """What the user sees of ``generated`` after the healed text ``removed`` (see ``heal_last``).

    ``None`` when the generation does not begin with ``removed`` (it diverged from what the user
    typed); ``""`` while it is still shorter than ``removed``.
    """
    if generated.startswith(removed):
        return generated[len(removed):]
    if removed.startswith(generated):
        return ""
    return None


def fit_prefix(prefix: str, encode: Encode, budget: int, keep_start: int | None = None) -> tuple[str, list[int]]:
    """The longest tail of ``prefix`` starting at a stepped line start whose tokens fit ``budget``.

    ``keep_start``: the start of this document's previous window (a line start): kept while the
    tail from it fits and fills at least ``KEEP_FILL`` of ``budget``, so that a cursor moved
    within the window keeps the prompt's first tokens (and their cached K/V, see ``window_ids``)."""
    if keep_start is not None and 0 < keep_start <= len(prefix) and prefix[keep_start - 1] == "\n":
        kept = encode(prefix[keep_start:])
        if int(budget * KEEP_FILL) <= len(kept) <= budget:
            return prefix[keep_start:], kept
    ids = encode(prefix)
    if len(ids) <= budget:
        return prefix, ids
    starts = _line_starts(prefix)
    # Estimate where to start from the token density, then walk forward in steps until it fits.
    chars_per_token = max(1.0, len(prefix) / max(1, len(ids)))
    want = len(prefix) - int(budget * chars_per_token)
    index = _first_line_at_or_after(starts, want)
    index = -(-index // LINE_STEP) * LINE_STEP  # round up to a step
    while index < len(starts):
        tail = prefix[starts[index]:]
        ids = encode(tail)
        if len(ids) <= budget:
            return tail, ids
        index += LINE_STEP
    # A single huge last line: keep the tail tokens only (no stable start exists).
    ids = encode(prefix)[-budget:]
    return prefix, ids


def fit_suffix(suffix: str, encode: Encode, budget: int) -> tuple[str, list[int]]:
    """The longest head of ``suffix`` ending at a line end whose tokens fit ``budget``."""
    if budget <= 0:
        return "", []
    lines = suffix.splitlines(keepends=True)
    text = ""
    ids: list[int] = []
    for line in lines:
        candidate = text + line
        candidate_ids = encode(candidate)
        if len(candidate_ids) > budget:
            break
        text, ids = candidate, candidate_ids
    return text, ids


def build_prompt(
    prefix: str,
    suffix: str,
    encode: Encode,
    budget: int,
    fim: FimTokens | None = None,
    header: str = "",
    file_header: str = "",
    token_text: Callable[[int], str] | None = None,
    max_suffix: int | None = None,
    context: PromptContext | None = None,
    keep_start: int | None = None,
) -> Prompt:
    """The prompt for a completion at the cursor between ``prefix`` and ``suffix``.

    With ``fim`` tokens and a non-blank suffix the prompt follows the template's order:
    ``<prefix> prefix <suffix> suffix <middle>`` (prefix first, so that consecutive requests share
    their leading tokens) or, for suffix-first families, ``<suffix> suffix <prefix> prefix``.
    Otherwise it is the prefix alone.  ``header`` (the repository and file, see
    ``FimTokens.headers``) comes first and ``file_header`` right after the opening FIM token (before
    the prefix when there is none); both count in ``budget`` and are left out when together they
    would take more than ``HEADER_SHARE`` of it.  With ``token_text`` (a token's text) the
    prefix's last token is healed (see ``heal_last``).  ``max_suffix``: the suffix's most tokens
    (within its share of the budget).  ``context``: the context block, inside the header or
    opening the file's text (see ``PromptContext``); it counts in ``budget`` and is left out
    whole when it would take more than ``context_cap`` (or belongs in a header left out).
    ``keep_start``: the document's previous window start (see ``fit_prefix``).
    """
    head, lead = _header_ids(header, file_header, encode, budget)
    header_tokens = len(head) + len(lead)
    head, lead, block = _with_context(head, lead, header, context, encode, budget)
    use_fim = fim is not None and suffix.strip() != ""
    if not use_fim:
        room = max(1, budget - len(head) - len(lead))
        text, ids = fit_prefix(prefix, encode, room, keep_start)
        ids, healed, healed_text = heal_last(ids, text, token_text, keep_one=not (head or lead), encode=encode)
        return Prompt(ids=[*head, *lead, *ids], prefix_text=text, suffix_text="", fim=False,
                      header_tokens=header_tokens, healed=healed, healed_text=healed_text, context_tokens=block,
                      prefix_at=len(head) + len(lead), prefix_budget=room)
    assert fim is not None
    middle = [] if fim.middle is None else [fim.middle]
    inner = max(1, budget - 2 - len(middle) - len(head) - len(lead))
    suffix_budget = int(inner * SUFFIX_SHARE)
    if max_suffix is not None:
        suffix_budget = min(suffix_budget, max_suffix)
    suffix_text, suffix_ids = fit_suffix(suffix, encode, suffix_budget)
    room = inner - len(suffix_ids)
    prefix_text, prefix_ids = fit_prefix(prefix, encode, room, keep_start)
    prefix_ids, healed, healed_text = heal_last(prefix_ids, prefix_text, token_text, keep_one=False, encode=encode)
    if fim.suffix_first:
        body = [fim.suffix, *suffix_ids, fim.prefix, *lead, *prefix_ids, *middle]
    else:
        body = [fim.prefix, *lead, *prefix_ids, fim.suffix, *suffix_ids, *middle]
    return Prompt(ids=[*head, *body], prefix_text=prefix_text, suffix_text=suffix_text, fim=True,
                  header_tokens=header_tokens, healed=healed, healed_text=healed_text, context_tokens=block,
                  prefix_at=None if fim.suffix_first else len(head) + 1 + len(lead), prefix_budget=room)


def window_ids(prompt: Prompt, following: str, encode: Encode) -> list[int]:
    """The tokens a request anywhere in ``prompt``'s window will most likely begin with: the
    prompt up to its prefix, then the window's text (``prompt.prefix_text``) continued by whole
    lines of ``following`` (the document after the cursor) as far as the prefix's budget allows.

    A request whose cursor lies in that text, with the same header, block and window start,
    shares these tokens up to its cursor (give or take the last one or two, which the tokenizer
    merges across the cut), so its K/V there can be prefilled ahead (``Engine.warm``).  Empty
    for a suffix-first layout, whose prompt begins with the suffix (it moves with the cursor)."""
    if prompt.prefix_at is None:
        return []
    import bisect
    import functools

    lines = following.splitlines(keepends=True)

    @functools.cache  # the search probes counts; the one that fits is then returned, not encoded again
    def ids_with(n: int) -> list[int]:
        return encode(prompt.prefix_text + "".join(lines[:n]))

    # the most whole lines that fit: the first count that does not, less one (a binary search)
    over = bisect.bisect_left(range(len(lines) + 1), True, key=lambda n: len(ids_with(n)) > prompt.prefix_budget)
    fitting = over - 1
    return [*prompt.ids[: prompt.prefix_at], *ids_with(fitting)] if fitting >= 0 else []


def heal_last(ids: list[int], text: str, token_text: Callable[[int], str] | None,
              keep_one: bool, encode: Encode | None = None) -> tuple[list[int], int | None, str]:
    """(prompt ids, the healed token, its text) for token healing: the prompt without the text the
    model must write again, and a token whose text that is (the first generated token must begin
    with it).  No change when ``token_text`` is None or (``keep_one``) one token would remain.

    A prompt that ends where the user stopped typing ends on a token boundary the model rarely
    saw there.  Two cases:

    - the end would be tokenized otherwise were a word typed next (``encode`` given): four
      spaces of indentation are one token at the end of a text but three + ``" if"`` before a
      word.  The prompt then ends where a following word puts the boundary (``"   "``) and the
      rest (``" "``) is healed, when it is one token;
    - else the last token is taken back: ``"    ret"`` ends in ``" ret"`` while the model learnt
      ``" return"``; with ``" ret"`` healed the model writes ``" return"`` itself.
    """
    if token_text is None or not ids or (keep_one and len(ids) == 1):
        return ids, None, ""
    if encode is not None:
        kept, rest = boundary_before_a_word(text, encode, token_text, ids)
        if rest and (kept or not keep_one):
            single = encode(rest)
            if len(single) == 1 and token_text(single[0]) == rest:
                return kept, single[0], rest
    last = ids[-1]
    piece = token_text(last)
    if not piece or not text.endswith(piece):
        return ids, None, ""
    return ids[:-1], last, piece


#: typed after the prefix to see where a following word puts the last token boundary
PROBE = "x"


#: appending a word re-tokenizes at most this many of a text's last tokens; an ``ids`` that shares
#: less with the probe's tokens is not the text's own encoding (a cut huge line): no probe healing
RETOKENIZED = 4


def boundary_before_a_word(text: str, encode: Encode, token_text: Callable[[int], str],
                           ids: list[int] | None = None) -> tuple[list[int], str]:
    """(the tokens of ``text`` + a word that lie wholly inside ``text``, the text after them).

    ``ids``: ``text``'s own tokens (encoded when None).  Only the tokens after their common
    prefix with the probe's are looked at one by one: a prompt is a thousand tokens, and this
    runs on every request.
    """
    from rest_lsp.engine.engine import common_prefix_len

    ids = encode(text) if ids is None else ids
    probe = encode(text + PROBE)
    same = common_prefix_len(ids, probe)
    tail = "".join(token_text(t) for t in ids[same:])
    if len(ids) - same > RETOKENIZED or not text.endswith(tail):
        return list(ids), ""
    kept = list(probe[:same])
    at = len(text) - len(tail)
    for token in probe[same:]:
        piece = token_text(token)
        if not piece or not text.startswith(piece, at):
            break
        kept.append(token)
        at += len(piece)
    return kept, text[at:]


def _header_ids(header: str, file_header: str, encode: Encode, budget: int) -> tuple[list[int], list[int]]:
    """The ids of the two header texts, or none when together they exceed their share of ``budget``."""
    head = encode(header) if header else []
    lead = encode(file_header) if file_header else []
    # a cut header (half a path) would mislead the model more than none
    if len(head) + len(lead) > budget * HEADER_SHARE:
        return [], []
    return head, lead


def _with_context(head: list[int], lead: list[int], header: str, context: PromptContext | None,
                  encode: Encode, budget: int) -> tuple[list[int], list[int], int]:
    """(header ids, lead ids, context tokens) with the context block put in its place.

    The header is encoded in two parts around the block (the repository format's parts begin
    with special tokens, which no merge crosses); a block too large for ``context_cap``, or
    meant for a header that was left out, is left out whole.
    """
    if context is None or not context.text:
        return head, lead, 0
    if context.header_at is not None and not head:
        return head, lead, 0
    ids = encode(context.text)
    if len(ids) > context_cap(budget, len(head) + len(lead)):
        return head, lead, 0
    if context.header_at is None:
        return head, [*ids, *lead], len(ids)
    at = context.header_at
    return [*encode(header[:at]), *ids, *encode(header[at:])], lead, len(ids)


def tail_start(prefix: str, encode: Encode, budget: int) -> int:
    """The first line start of ``prefix`` from which its tail fits ``budget`` tokens (any line,
    not a stepped one; ``len(prefix)`` when not even the last line fits)."""
    import bisect

    starts = _line_starts(prefix)
    # the first line whose tail fits (later ones fit too): a binary search over encodings
    first = bisect.bisect_left(range(len(starts)), True, key=lambda i: len(encode(prefix[starts[i]:])) <= budget)
    return starts[first] if first < len(starts) else len(prefix)


def line_offset(text: str, line: int | None) -> int | None:
    """The character offset at which 0-based ``line`` of ``text`` starts (None: no such line)."""
    if line is None or line < 0:
        return None
    at = 0
    for _ in range(line):
        at = text.find("\n", at) + 1
        if at == 0:
            return None
    return at


def _line_starts(text: str) -> list[int]:
    """Character offsets at which the lines of ``text`` start."""
    starts = [0]
    pos = text.find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return starts


def _first_line_at_or_after(starts: list[int], offset: int) -> int:
    """Index of the first line start >= offset (len(starts) when none)."""
    import bisect

    return bisect.bisect_left(starts, max(0, offset))
