"""The remote tier in a daemon, without Ray: down, slow, wrong tokenizer, back again; the config.

A small HTTP server on 127.0.0.1 plays the served index: it answers with ``indexer.search.fanout`` over
the same shards (as Ray Serve's router does), hangs until released, or refuses the tokenizer.
Time never passes by sleeping: the tier's clock is a fake one the tests move.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time

import pytest

from indexer.search import fanout
from indexer.datastore import Datastore
from indexer.remote.tier import SLOW_STRIKES, Request, RemoteTier, encode_error, encode_retrieval
from indexer.storage.shard import Shard
from rest_lsp.config.schema import Config, IndexConfig, RetrievalConfig
from rest_lsp.errors import RemoteDatastoreError, TokenizerMismatchError
from scaleout_testing import LoopbackHttp, answer, build_index, make_corpus, random_contexts

BUDGET_MS = 40.0
#: scheduling noise allowed on a shared 2-core machine on top of a budget
SLACK_S = 0.25


class FakeServer:
    """A served index on a free loopback port: behaviour "answer", "hang" or "mismatch"."""

    def __init__(self, group: fanout.ShardGroup | None) -> None:
        self.group = group
        self.behaviour = "answer"
        self.release = threading.Event()
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests += 1
                if server.behaviour == "hang":
                    server.release.wait(10)
                    self.close_connection = True  # no answer: the client sees the connection close
                    return
                try:
                    req = Request.decode(body)
                    group = server.group
                    if server.behaviour == "mismatch":  # the same shards, said to be of another tokenizer
                        group = fanout.ShardGroup(group.shards, "index-of-another-tokenizer", group.vocab_size)
                    candidates, longest = fanout.retrieve([group], req)
                    status, out = 200, encode_retrieval(candidates, longest, 0.0)
                except Exception as exc:
                    status, out = encode_error(exc)
                answer(self, status, out)

        self.http = LoopbackHttp(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.release.set()
        self.http.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_tokenizer):
    return build_index(tmp_path_factory.mktemp("remote"), tiny_tokenizer, 24, seed=2, min_shards=2)


@pytest.fixture
def server(index, tiny_tokenizer):
    path, names = index
    s = FakeServer(fanout.ShardGroup.open(path, names, tiny_tokenizer.identity))
    yield s
    s.close()


def daemon_store(tok, url, clock, **cfg):
    """A daemon's datastore with no local corpus, one remote tier, and a fake clock."""
    store = Datastore(tok, IndexConfig(remote_datastores=[url], **{"remote_budget_ms": BUDGET_MS, **cfg}),
                      RetrievalConfig())
    store.use_remote([url])
    store.remotes[0].clock = clock
    return store


def timed(store, ctx):
    t0 = time.perf_counter()
    r = store.retrieve(ctx)
    return r, time.perf_counter() - t0


def test_an_answering_remote_tier_drafts_what_the_local_index_does(index, server, tiny_tokenizer):
    local = Datastore.open(index[0], tiny_tokenizer)
    store = daemon_store(tiny_tokenizer, server.url, FakeClock(), remote_budget_ms=5000.0)
    for ctx in random_contexts(tiny_tokenizer, 30, seed=4):
        for mode in ("longest", "all_lengths"):
            want, got = local.retrieve(ctx, mode=mode), store.retrieve(ctx, mode=mode)
            assert (got.candidates, got.suffix_len) == (want.candidates, want.suffix_len)
    assert store.remotes[0].stats()["answered"] == 60 and store.stats()["remote"][0]["state"] == "up"
    store.close()


def test_a_down_remote_tier_costs_nothing_is_logged_once_and_is_retried_later(index, server, tiny_tokenizer, caplog):
    url = server.url
    server.close()  # nothing listens there any more: connection refused
    clock = FakeClock()
    store = daemon_store(tiny_tokenizer, url, clock, remote_retry_s=30.0)
    local_only = Datastore.open(index[0], tiny_tokenizer)
    store.corpus, store.corpus_views = local_only.corpus, local_only.corpus_views  # a local corpus tier too
    caplog.set_level(logging.INFO, logger="indexer.remote.tier")
    contexts = random_contexts(tiny_tokenizer, 20, seed=5)
    for ctx in contexts:
        r, seconds = timed(store, ctx)
        assert seconds < BUDGET_MS / 1000 + SLACK_S
        want = local_only.retrieve(ctx)
        assert (r.candidates, r.suffix_len) == (want.candidates, want.suffix_len)
    tier = store.remotes[0]
    assert tier.state == "down" and tier.counts["calls"] == 1 and tier.counts["skipped"] == len(contexts) - 1
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and url in warnings[0].getMessage()
    clock.now += 31  # the retry time has come: one more try, still down, not logged again
    store.retrieve(contexts[0])
    assert tier.counts["calls"] == 2 and len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    store.close()


def test_a_hanging_remote_tier_waits_one_budget_then_never_blocks_a_step(index, server, tiny_tokenizer):
    server.behaviour = "hang"
    clock = FakeClock()
    store = daemon_store(tiny_tokenizer, server.url, clock)
    contexts = random_contexts(tiny_tokenizer, 12, seed=6)
    durations = [timed(store, ctx)[1] for ctx in contexts]
    assert all(d < BUDGET_MS / 1000 + SLACK_S for d in durations), durations
    tier = store.remotes[0]
    assert tier.counts["late"] == 1 and tier.counts["calls"] == 1  # later steps skip it while it is busy
    assert sum(durations[1:]) < BUDGET_MS / 1000 * 2 + SLACK_S  # only the first step waited
    server.release.set()  # the hung request ends (the server closes it); the tier is tried again
    server.behaviour = "answer"
    tier._inflight.exception(timeout=15)
    store.retrieve(contexts[0])
    assert tier.counts["calls"] == 2
    store.close()


def test_a_slow_remote_tier_is_left_out_after_strikes_and_back_when_it_answers(index, server, tiny_tokenizer, caplog):
    clock = FakeClock()
    store = daemon_store(tiny_tokenizer, server.url, clock, remote_retry_s=5.0)
    tier = store.remotes[0]
    caplog.set_level(logging.INFO, logger="indexer.remote.tier")
    ctx = random_contexts(tiny_tokenizer, 1, seed=7)[0]
    tier.budget_s = 0.0  # every answer is late: the step never waits
    store.index_config.remote_budget_ms = 1e-6
    for _ in range(SLOW_STRIKES):
        fut = tier.start(ctx, store.query(ctx))
        assert tier.collect(fut, time.perf_counter() - 1) is None
        fut.result(timeout=10)  # the late answer arrives after its step gave up
    assert tier.state == "down" and "later than" in tier.reason
    assert tier.start(ctx, store.query(ctx)) is None  # left out until the retry time
    clock.now += 6
    store.index_config.remote_budget_ms = 5000.0
    r = store.retrieve(ctx)
    assert tier.state == "up" and r.candidates
    messages = [rec.getMessage() for rec in caplog.records]
    assert sum("later than" in m for m in messages) == 1 and sum("answers again" in m for m in messages) == 1
    store.close()


def test_a_tokenizer_mismatch_is_a_clear_error_never_drafts(index, server, tiny_tokenizer, caplog):
    server.behaviour = "mismatch"
    store = daemon_store(tiny_tokenizer, server.url, FakeClock(), remote_budget_ms=5000.0)
    caplog.set_level(logging.INFO, logger="indexer.remote.tier")
    for ctx in random_contexts(tiny_tokenizer, 5, seed=8):
        assert store.retrieve(ctx).candidates == []  # no local tier here: nothing, and nothing wrong
    tier = store.remotes[0]
    assert tier.state == "mismatch" and tier.counts["calls"] == 1
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(errors) == 1 and "tokenizer" in errors[0] and "another vocabulary" in errors[0]
    with pytest.raises(TokenizerMismatchError) as info:  # the by-hand look raises it
        ctx = [1, 2, 3]
        tier.fetch(Request.of_query(tiny_tokenizer.identity, ctx, store.query(ctx)))
    assert info.value.expected == tiny_tokenizer.identity and info.value.found == "index-of-another-tokenizer"
    store.close()


def test_completions_arrive_within_the_budget_when_the_remote_tier_hangs(index, server, tiny_tokenizer):
    from engine_testing import reference_greedy, tiny_model
    from indexer_fixtures import SAMPLE_CODE
    from rest_lsp.drafting.datastore import DatastoreDrafter
    from rest_lsp.engine.engine import Engine

    server.behaviour = "hang"
    store = daemon_store(tiny_tokenizer, server.url, FakeClock())
    local = Datastore.open(index[0], tiny_tokenizer)
    store.corpus, store.corpus_views = local.corpus, local.corpus_views
    model = tiny_model("llama", "sdpa", seed=3, vocab=tiny_tokenizer.vocab_size)
    ids = tiny_tokenizer.encode(SAMPLE_CODE[:SAMPLE_CODE.index("def mul") + 7])
    engine = Engine(model, drafter=DatastoreDrafter(local, span=10), eos_ids=())
    engine.complete(ids, 24, budget=8)  # warm up
    t0 = time.perf_counter()
    ref = engine.complete(ids, 24, budget=8)
    local_seconds = time.perf_counter() - t0
    engine.drafter = DatastoreDrafter(store, span=10)  # the same local tier, plus the hanging remote one
    t0 = time.perf_counter()
    gen = engine.complete(ids, 24, budget=8)
    remote_seconds = time.perf_counter() - t0
    assert list(gen.tokens) == list(ref.tokens) == reference_greedy(model, ids, 24)
    assert gen.stats.drafted_tokens > 0
    assert store.remotes[0].counts["late"] == 1  # one step waited its budget; the others did not wait
    assert remote_seconds < local_seconds + BUDGET_MS / 1000 + 2 * SLACK_S
    store.close()


def test_config_checks_remote_options():
    config, problems = Config.from_dict({"index": {
        "remote_datastores": ["http://10.0.0.1:8000", "ftp://x", "http://", "http://h:99999"],
        "remote_budget_ms": -1, "remote_retry_s": -2}})
    assert config.index.remote_datastores == ["http://10.0.0.1:8000"]
    assert config.index.remote_budget_ms == IndexConfig.remote_budget_ms
    assert config.index.remote_retry_s == IndexConfig.remote_retry_s
    assert len(problems) == 5
    with pytest.raises(RemoteDatastoreError):
        RemoteTier("ftp://nowhere", "x", budget_ms=5, retry_s=1)


def test_open_or_build_attaches_the_configured_remote_tiers(tmp_path, index_env, tiny_tokenizer_path):
    from indexer.workspace_index import open_or_build

    config = Config()
    config.index.corpus_roots = [str(make_corpus(tmp_path / "c", 4))]
    config.index.remote_datastores = ["http://127.0.0.1:9"]
    store = open_or_build(None, config, tiny_tokenizer_path)
    assert [r.url for r in store.remotes] == ["http://127.0.0.1:9"]
    store.close()


def test_shard_group_refuses_shards_of_another_tokenizer(index):
    path, names = index
    with pytest.raises(TokenizerMismatchError):
        fanout.ShardGroup.open(path, names, "not-the-identity")
    assert Shard.open(path / names[0]).n_tokens > 0
