"""Pure tests of what a step reads out of the logits: argmax per row, top-k of some rows."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rest_lsp.engine.readout import argmax_rows, top_k_rows


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(1, 40), st.integers(0, 2**31 - 1), st.booleans())
def test_argmax_rows_equals_torch_argmax_ties_included(n, vocab, seed, coarse):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, vocab, generator=g)
    if coarse:  # few distinct values: many ties, the first maximal index must win
        logits = logits.round()
    assert argmax_rows(logits).tolist() == logits.argmax(dim=-1).tolist()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 12), st.integers(4, 40), st.integers(0, 2**31 - 1), st.data())
def test_top_k_rows_equals_torch_topk_on_distinct_values(n, vocab, seed, data):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, vocab, generator=g)
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n))
    expected = logits[rows].topk(4, dim=-1).indices.tolist()
    assert top_k_rows(logits, rows, 4).tolist() == expected
    assert logits.isfinite().all()  # the logits themselves are left as they were


def test_top_k_rows_breaks_ties_toward_the_smaller_token():
    logits = torch.tensor([[0.0, 2.0, 1.0, 2.0, 1.0, -1.0]])
    assert top_k_rows(logits, [0], 4).tolist() == [[1, 3, 2, 4]]


def test_half_precision_logits_are_read_as_float32():
    logits = torch.tensor([[0.5, 3.0, 1.0], [2.0, -1.0, 7.0]], dtype=torch.bfloat16)
    assert argmax_rows(logits).tolist() == [1, 2]
    assert top_k_rows(logits, [1], 2).tolist() == [[2, 0]]
    assert isinstance(argmax_rows(logits), np.ndarray)
