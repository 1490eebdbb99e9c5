"""Token healing's vocabulary index: for a token, every token whose text begins with its text.

Built once per model from the tokenizer's pieces (byte-level BPE pieces share prefixes exactly
as the bytes they stand for do), sorted, so one lookup is two binary searches.  Added tokens
(``<|im_end|>``, FIM tokens, ...) never extend anything: they are not text.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np


class TokenExtensions:
    """Sorted (piece, id) pairs of a vocabulary; ``extending(id)`` lists the tokens that begin with it."""

    def __init__(self, vocab: dict[str, int], excluded: set[int] | frozenset[int] = frozenset()) -> None:
        pairs = sorted((piece, i) for piece, i in vocab.items() if i not in excluded)
        self._pieces = [p for p, _ in pairs]
        self._ids = np.array([i for _, i in pairs], dtype=np.int64)
        self._piece_of = {i: p for p, i in pairs}

    @classmethod
    def of_tokenizer(cls, tokenizer: Any) -> "TokenExtensions":
        """The index of a Hugging Face tokenizer's vocabulary, its added tokens left out."""
        added = set(getattr(tokenizer, "get_added_vocab", dict)().values())
        added |= set(getattr(tokenizer, "all_special_ids", []) or [])
        return cls(tokenizer.get_vocab(), added)

    def extending(self, token: int) -> np.ndarray:
        """Sorted ids of the tokens whose piece begins with ``token``'s piece (itself included)."""
        piece = self._piece_of.get(int(token))
        if piece is None:
            return np.array([int(token)], dtype=np.int64)
        lo = bisect.bisect_left(self._pieces, piece)
        hi = bisect.bisect_left(self._pieces, piece + "\U0010ffff")
        return np.sort(self._ids[lo:hi])
