"""The text of a growing token list, decoded a short tail window at a time.

The engine asks the completion's stop rule after every generated token; decoding the whole output
each time costs the tokenizer work quadratic in its length.  ``IncrementalText`` keeps the text of
a stable prefix and decodes only the tokens after it with a few tokens of context (the prefix
offset / read offset pair of vLLM's and Hugging Face's streaming detokenizers), so each new token
costs a bounded decode, and its text is still exactly the whole list's decode.
"""

from __future__ import annotations

from typing import Any, Sequence

#: tokens before the stable end that a window starts with: the context a decoder's rules look back
#: at (a SentencePiece leading space, a clean-up of the space before punctuation) to write the new
#: tokens as they are written in the whole list
CONTEXT = 4
#: the window's tokens before the stable end, past which the window's start moves up to ``CONTEXT``
WINDOW = 16
#: what a decoder writes for bytes that are not (yet) a whole UTF-8 character
REPLACEMENT = "\ufffd"


class IncrementalText:
    """The text of a token list that grows at its end: ``text_of(ids)`` always equals
    ``tokenizer.decode(ids, skip_special_tokens=...)``, at a bounded decode per new token.

    It keeps the text of ``ids[:stable]`` within the whole, and decodes the window
    ``ids[start:]`` (a few tokens before ``stable``, then the new ones); the new text is what the
    window's text has after the text of ``ids[start:stable]``, decoded on its own.  Its start is
    where that text begins with a whole character, so the window reads as the whole list does.

    ``stable`` moves to the end only when the window's text does not end with U+FFFD: a character
    whose bytes are split across tokens decodes to it until its last byte arrives.  (Output that
    keeps ending in bytes that are no UTF-8 keeps the window growing: exact, not bounded.)  A list
    that is not an extension of the last one, or new tokens that change the text before them, are
    decoded whole, and followed from there.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        #: the text of the tokens seen so far (the last ``text_of``)
        self.text = ""
        self._forget()

    def _forget(self) -> None:
        """Start over from an empty list."""
        self._ids: list[int] = []
        self._start = 0
        self._stable = 0
        self._stable_text = ""  # the text of ids[:stable], as it reads in the whole list
        self._window_text = ""  # the text of ids[start:stable], decoded on its own
        self.text = ""

    def text_of(self, ids: Sequence[int]) -> str:
        """The text of ``ids``: the tokens seen before, extended (or, when not, decoded whole)."""
        ids = ids if isinstance(ids, list) else list(ids)
        seen = len(self._ids)
        if len(ids) < seen or ids[:seen] != self._ids:
            self._forget()
            seen = 0
        if len(ids) > seen:
            self._ids.extend(ids[seen:])
            self._follow()
        return self.text

    def _decode(self, ids: list[int]) -> str:
        """The tokenizer's text of ``ids``."""
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def _follow(self) -> None:
        """Decode the window over the new tokens, then move the stable end (and the window) up."""
        window = self._decode(self._ids[self._start:])
        if not window.startswith(self._window_text):
            # the new tokens changed the text before them (a decoder's clean-up): decode it all
            if self._start:
                window = self._decode(self._ids)
            self._start = self._stable = 0
            self._stable_text = self._window_text = ""
        self.text = self._stable_text + window[len(self._window_text):]
        if window.endswith(REPLACEMENT):
            return  # an unfinished character: the stable end waits for its last bytes
        self._stable, self._stable_text, self._window_text = len(self._ids), self.text, window
        if self._stable - self._start > WINDOW:
            self._move_start()

    def _move_start(self) -> None:
        """Start the window ``CONTEXT`` tokens before the stable end, or further back where those
        tokens write nothing or begin inside a character.

        The new tokens must not be the first to write (a decoder strips the leading space of its
        first text), and the window must not begin inside a run of byte tokens whose text is only
        known whole (a byte-fallback decoder writes U+FFFD for every byte of an invalid run).
        """
        back = CONTEXT
        while True:
            start = max(0, self._stable - back)
            text = self._decode(self._ids[start:self._stable])
            if start == 0 or (text and not text.startswith(REPLACEMENT)):
                break
            back *= 2
        self._start, self._window_text = start, text
