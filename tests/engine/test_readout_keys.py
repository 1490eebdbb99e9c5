"""The device readout: tie-free keys, top-k in one copy, argmax's first maximal index."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rest_lsp.engine.readout import greedy_readout, readout_keys, top_k_rows, top_tokens


def test_keys_order_values_and_break_ties_toward_the_smaller_id():
    logits = torch.tensor([[1.0, 3.0, -2.0, 3.0, -0.0, 0.0, -5.5, 3.0]])
    assert top_tokens(logits, 8)[0].tolist() == [1, 3, 7, 0, 4, 5, 2, 6]  # -0.0 ties 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([-3.5, -1.0, -0.0, 0.0, 0.25, 2.0, 7.0, -1e30, 1e30]),
                         min_size=6, max_size=6), min_size=1, max_size=4), st.integers(1, 6))
def test_top_tokens_is_a_stable_descending_sort(rows, k):
    logits = torch.tensor(rows, dtype=torch.float32)
    top = top_tokens(logits, k)
    for row, got in zip(rows, top):
        # Python's sort is stable: equal values keep id order; -0.0 == 0.0
        want = sorted(range(len(row)), key=lambda i: -row[i])[:k]
        assert got.tolist() == want
    assert top[:, 0].tolist() == logits.argmax(dim=-1).tolist()


def test_bf16_logits_read_as_their_float_values():
    logits = torch.tensor([[0.5, 2.0, 2.0, -1.0]], dtype=torch.bfloat16)
    assert top_tokens(logits, 2)[0].tolist() == [1, 2]


def test_keys_are_distinct():
    logits = torch.zeros((2, 50))
    keys = readout_keys(logits)
    assert len(set(keys[0].tolist())) == 50


def test_greedy_readout_on_the_cpu_leaves_top_k_to_the_accepted_rows():
    logits = torch.randn(5, 40)
    predicted, top = greedy_readout(logits, 4)
    assert top is None and predicted.tolist() == logits.argmax(dim=-1).tolist()
    assert np.array_equal(top_k_rows(logits, [0, 3], 4), top_tokens(logits[[0, 3]], 4))
