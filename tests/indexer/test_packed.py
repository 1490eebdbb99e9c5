"""Bit-packed ints (the suffix array's form): every width, every access path, equal to numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from indexer.storage.packed import PAD, PackedInts, bits_for, pack


def test_bits_for():
    assert [bits_for(n) for n in (0, 1, 2, 3, 4, 5, 2**26, 2**26 + 1)] == [1, 1, 1, 2, 2, 3, 26, 27]


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 57), n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_every_access_path_equals_the_values(bits, n, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**bits, size=n, dtype=np.uint64).astype(np.int64)
    p = PackedInts.from_values(values, bits)
    assert len(p) == n and p.nbytes == (n * bits + 7) // 8 + PAD
    assert p[:].tolist() == values.tolist()
    assert p[2:n - 1:3].tolist() == values[2:n - 1:3].tolist()
    if n:
        rows = rng.integers(0, n, size=20)
        assert p[rows].tolist() == values[rows].tolist()
        assert [p.at(int(r)) for r in rows] == values[rows].tolist()
        assert p[-1] == values[-1]


def test_chunked_packing_matches_across_chunk_edges(monkeypatch):
    from indexer.storage import packed

    monkeypatch.setattr(packed, "CHUNK", 64)
    values = np.random.default_rng(1).integers(0, 2**26, size=1000)
    p = PackedInts.from_values(values, 26)
    assert p[:].tolist() == values.tolist()
    monkeypatch.undo()
    assert bytes(pack(values, 26)) == bytes(p.buffer)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        pack(np.array([8]), 3)
    with pytest.raises(ValueError):
        pack(np.array([1]), 58)
    with pytest.raises(ValueError):  # a truncated buffer
        PackedInts(b"\0" * 4, 10, 8)
    with pytest.raises(IndexError):
        PackedInts.from_values(np.array([1, 2]))[2]
