"""Where token strings occur (document, offset), the maximal matching runs of a query, and masked
documents: each compared with a brute-force scan of the documents (torch-free)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.search.occurrences import document_length, document_window, longest_runs, occurrences, without_paths
from indexer.storage.shard import Doc, Shard
from indexer.search.suffix import ShardView

SEP = 0


def view_of(docs: list[list[int]], prefix: str = "d") -> ShardView:
    shard = Shard.from_docs([Doc(f"{prefix}{i}", np.asarray(d, dtype=np.int64)) for i, d in enumerate(docs)],
                            token_dtype=np.dtype(">u2"), separator_id=SEP, vocab_size=16)
    return ShardView(shard)


def brute_places(docs: list[list[int]], pattern: list[int]) -> set[tuple[int, int]]:
    n = len(pattern)
    return {(d, p) for d, doc in enumerate(docs) for p in range(len(doc) - n + 1) if doc[p:p + n] == pattern}


def brute_longest(all_docs: list[list[int]], ids: list[int], end: int, max_len: int) -> int:
    best = 0
    for n in range(1, min(end, max_len) + 1):
        if any(brute_places([d], ids[end - n:end]) for d in all_docs):
            best = n
    return best


doc_st = st.lists(st.integers(1, 4), min_size=0, max_size=30)


@settings(max_examples=150, deadline=None)
@given(st.lists(doc_st, min_size=1, max_size=4), st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_occurrences_are_real_matches_one_per_document(docs, pattern):
    view = view_of(docs)
    found, total = occurrences([view], pattern, limit=100)
    places = brute_places(docs, pattern)
    assert total == len(places)
    assert {o.doc for o in found} == {d for d, _ in places}  # every document with a match, once
    for o in found:
        assert (o.doc, o.start) in places and o.path == f"d{o.doc}" and o.length == len(pattern)
        window, start, end = document_window(view, o.doc, o.start, o.start + o.length)
        assert window == pattern and (start, end) == (o.start, o.start + len(pattern))


def test_occurrences_stop_at_the_limit_and_skip_dead_documents():
    docs = [[1, 2, 3], [4, 1, 2], [1, 2], [3, 3]]
    view = view_of(docs)
    found, total = occurrences([view], [1, 2], limit=2)
    assert total == 3 and len(found) == 2
    masked = without_paths(view, {"d0", "d2"})
    found, total = occurrences([masked], [1, 2], limit=10)
    assert [(o.path, o.start) for o in found] == [("d1", 1)] and total == 1
    assert occurrences([masked], [3, 3], limit=10)[0][0].path == "d3"
    assert without_paths(view, {"nowhere"}) is view


def test_occurrences_can_require_what_follows_the_match():
    view = view_of([[1, 2, 3], [1, 2, 4], [3, 1, 2]])  # "1 2" then 3, then 4, then the document's end
    found, total = occurrences([view], [1, 2], limit=5, followed_by=lambda t: t == 4)
    assert sorted((o.path, o.start) for o in found) == [("d1", 0), ("d2", 1)] and total == 2
    assert occurrences([view], [1, 2], limit=5, followed_by=lambda t: False)[0] == [
        o for o in found if o.path == "d2"]  # a document's end always passes


def test_masking_keeps_the_views_own_dead_documents():
    view = view_of([[1, 2], [1, 2], [1, 2]])
    dead = np.array([True, False, False])
    masked = without_paths(view.with_dead(dead), {"d2"})
    assert [o.path for o in occurrences([masked], [1, 2], limit=5)[0]] == ["d1"]


def test_occurrences_across_views_name_their_view():
    a, b = view_of([[1, 2, 3]], "a"), view_of([[2, 3, 4]], "b")
    found, total = occurrences([a, b], [2, 3], limit=5)
    assert [(o.view, o.path, o.start) for o in found] == [(0, "a0", 1), (1, "b0", 0)] and total == 2


@settings(max_examples=150, deadline=None)
@given(st.lists(doc_st, min_size=1, max_size=3), st.lists(st.integers(1, 4), min_size=0, max_size=25),
       st.integers(1, 3), st.integers(3, 8))
def test_longest_runs_are_the_maximal_matching_runs(docs, ids, min_len, max_len):
    half = len(docs) // 2 or 1
    views = [view_of(docs[:half]), view_of(docs[half:], "e")] if docs[half:] else [view_of(docs)]
    runs = longest_runs(views, ids, min_len, max_len)
    lengths = [0] + [brute_longest(docs, ids, end, max_len) for end in range(1, len(ids) + 1)]
    expected = set()
    for end in range(1, len(ids) + 1):
        n = lengths[end] if lengths[end] >= min_len else 0
        after = lengths[end + 1] if end < len(ids) and lengths[end + 1] >= min_len else 0
        if n and not (after == n + 1 or (n == max_len and after == max_len)):
            expected.add((end - n, n))
    assert set(runs) == expected
    assert [n for _, n in runs] == sorted((n for _, n in runs), reverse=True)
    for start, n in runs:
        assert min_len <= n <= max_len and any(brute_places([d], ids[start:start + n]) for d in docs)


def test_a_long_copied_region_is_one_run_ending_where_the_copy_ends():
    doc = [1, 2, 3, 4, 1, 3, 2, 4, 4, 3, 1, 2]
    ids = [4, 4] + doc[:10] + [2, 2]
    runs = longest_runs([view_of([doc])], ids, 3, 5)
    assert (7, 5) in runs  # the copy ends at index 12: one capped run there, not one per position
    assert not [r for r in runs if r[1] == 5 and r != (7, 5)]


def test_documents_and_windows_are_clamped():
    view = view_of([[1, 2, 3], [4, 4]])
    assert document_length(view, 0) == 3 and document_length(view, 1) == 2
    assert document_window(view, 1, -5, 10) == ([4, 4], 0, 2)
