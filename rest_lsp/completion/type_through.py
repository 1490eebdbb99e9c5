"""Typing through a suggestion: a keystroke that types the next characters of the completion on
show is answered with the rest of it, without decoding.

Why: an editor shows the completion as ghost text and asks again after every keystroke; when the
user types what the ghost text says, the rest of it is still the answer they are reading, and
decoding it again would cost the whole completion's time (on two cores about 1.5 s for 48 tokens)
for, at best, the same text.  Editors' own inline-completion clients do the same for the requests
they skip; this serves the ones they send.

What counts: the same document, the new text the old one with ``typed`` inserted at the old
cursor and nothing else changed, the cursor right after it, ``typed`` one line's characters (no
newline) that begin the completion shown, and something of it left.  Anything else decodes as
usual.  The answer is the earlier completion's rest, not a decoding of the new prompt: the two
may differ where the tokenizer would cut the new text otherwise (``server.type_through = false``
always decodes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shown:
    """The completion on show in a document: the text and cursor it was made for, and its text."""

    uri: str
    text: str
    offset: int
    completion: str


def rest_after_typing(shown: Shown | None, uri: str, text: str, offset: int) -> str | None:
    """The rest of ``shown``'s completion when the request (``uri``, ``text``, cursor ``offset``)
    typed its beginning and changed nothing else; None when it did not."""
    if shown is None or uri != shown.uri or not shown.completion or offset <= shown.offset:
        return None
    typed_len = offset - shown.offset
    if len(text) != len(shown.text) + typed_len:
        return None
    typed = text[shown.offset:offset]
    if "\n" in typed or "\r" in typed or not shown.completion.startswith(typed):
        return None
    if text[:shown.offset] != shown.text[:shown.offset] or text[offset:] != shown.text[shown.offset:]:
        return None
    rest = shown.completion[typed_len:]
    return rest if rest.strip() else None
