"""Scale-out retrieval without Ray: shards split over groups answer exactly as one local datastore.

The fan-out (probe, plan, gather, merge: ``indexer.search.fanout``) is what the Serve router runs over
its replicas; here the groups are called in-process, over random corpora, partitions and queries,
in every mode and with small sampling limits (so that the shares of ``max_candidates`` matter).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.search import fanout
from indexer.datastore import Datastore
from indexer.remote.tier import Request, decode_retrieval, encode_retrieval
from indexer.storage.shard import Doc, Shard
from indexer.tokens import IndexTokenizer
from indexer.settings import IndexConfig, RetrievalConfig
from rest_lsp.errors import RemoteDatastoreError, TokenizerMismatchError

SEP = 0
IDENTITY = "fanout-test-identity"


def tokenizer(vocab: int) -> IndexTokenizer:
    return IndexTokenizer(None, IDENTITY, SEP, "<sep>", vocab)


def shard_of(docs, vocab):
    return Shard.from_docs([Doc(f"d{i}", np.asarray(d, dtype=np.int64)) for i, d in enumerate(docs)],
                           token_dtype=np.dtype(">u2"), separator_id=SEP, vocab_size=vocab)


def groups_of(shards, cuts, vocab):
    """Contiguous groups of shards, cut after the given positions."""
    bounds = sorted({c for c in cuts if 0 < c < len(shards)})
    out, start = [], 0
    for b in bounds + [len(shards)]:
        out.append(fanout.ShardGroup(shards[start:b], IDENTITY, vocab))
        start = b
    return out


docs_st = st.lists(st.lists(st.integers(1, 5), min_size=0, max_size=60), min_size=1, max_size=5)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shards_docs=st.lists(docs_st, min_size=1, max_size=5), cuts=st.lists(st.integers(1, 4), max_size=3),
       ctx=st.lists(st.integers(0, 6), min_size=0, max_size=20), mode=st.sampled_from(["longest", "all_lengths", "rest_paper"]),
       max_candidates=st.sampled_from([1, 3, 7, 1000]), max_nodes=st.sampled_from([0, 4, 128]),
       span=st.integers(1, 6), min_suffix=st.integers(1, 3), seed=st.integers(0, 3))
def test_fanout_equals_one_local_datastore(shards_docs, cuts, ctx, mode, max_candidates, max_nodes, span,
                                           min_suffix, seed):
    vocab = 7
    shards = [shard_of(d, vocab) for d in shards_docs]
    cfg = RetrievalConfig(min_suffix=min_suffix, max_suffix=8, span=span, max_candidates=max_candidates,
                          max_nodes=max_nodes, sample_seed=seed)
    store = Datastore(tokenizer(vocab), IndexConfig(), cfg, corpus=shards)
    local = store.retrieve(ctx, mode=mode)
    req = Request.of_query(IDENTITY, ctx, store.query(ctx, mode=mode))
    # fresh shards for the groups: no cache shared with the local search
    remote_shards = [shard_of(d, vocab) for d in shards_docs]
    candidates, longest = fanout.retrieve(groups_of(remote_shards, cuts, vocab), req)
    assert longest == local.suffix_len
    assert candidates == local.candidates
    # and through the wire format, as the HTTP endpoint answers
    back = decode_retrieval(200, encode_retrieval(candidates, longest, 0.0), "http://test")
    assert back.candidates == local.candidates and back.suffix_len == local.suffix_len


def test_fanout_equals_one_local_datastore_on_larger_random_corpora():
    """Larger corpora than hypothesis likes to draw: ranges far over max_candidates, shared out."""
    import random

    rng = random.Random(12)
    vocab = 7
    for trial in range(150):
        shards_docs = [[[rng.randint(1, 4) for _ in range(rng.randint(0, 80))] for _ in range(rng.randint(1, 4))]
                       for _ in range(rng.randint(2, 6))]
        cuts = [rng.randint(1, len(shards_docs)) for _ in range(rng.randint(1, 3))]
        cfg = RetrievalConfig(min_suffix=rng.randint(1, 2), max_suffix=8, span=rng.randint(1, 5),
                              max_candidates=rng.choice([2, 5, 20]), max_nodes=rng.choice([0, 6, 128]),
                              sample_seed=trial)
        store = Datastore(tokenizer(vocab), IndexConfig(), cfg, corpus=[shard_of(d, vocab) for d in shards_docs])
        ctx = [rng.randint(1, 4) for _ in range(rng.randint(1, 10))]
        mode = rng.choice(["longest", "all_lengths", "rest_paper"])
        local = store.retrieve(ctx, mode=mode)
        req = Request.of_query(IDENTITY, ctx, store.query(ctx, mode=mode))
        groups = groups_of([shard_of(d, vocab) for d in shards_docs], cuts, vocab)
        assert fanout.retrieve(groups, req) == (local.candidates, local.suffix_len), trial


def test_a_request_of_another_tokenizer_is_refused():
    vocab = 7
    group = fanout.ShardGroup([shard_of([[1, 2, 3, 1, 2, 4]], vocab)], IDENTITY, vocab)
    store = Datastore(tokenizer(vocab), IndexConfig(), RetrievalConfig(), corpus=[])
    req = Request.of_query("another-tokenizer", [1, 2], store.query([1, 2]))
    with pytest.raises(TokenizerMismatchError) as info:
        group.retrieve(req)
    assert info.value.expected == IDENTITY and info.value.found == "another-tokenizer"


def test_the_wire_format_round_trips_and_rejects_garbage():
    store = Datastore(tokenizer(9), IndexConfig(), RetrievalConfig(span=4, max_candidates=17), corpus=[])
    req = Request.of_query(IDENTITY, list(range(1, 30)), store.query(list(range(1, 30)), mode="all_lengths"))
    assert Request.decode(req.encode()) == req
    assert len(req.context) == RetrievalConfig().max_suffix  # only the searchable tail travels
    for bad in (b"\xc1", b"\x80", dataclasses.replace(req, mode="nope").encode(),
                dataclasses.replace(req, min_suffix=0).encode()):
        with pytest.raises(RemoteDatastoreError) as info:
            Request.decode(bad)
        assert info.value.status == 400


def test_split_shards_keeps_order_and_balances_tokens(tmp_path, tiny_tokenizer):
    from indexer.storage import indexdir
    from indexer.building.shards import write_docs
    from indexer.workspace_index import corpus_pointer

    names = []
    for i, n in enumerate([100, 100, 400, 100, 100, 100]):
        doc = Doc(f"f{i}", np.full(n, 5, dtype=np.int64))
        names.append(write_docs([doc], tmp_path, tiny_tokenizer, "corpus", sync=False).name)
    indexdir.write_current(tmp_path, corpus_pointer(tiny_tokenizer, [], names), sync=False)
    for replicas in (1, 2, 3, 6, 10):
        _, groups = fanout.split_shards(tmp_path, replicas)
        assert [n for g in groups for n in g] == names
        assert len(groups) == min(replicas, len(names)) or replicas > 2
        assert all(groups)
