"""The served index (Ray Serve on a local instance, num_cpus=2, 127.0.0.1): exactly the local answers.

One Ray instance and one Serve application for the module: a multi-shard corpus index split over
two replicas, asked over HTTP (msgpack) and compared with a local ``Datastore`` over the same
shards, over many random queries in every mode.
"""

from __future__ import annotations

import dataclasses
import socket

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from indexer.remote import cluster  # noqa: E402
from indexer.datastore import Datastore  # noqa: E402
from indexer.remote.tier import Request, RemoteTier  # noqa: E402
from rest_lsp.config.schema import IndexConfig, RetrievalConfig  # noqa: E402
from rest_lsp.errors import TokenizerMismatchError  # noqa: E402
from scaleout_testing import MODES, build_index, random_contexts  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_tokenizer):
    index, _ = build_index(tmp_path_factory.mktemp("serve"), tiny_tokenizer, 40, seed=11, min_shards=4)
    started = cluster.connect("local", num_cpus=2, object_store_mb=128)
    info = cluster.serve_index(index, host="127.0.0.1", port=free_port(), replicas=2)
    yield info, index
    from ray import serve

    serve.shutdown()
    if started:
        ray.shutdown()


def test_info_names_the_index(served, tiny_tokenizer):
    info, index = served
    got = RemoteTier(info["url"], tiny_tokenizer.identity, budget_ms=5, retry_s=0).info()
    assert got["tokenizer"] == tiny_tokenizer.identity and got["replicas"] == 2 and got["shards"] >= 4
    assert got["tokens"] == sum(s.n_tokens for s in Datastore.open(index, tiny_tokenizer).corpus)


@pytest.mark.parametrize("retrieval", [RetrievalConfig(), RetrievalConfig(max_candidates=5, max_nodes=6, span=4),
                                       RetrievalConfig(min_suffix=1, max_candidates=2, sample_seed=3)],
                         ids=["defaults", "small-samples", "min1-seed3"])
def test_the_endpoint_answers_exactly_as_the_local_datastore(served, tiny_tokenizer, retrieval):
    info, index = served
    local = Datastore.open(index, tiny_tokenizer, retrieval=retrieval)
    tier = RemoteTier(info["url"], tiny_tokenizer.identity, budget_ms=5, retry_s=0)
    contexts = random_contexts(tiny_tokenizer, 70, seed=21)
    compared = 0
    for mode in MODES:
        for ctx in contexts:
            want = local.retrieve(ctx, mode=mode)
            got = tier.fetch(Request.of_query(tiny_tokenizer.identity, ctx, local.query(ctx, mode=mode)))
            assert (got.candidates, got.suffix_len) == (want.candidates, want.suffix_len), (mode, ctx)
            compared += bool(want.candidates)
    assert compared > 100  # most queries found something to compare


def test_a_daemon_drafts_from_the_served_tier(served, tiny_tokenizer):
    info, index = served
    local = Datastore.open(index, tiny_tokenizer)
    daemon = Datastore(tiny_tokenizer, IndexConfig(remote_datastores=[info["url"]], remote_budget_ms=10_000),
                       RetrievalConfig())
    daemon.use_remote([info["url"]])
    for ctx in random_contexts(tiny_tokenizer, 20, seed=22):
        want, got = local.retrieve(ctx, mode="all_lengths"), daemon.retrieve(ctx, mode="all_lengths")
        assert (got.candidates, got.suffix_len) == (want.candidates, want.suffix_len)
    assert daemon.stats()["remote"][0]["answered"] == 20
    daemon.close()


def test_another_tokenizer_is_refused(served, tiny_tokenizer):
    info, index = served
    local = Datastore.open(index, tiny_tokenizer)
    tier = RemoteTier(info["url"], "another", budget_ms=5, retry_s=0)
    ctx = random_contexts(tiny_tokenizer, 1)[0]
    req = dataclasses.replace(Request.of_query(tiny_tokenizer.identity, ctx, local.query(ctx)), tokenizer="another")
    with pytest.raises(TokenizerMismatchError) as err:
        tier.fetch(req)
    assert err.value.found == tiny_tokenizer.identity and err.value.expected == "another"
    assert "another vocabulary" in str(err.value)


def test_cli_query_remote_equals_local(served, tiny_tokenizer_path, capsys):
    import json

    from rest_lsp import cli

    info, index = served
    base = ["index", "query", "def norm(self):\\n        return", "--tokenizer", str(tiny_tokenizer_path),
            "--json", "--mode", "all_lengths"]
    assert cli.main(base + ["--remote", info["url"]]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert cli.main(base + ["--index-dir", str(index)]) == 0
    local = json.loads(capsys.readouterr().out)
    assert remote["candidates"] and remote["candidates"] == local["candidates"]
    assert remote["suffix_len"] == local["suffix_len"]
