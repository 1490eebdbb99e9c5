"""Retrieval equals a brute-force scan; sampling is even and deterministic; merging keeps weights."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.search import retrieval
from indexer.storage import shard as shard_mod
from indexer.datastore import Datastore
from indexer.storage.shard import Doc, Shard, suffix_array
from indexer.search.suffix import ShardView, suffix_range
from indexer.tokens import IndexTokenizer
from indexer.settings import IndexConfig, RetrievalConfig

SEP = 0


def fake_tokenizer(vocab_size: int) -> IndexTokenizer:
    return IndexTokenizer(None, "test-identity", SEP, "<sep>", vocab_size)


def shard_of(docs, vocab_size, dtype=">u2"):
    return Shard.from_docs([Doc(f"d{i}", np.asarray(d, dtype=np.int64)) for i, d in enumerate(docs)],
                           token_dtype=np.dtype(dtype), separator_id=SEP, vocab_size=vocab_size)


def concat(docs):
    out = []
    for d in docs:
        out.extend(d)
        out.append(SEP)
    return out


def occurrences(text, pattern):
    L = len(pattern)
    return [p for p in range(len(text) - L + 1) if text[p] != SEP and text[p:p + L] == pattern]


def continuation(text, p, span):
    out = []
    for t in text[p:p + span]:
        if t == SEP:
            break
        out.append(t)
    return tuple(out)


def brute_longest(shards_docs, ctx, lo, hi):
    texts = [concat(d) for d in shards_docs]
    best = 0
    for L in range(lo, min(hi, len(ctx)) + 1):
        if any(occurrences(t, list(ctx[-L:])) for t in texts):
            best = L
    return best


def brute_counts(shards_docs, ctx, L, span, first_k=None):
    counts = Counter()
    for docs in shards_docs:
        text = concat(docs)
        occ = occurrences(text, list(ctx[-L:]))
        if first_k is not None:
            occ = sorted(occ, key=lambda p: text[p:])[:first_k]
        for p in occ:
            c = continuation(text, p + L, span)
            if c:
                counts[c] += 1
    return counts


doc_st = st.lists(st.integers(1, 5), min_size=0, max_size=40)
tier_st = st.lists(st.lists(doc_st, min_size=1, max_size=3), min_size=1, max_size=2)  # shards


@pytest.fixture(params=["python-path", "numpy-path", "sampled-every-3"])
def small_range(request, monkeypatch):
    """Run a test with the few-matches Python path on, with every range through numpy, and with
    the searches' sampled rows so dense (every 3rd) that both search phases always work."""
    if request.param == "numpy-path":
        monkeypatch.setattr(retrieval, "SMALL_RANGE", 0)
    if request.param == "sampled-every-3":
        monkeypatch.setattr(shard_mod, "SAMPLE_EVERY", 3)
    yield


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(corpus=tier_st, live=st.lists(doc_st, max_size=2), ctx=st.lists(st.integers(1, 5), min_size=1, max_size=20),
       span=st.integers(1, 6), min_suffix=st.integers(1, 3), max_suffix=st.integers(3, 8),
       mode=st.sampled_from(["longest", "all_lengths"]))
def test_retrieve_equals_brute_force(small_range, corpus, live, ctx, span, min_suffix, max_suffix, mode):
    vocab = 6
    rc = RetrievalConfig(min_suffix=min_suffix, max_suffix=max_suffix, span=span,
                         max_candidates=10**6, max_nodes=0)
    store = Datastore(fake_tokenizer(vocab), IndexConfig(), rc, corpus=[shard_of(s, vocab) for s in corpus])
    for i, d in enumerate(live):
        store.set_buffer(f"buf{i}", d)
    got = store.retrieve(ctx, mode=mode)

    expected = Counter()
    longest_all = 0
    for source, shards_docs in (("live", [[d] for d in live]), ("corpus", corpus)):
        L = brute_longest(shards_docs, ctx, min_suffix, max_suffix) if shards_docs else 0
        longest_all = max(longest_all, L)
        lengths = [L] if mode == "longest" else range(L, min_suffix - 1, -1)
        for length in (lengths if L else []):
            for tokens, c in brute_counts(shards_docs, ctx, length, span).items():
                expected[(tokens, c, source, length)] += 1
    assert got.suffix_len == longest_all
    assert Counter((c.tokens, c.count, c.source, c.suffix_len) for c in got.candidates) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=tier_st, ctx=st.lists(st.integers(1, 4), min_size=1, max_size=12), k=st.integers(1, 4))
def test_rest_paper_mode_is_first_k_in_suffix_array_order(small_range, corpus, ctx, k):
    vocab = 5
    rc = RetrievalConfig(min_suffix=2, max_suffix=6, span=4, max_candidates=k, max_nodes=0)
    store = Datastore(fake_tokenizer(vocab), IndexConfig(), rc, corpus=[shard_of(s, vocab) for s in corpus])
    got = store.retrieve(ctx, mode="rest_paper", max_candidates=k)
    L = brute_longest(corpus, ctx, 2, 6)
    assert got.suffix_len == L
    expected = Counter()
    if L:
        for tokens, c in brute_counts(corpus, ctx, L, 4, first_k=k).items():
            expected[(tokens, c, "corpus", L)] += 1
    assert Counter((c.tokens, c.count, c.source, c.suffix_len) for c in got.candidates) == expected


@settings(max_examples=100, deadline=None)
@given(docs=st.lists(st.lists(st.integers(1, 300), max_size=30), min_size=1, max_size=4),
       dtype=st.sampled_from([">u2", ">u4"]))
def test_suffix_array_is_token_order(docs, dtype):
    text = np.asarray(concat(docs), dtype=dtype)
    sa = suffix_array(text, SEP)
    t = text.astype(np.int64).tolist()
    expected = sorted((p for p in range(len(t)) if t[p] != SEP), key=lambda p: t[p:])
    assert sa.tolist() == expected


def test_large_vocabulary_uses_u32_and_matches():
    vocab = 100_000
    docs = [[70_000, 80_000, 99_999, 5], [70_000, 80_000, 12]]
    store = Datastore(fake_tokenizer(vocab), IndexConfig(), RetrievalConfig(max_nodes=0),
                      corpus=[shard_of(docs, vocab, ">u4")])
    r = store.retrieve([1, 70_000, 80_000])
    assert r.suffix_len == 2
    assert sorted((c.tokens, c.count) for c in r.candidates) == [((12,), 1), ((99_999, 5), 1)]


def test_continuations_stop_at_the_separator():
    store = Datastore(fake_tokenizer(10), IndexConfig(), RetrievalConfig(span=5, max_nodes=0),
                      corpus=[shard_of([[1, 2, 3], [1, 2, 4, 5, 6, 7, 8, 9]], 10)])
    r = store.retrieve([9, 1, 2])
    assert sorted(c.tokens for c in r.candidates) == [(3,), (4, 5, 6, 7, 8)]


def test_out_of_vocabulary_context_ids_do_not_match_or_crash():
    store = Datastore(fake_tokenizer(10), IndexConfig(), RetrievalConfig(max_nodes=0),
                      corpus=[shard_of([[1, 2, 3]], 10)])
    assert store.retrieve([1, 2, 99]).suffix_len == 0
    assert store.retrieve([-5, 1, 2]).suffix_len == 2
    assert store.retrieve([]).suffix_len == 0


def test_sampling_is_even_deterministic_and_not_first_k():
    # 60 matches of (1, 2): continuations 3 (SA-first) x30, then 7 x30; a sample of 10
    docs = [[1, 2, 3]] * 30 + [[1, 2, 7]] * 30
    rc = RetrievalConfig(max_candidates=10, max_nodes=0)
    store = Datastore(fake_tokenizer(10), IndexConfig(), rc, corpus=[shard_of(docs, 10)])
    a = store.retrieve([1, 2])
    b = store.retrieve([1, 2])
    assert a.candidates == b.candidates
    counts = {c.tokens: c.count for c in a.candidates}
    assert counts == {(3,): 5, (7,): 5}
    first = store.retrieve([1, 2], mode="rest_paper", max_candidates=10)
    assert {c.tokens: c.count for c in first.candidates} == {(3,): 10}
    assert {c.tokens: c.count for c in store.retrieve([1, 2], mode="rest_paper").candidates} == \
        {(3,): 30, (7,): 30}  # the paper's first 5,000 by default


def test_sample_seed_changes_the_offset_only():
    docs = [[1, 2, i] for i in range(3, 9)] * 5
    counts = []
    for seed in (0, 1):
        rc = RetrievalConfig(max_candidates=6, max_nodes=0, sample_seed=seed)
        store = Datastore(fake_tokenizer(10), IndexConfig(), rc, corpus=[shard_of(docs, 10)])
        counts.append(sum(c.count for c in store.retrieve([1, 2]).candidates))
    assert counts == [6, 6]


@settings(max_examples=80, deadline=None)
@given(docs=st.lists(st.lists(st.integers(1, 4), max_size=25), min_size=1, max_size=5),
       dead=st.lists(st.booleans(), min_size=5, max_size=5), ctx=st.lists(st.integers(1, 4), min_size=2, max_size=8))
def test_dead_documents_never_count(docs, dead, ctx):
    vocab = 5
    view = ShardView(shard_of(docs, vocab)).with_dead(np.asarray(dead[:len(docs)]))
    live_docs = [d for d, x in zip(docs, dead) if not x]
    q = retrieval.Query(np.asarray(ctx[-6:], dtype=">u2").tobytes(), min(6, len(ctx)), 2, 6, 3,
                        10**6, 0, 0.0, "longest")
    found, L = retrieval.tier_candidates("workspace", [view], q)
    assert L == brute_longest([live_docs], ctx, 2, 6)
    got = Counter({c.tokens: c.count for c in found})
    assert got == (brute_counts([live_docs], ctx, L, 3) if L else Counter())


def trie_weights(items):
    w = Counter()
    for tokens, count in items:
        for d in range(1, len(tokens) + 1):
            w[tokens[:d]] += count
    return w


@settings(max_examples=100, deadline=None)
@given(conts=st.lists(st.lists(st.integers(1, 3), min_size=1, max_size=5), min_size=1, max_size=200),
       k=st.integers(1, 20))
def test_prefix_merge_keeps_the_heaviest_nodes_exact(conts, k):
    span = 5
    counter = Counter(tuple(c) for c in conts)
    items = sorted(counter.items())
    rows = np.full((len(items), span), -1, dtype=np.int32)
    for i, (t, _) in enumerate(items):
        rows[i, :len(t)] = t
    lengths = np.array([len(t) for t, _ in items])
    counts = np.array([c for _, c in items])
    m_cols, m_len, m_counts = retrieval.merge_prefixes(np.ascontiguousarray(rows.T), lengths, counts, k)
    merged = [(tuple(r[:n]), int(c)) for r, n, c in zip(m_cols.T.tolist(), m_len.tolist(), m_counts.tolist())]
    full, after = trie_weights(items), trie_weights(merged)
    heaviest = sorted(full.values(), reverse=True)
    kth = heaviest[k - 1] if len(heaviest) >= k else 0
    for node, weight in full.items():
        if weight > kth:
            assert after[node] == weight  # every node heavier than the k-th keeps its weight
    # continuations are shortened, or dropped when even their first token is too rare
    assert sum(c for _, c in merged) <= sum(counts)
    assert len(set(t for t, _ in merged)) == len(merged)
    if len(items) > k:
        assert len(merged) <= max(2 * k + 1, sum(1 for w in full.values() if w >= kth))
    # merging the raw sampled rows (repeats, each counting 1) keeps the same guarantee
    raw = np.repeat(rows, counts, axis=0)
    r_cols, r_len, r_counts = retrieval.merge_prefixes(np.ascontiguousarray(raw.T), np.repeat(lengths, counts),
                                                       np.ones(raw.shape[0], dtype=np.int64), k)
    if r_cols.shape[1] < raw.shape[0] or int(r_counts.sum()) < raw.shape[0]:  # it merged
        from_raw = [(tuple(r[:n]), int(c)) for r, n, c in zip(r_cols.T.tolist(), r_len.tolist(), r_counts.tolist())]
        assert len(set(t for t, _ in from_raw)) == len(from_raw)
        after_raw = trie_weights(from_raw)
        for node, weight in full.items():
            if weight > kth:
                assert after_raw[node] == weight


def test_unknown_mode_is_an_error():
    from rest_lsp.errors import DatastoreError

    store = Datastore(fake_tokenizer(10), IndexConfig(), RetrievalConfig(), corpus=[shard_of([[1, 2]], 10)])
    with pytest.raises(DatastoreError):
        store.retrieve([1, 2], mode="nope")


def test_live_buffers_replace_and_drop():
    store = Datastore(fake_tokenizer(10), IndexConfig(), RetrievalConfig(max_nodes=0))
    store.set_buffer("a", [1, 2, 3])
    assert [c.tokens for c in store.retrieve([1, 2]).candidates] == [(3,)]
    store.set_buffer("a", [1, 2, 4])
    assert [c.tokens for c in store.retrieve([1, 2]).candidates] == [(4,)]
    store.drop_buffer("a")
    assert store.retrieve([1, 2]).candidates == []


def test_suffix_range_of_missing_pattern_is_empty():
    view = ShardView(shard_of([[1, 2, 3]], 10))
    lo, hi = suffix_range(view, np.asarray([4, 5], dtype=">u2").tobytes(), 2)
    assert lo == hi
