"""The prompt of one completion: text around the cursor turned into token ids within a budget.

Pure functions over an ``encode`` callable, so they are tested without a model.  The prefix is
cut at line starts that move in steps (``LINE_STEP`` lines) rather than one line at a time: two
consecutive requests in a long file then share the same first tokens, which lets the engine reuse
its KV cache instead of prefilling again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

#: the prefix window's first line moves in steps of this many lines (KV reuse, see module doc)
LINE_STEP = 32
#: share of the token budget given to the suffix in fill-in-the-middle prompts
SUFFIX_SHARE = 0.25

Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class FimTokens:
    """The ids of a model's fill-in-the-middle special tokens (prefix-suffix-middle order)."""

    prefix: int
    suffix: int
    middle: int


@dataclass(frozen=True)
class Prompt:
    """Token ids to decode from, with the text they were made of."""

    ids: list[int]
    prefix_text: str
    suffix_text: str
    fim: bool


def split_at(text: str, offset: int) -> tuple[str, str]:
    """The document split at a character offset into (before cursor, after cursor)."""
    offset = max(0, min(offset, len(text)))
    return text[:offset], text[offset:]


def heal(prefix: str) -> tuple[str, str]:
    """The prefix without its trailing whitespace, and that whitespace (token healing).

    Byte-level BPE merges a newline with the next line's indentation, and a space with the word
    after it, so a prompt ending in whitespace ends on a token the model rarely saw there (a lone
    ``"\\n"`` or ``" "``).  The prompt stops before that whitespace instead, and the generated text
    must begin with it (``visible``).
    """
    kept = prefix.rstrip(" \t\r\n")
    return kept, prefix[len(kept):]


def visible(generated: str, removed: str) -> str | None:
    """What the user sees of ``generated`` after the healed whitespace ``removed``.

    ``None`` when the generation does not begin with ``removed`` (it diverged from what the user
    typed); ``""`` while it is still shorter than ``removed``.
    """
    if generated.startswith(removed):
        return generated[len(removed):]
    if removed.startswith(generated):
        return ""
    return None


def fit_prefix(prefix: str, encode: Encode, budget: int) -> tuple[str, list[int]]:
    """The longest tail of ``prefix`` starting at a stepped line start whose tokens fit ``budget``."""
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
) -> Prompt:
    """The prompt for a completion at the cursor between ``prefix`` and ``suffix``.

    With ``fim`` tokens and a non-blank suffix the prompt is
    ``<fim_prefix> prefix <fim_suffix> suffix <fim_middle>`` (prefix first, so that consecutive
    requests share their leading tokens); otherwise it is the prefix alone.
    """
    use_fim = fim is not None and suffix.strip() != ""
    if not use_fim:
        text, ids = fit_prefix(prefix, encode, budget)
        return Prompt(ids=list(ids), prefix_text=text, suffix_text="", fim=False)
    assert fim is not None
    inner = max(1, budget - 3)
    suffix_budget = int(inner * SUFFIX_SHARE)
    suffix_text, suffix_ids = fit_suffix(suffix, encode, suffix_budget)
    prefix_text, prefix_ids = fit_prefix(prefix, encode, inner - len(suffix_ids))
    ids = [fim.prefix, *prefix_ids, fim.suffix, *suffix_ids, fim.middle]
    return Prompt(ids=ids, prefix_text=prefix_text, suffix_text=suffix_text, fim=True)


def fim_tokens_of(vocab: dict[str, int], names: Sequence[str] = (
    "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")) -> FimTokens | None:
    """The FIM token ids found in a vocabulary, or None when any is missing."""
    ids = [vocab.get(name) for name in names]
    if any(i is None for i in ids):
        return None
    return FimTokens(prefix=ids[0], suffix=ids[1], middle=ids[2])  # type: ignore[arg-type]


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
