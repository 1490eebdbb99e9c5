"""The compact corpus tier: stored trees equal brute force, longest lookup, budget, corruption."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.search import compact
from indexer.building import compact as compact_build
from indexer.storage import indexdir
from indexer.search.compact import CompactIndex, CompactSettings
from indexer.search.retrieval import merge_prefixes
from indexer.storage.shard import Doc, Shard, write_shard
from rest_lsp.errors import DatastoreError, IndexCorruptError, TokenizerMismatchError

SEP = 0
VOCAB = 12
IDENTITY = "test-tokenizer"


def shard_of(docs: list[list[int]], width: int = 2, vocab: int = VOCAB) -> Shard:
    return Shard.from_docs([Doc(f"d{i}", np.asarray(d, dtype=np.int64)) for i, d in enumerate(docs)],
                           token_dtype=np.dtype(f">u{width}"), separator_id=SEP, vocab_size=vocab)


def brute_trees(docs: list[list[int]], s: CompactSettings) -> dict[tuple[int, ...], tuple[int, set]]:
    """n-gram -> (count, {(continuation, count)} of its stored tree), by scanning the documents."""
    conts: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for d in docs:
        for p in range(len(d)):
            for n in range(1, s.max_n + 1):
                if p + n <= len(d):
                    conts.setdefault(tuple(d[p:p + n]), []).append(tuple(d[p + n:p + n + s.depth]))
    out = {}
    for gram, cs in conts.items():
        if len(cs) < s.min_count:
            continue
        distinct = sorted(set(cs))
        counts = np.array([cs.count(c) for c in distinct])
        cols = np.full((s.depth, len(distinct)), -1, dtype=np.int32)
        for i, c in enumerate(distinct):
            cols[:len(c), i] = c
        lengths = np.array([len(c) for c in distinct])
        keep = lengths > 0
        cols, lengths, counts = merge_prefixes(cols[:, keep], lengths[keep], counts[keep], s.tree_nodes)
        tree = {(tuple(int(t) for t in cols[:n, i]), int(c)) for i, (n, c) in enumerate(zip(lengths, counts))}
        out[gram] = (len(cs), tree)
    return out


docs_strategy = st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=30), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(docs=docs_strategy, max_n=st.integers(1, 3), depth=st.integers(1, 5), tree_nodes=st.integers(1, 8))
def test_every_kept_tree_equals_brute_force(docs, max_n, depth, tree_nodes):
    s = CompactSettings(max_n=max_n, depth=depth, tree_nodes=tree_nodes, min_count=2)
    entries, qualified = compact_build.compact_entries([shard_of(docs)], s)
    truth = brute_trees(docs, s)
    assert qualified == len(truth) == len(entries)
    ranked = sorted(truth, key=lambda g: (-truth[g][0], len(g), g))
    got = [tuple(int.from_bytes(k[i:i + 2], "big") for i in range(0, compact_build._key_len(k, 2) * 2, 2))
           for k, _ in entries]
    assert got == ranked  # count desc, shorter first, then key order
    for (key, blob), gram in zip(entries, got):
        assert set(compact.unpack_tree(blob, 2)) == truth[gram][1], gram


#: token ids whose big-endian bytes hold 0x00 and 0xFF (keys are compared byte-wise), per width
EDGE_IDS = {2: [1, 0xFF, 0x100, 0xFF00, 0xFFFE], 4: [1, 0x100, 0xFF00, 0x10000, 0x100FF]}


def cut_to_span(tree: set, span: int) -> set:
    """A stored tree's (continuation, count) pairs cut to ``span`` tokens, equal ones merged."""
    merged: dict[tuple[int, ...], int] = {}
    for tokens, count in tree:
        merged[tokens[:span]] = merged.get(tokens[:span], 0) + count
    return set(merged.items())


@settings(max_examples=40, deadline=None)
@given(width=st.sampled_from([2, 4]), data=st.data())
def test_lookup_equals_a_scan_of_every_kept_ngram(width, data):
    import tempfile
    from pathlib import Path

    ids = EDGE_IDS[width]
    docs = data.draw(st.lists(st.lists(st.sampled_from(ids), min_size=1, max_size=25), min_size=1, max_size=5))
    s = CompactSettings(max_n=data.draw(st.integers(1, 4)), depth=3, tree_nodes=6, min_count=2)
    entries, _ = compact_build.compact_entries([shard_of(docs, width, vocab=ids[-1] + 1)], s)
    truth = brute_trees(docs, s)
    unusable = [-1, (1 << (8 * width)) - 1]  # ids a key cannot hold end the usable suffix
    with tempfile.TemporaryDirectory() as tmp:
        out = compact_build.write_compact(Path(tmp) / "c", entries, s, width=width, tokenizer_identity=IDENTITY,
                                          source="", source_tokens=0, sync=False)
        c = CompactIndex.open(out)
        for _ in range(20):
            ctx = data.draw(st.lists(st.sampled_from(ids + unusable), max_size=6))
            span = data.draw(st.one_of(st.none(), st.integers(1, s.depth)))
            usable = next((k for k, t in enumerate(reversed(ctx)) if t in unusable), len(ctx))
            n = next((n for n in range(min(usable, s.max_n), 0, -1) if tuple(ctx[-n:]) in truth), 0)
            cands, got_n = c.lookup(ctx, span)
            assert got_n == n
            if n:
                tree = truth[tuple(ctx[-n:])][1]
                want = tree if span is None else cut_to_span(tree, span)
                assert {(x.tokens, x.count) for x in cands} == want and len(cands) == len(want)
                assert all(x.source == "corpus-compact" and x.suffix_len == n for x in cands)
            else:
                assert cands == []


def test_candidates_made_slot_by_slot_equal_constructed_ones(monkeypatch):
    from indexer.search.retrieval import Candidate

    conts, counts = ((5, 6, 7), (5,), (300, 70000)), (9, 4, 1)
    want = tuple(Candidate(t, k, "corpus-compact", 2) for t, k in zip(conts, counts))
    made = compact.make_candidates(conts, counts, 2)
    assert made == want and all(type(x) is Candidate for x in made)
    assert [hash(x) for x in made] == [hash(x) for x in want]
    monkeypatch.setattr(compact, "_slots_settable", lambda: False)  # a Candidate with other fields
    assert compact.make_candidates(conts, counts, 2) == want
    assert compact.make_candidates((), (), 1) == ()


def build_dir(tmp_path, docs, **kw) -> tuple:
    """A corpus index on disk over ``docs`` and a compact tier built from it."""
    shard = shard_of(docs)
    src = tmp_path / "corpus"
    final = write_shard(src, shard.arrays, [Doc(p, np.zeros(0)) for p in shard.paths],
                        tokenizer_identity=IDENTITY, separator_id=SEP, vocab_size=VOCAB, tier="corpus")
    indexdir.write_current(src, {"kind": "corpus", "tokenizer": IDENTITY, "shards": [final.name]})
    out = tmp_path / "compact"
    report = compact_build.build_compact(src, out, CompactSettings(**kw))
    return src, out, report


DOCS = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 7], [2, 3, 9, 9], [5, 1, 2, 3, 4, 5, 6], [8, 8, 8, 2, 3]]


def test_lookup_takes_the_longest_kept_suffix(tmp_path):
    _, out, report = build_dir(tmp_path, DOCS, max_n=3, depth=4, tree_nodes=8)
    c = CompactIndex.open(out, tokenizer_identity=IDENTITY)
    cands, n = c.lookup([9, 1, 2, 3])  # "1 2 3" is kept (3 times): its continuations
    assert n == 3 and all(x.suffix_len == 3 and x.source == "corpus-compact" for x in cands)
    assert {(x.tokens, x.count) for x in cands} == {((4, 5, 6), 2), ((4, 7), 1)}
    cands, n = c.lookup([11, 11, 9])  # "9" alone is kept (twice): the 1-gram's tree
    assert n == 1 and {x.tokens for x in cands} == {(9,)}
    assert c.lookup([11]) == ([], 0)  # never seen
    assert c.lookup([]) == ([], 0)
    short = c.lookup([1, 2, 3], span=1)[0]
    assert {(x.tokens, x.count) for x in short} == {((4,), 3)}


def test_budget_is_respected_to_the_byte(tmp_path):
    big = [[int(t) for t in np.random.default_rng(i).integers(1, 10, 200)] for i in range(20)]
    _, out_all, full = build_dir(tmp_path / "a", big, max_n=3, depth=6)
    for budget in (6000, 9000, full.bytes - 1):
        _, out, report = build_dir(tmp_path / str(budget), big, max_n=3, depth=6, max_bytes=budget)
        on_disk = sum(f.stat().st_size for f in out.iterdir())
        assert on_disk == report.bytes <= budget
        assert 0 < report.entries < full.entries
    assert build_dir(tmp_path / "t", big, max_n=2, top_ngrams=5)[2].entries == 5


def test_damage_is_detected(tmp_path):
    src, out, _ = build_dir(tmp_path, DOCS, max_n=2)
    with pytest.raises(TokenizerMismatchError):
        CompactIndex.open(out, tokenizer_identity="another")
    trees = out / "trees.bin"
    data = bytearray(trees.read_bytes())
    data[len(data) // 2] ^= 0x40
    trees.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="checksum"):
        CompactIndex.open(out)
    trees.write_bytes(bytes(data[:-3]))
    with pytest.raises(IndexCorruptError, match="bytes"):
        CompactIndex.open(out)
    (out / "manifest.msgpack").write_bytes(b"\x00garbage")
    with pytest.raises(IndexCorruptError, match="manifest"):
        CompactIndex.open(out)


def test_a_rebuilt_source_makes_the_tier_stale(tmp_path):
    from indexer.workspace_index import open_compact

    src, out, _ = build_dir(tmp_path, DOCS, max_n=2)

    class Tok:
        identity = IDENTITY

    open_compact(out, Tok())  # fresh: fine
    pointer = indexdir.read_current(src)
    indexdir.write_current(src, {**pointer, "rebuilt": True})
    with pytest.raises(DatastoreError, match="stale"):
        open_compact(out, Tok())


def test_datastore_drafts_from_the_compact_tier_and_decoding_stays_exact(tmp_path):
    import types

    from engine_testing import reference_greedy, tiny_model
    from indexer.datastore import Datastore
    from indexer.settings import IndexConfig, RetrievalConfig
    from rest_lsp.drafting.datastore import DatastoreDrafter
    from rest_lsp.engine.engine import Engine

    model = tiny_model("llama", seed=4)
    prompt = [5, 9, 13, 5, 9]
    truth = reference_greedy(model, prompt, 20)
    rng = np.random.default_rng(0)
    # the corpus repeats the true continuation (good drafts) among random text (bad ones)
    docs = [prompt + truth] * 3 + [[int(t) for t in rng.integers(1, 64, 40)] for _ in range(5)]
    src, out, _ = build_dir(tmp_path, docs, max_n=4, depth=8, tree_nodes=16)
    tok = types.SimpleNamespace(identity=IDENTITY, token_dtype=np.dtype(">u2"), vocab_size=64, separator_id=SEP,
                                separator="<sep>", source="test")
    store = Datastore(tok, IndexConfig(), RetrievalConfig())
    store.use_compact(CompactIndex.open(out, tokenizer_identity=IDENTITY))
    r = store.retrieve(prompt, mode="all_lengths")
    assert r.suffix_len == 4 and r.candidates and r.candidates[0].source == "corpus-compact"
    assert store.stats()["corpus"]["kind"] == "compact"
    gen = Engine(model, drafter=DatastoreDrafter(store), eos_ids=()).complete(prompt, 20, budget=8)
    assert list(gen.tokens) == truth
    assert gen.stats.steps < 20  # the compact tier's drafts were accepted


def test_rank_next_prefers_predictable_ngrams():
    # "1" occurs 4 times with 4 different next tokens; "2" 3 times, always followed by 9
    docs = [[1, 5], [1, 6], [1, 7], [1, 8], [2, 9], [2, 9], [2, 9]]
    shard = shard_of(docs)
    by_count, _ = compact_build.compact_entries([shard], CompactSettings(max_n=1, depth=2, top_ngrams=1))
    by_next, _ = compact_build.compact_entries([shard], CompactSettings(max_n=1, depth=2, top_ngrams=1, rank="next"))
    assert by_count[0][0][:2] == b"\x00\x01" and by_next[0][0][:2] == b"\x00\x02"
    assert set(compact.unpack_tree(by_next[0][1], 2)) == {((9,), 3)}
