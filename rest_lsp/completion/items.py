"""The items one completion offers: the whole text when automatic, its shorter cuts as well when
invoked (``candidates_of``)."""

from __future__ import annotations


def candidates_of(full: str, invoked: bool, max_items: int) -> list[str]:
    """The items offered for a completion: one when automatic; several to cycle when invoked.

    Greedy decoding gives one text; the invoked alternatives are its shorter cuts (first line),
    which is what a user cycling usually wants when the whole block is too much.
    """
    if not full.strip():
        return []
    if not invoked:
        return [full]
    items = [full]
    first = first_line_of(full)
    if first.strip() and first != full:
        items.append(first)
    return items[: max(1, max_items)]


def first_line_of(text: str) -> str:
    """``text`` up to the end of its first non-blank line (leading newlines kept)."""
    start = len(text) - len(text.lstrip("\n"))
    end = text.find("\n", start)
    return text if end == -1 else text[:end]
