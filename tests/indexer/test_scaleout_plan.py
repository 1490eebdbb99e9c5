"""The partitioned corpus build without Ray: the plan, reuse of unchanged shards, failures, packaging."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from indexer.building import shards as build
from indexer.storage import indexdir
from indexer.building import partition
from indexer.datastore import Datastore
from indexer.building.sources import SourceFile
from indexer.workspace_index import build_corpus
from indexer.settings import IndexConfig
from rest_lsp.errors import ClusterError, DatastoreError
from scaleout_testing import SHARD_TOKENS, make_corpus, query_answers, random_contexts


def files_of(sizes, prefix="f"):
    return [(SourceFile(f"/x/{prefix}{i:04d}.py", s, 0), f"/x/{prefix}{i:04d}.py") for i, s in enumerate(sizes)]


def shard_sets(plans):
    return {tuple(name for _, name in p) for p in plans}


def test_plan_covers_every_file_in_order_near_the_target():
    rng = random.Random(1)
    files = files_of([rng.randint(100, 20_000) for _ in range(3000)])
    plans = partition.plan_shards(files, 200_000)
    assert [item for p in plans for item in p] == files
    target = 200_000 * partition.BYTES_PER_TOKEN
    sizes = [sum(f.size for f, _ in p) for p in plans]
    assert max(sizes[:-1]) <= 2 * target + 20_000 and min(sizes[:-1]) >= target // 4
    assert 0.5 * target < sum(sizes) / len(sizes) < 1.6 * target


def test_an_edit_insert_or_delete_changes_only_the_shards_around_it():
    rng = random.Random(2)
    sizes = [rng.randint(100, 20_000) for _ in range(3000)]
    before = shard_sets(partition.plan_shards(files_of(sizes), 200_000))
    edited = list(sizes)
    edited[1500] += 3000
    inserted = files_of(sizes)
    inserted.insert(1200, (SourceFile("/x/f1199b.py", 9000, 0), "/x/f1199b.py"))
    deleted = files_of(sizes)
    del deleted[700]
    for files in (files_of(edited), inserted, deleted):
        after = shard_sets(partition.plan_shards(files, 200_000))
        assert len(after - before) <= 2, len(after - before)  # a plain cut by size would redo every later one
        assert len(before) >= 20


@pytest.fixture
def corpus_cfg(tmp_path):
    return IndexConfig(corpus_roots=[str(make_corpus(tmp_path / "corpus"))])


def test_a_partitioned_build_of_one_shard_answers_as_the_streaming_build(tmp_path, corpus_cfg, tiny_tokenizer):
    stream = build_corpus(corpus_cfg, tiny_tokenizer, tmp_path / "stream", sync=False)
    parted = partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, tmp_path / "parted",
                                            shard_tokens=10**9, sync=False)
    assert len(stream.shards) == len(parted.shards) == 1
    assert parted.tokens == stream.tokens and parted.files == stream.files
    contexts = random_contexts(tiny_tokenizer, 60)
    a = Datastore.open(tmp_path / "stream", tiny_tokenizer)
    b = Datastore.open(tmp_path / "parted", tiny_tokenizer)
    assert query_answers(a, contexts) == query_answers(b, contexts)


def test_a_rerun_reuses_every_unchanged_shard(tmp_path, corpus_cfg, tiny_tokenizer):
    out = tmp_path / "index"
    calls = []
    first = partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, out, shard_tokens=SHARD_TOKENS, sync=False,
                                           progress=lambda d, t, m: calls.append((d, t)))
    n = len(first.shards)
    assert n >= 4 and first.reused_shards == 0
    assert calls[0] == (0, n) and calls[-1] == (n, n) and len(calls) == n + 1
    again = partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, out, shard_tokens=SHARD_TOKENS, sync=False)
    assert again.shards == first.shards and again.reused_shards == n
    # one file changes: its shard is rebuilt, every other one is reused
    victim = sorted((tmp_path / "corpus").rglob("*.py"))[17]
    victim.write_text(victim.read_text() + "\nCHANGED = 1\n")
    third = partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, out, shard_tokens=SHARD_TOKENS, sync=False)
    assert third.reused_shards >= len(third.shards) - 2 and set(third.shards) != set(first.shards)
    fresh = partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, tmp_path / "fresh", shard_tokens=SHARD_TOKENS,
                                           sync=False)
    assert fresh.shards == third.shards  # content-addressed: the same inputs, the same shards
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(third.shards + ["CURRENT"])
    contexts = random_contexts(tiny_tokenizer, 40, seed=3)
    assert query_answers(Datastore.open(out, tiny_tokenizer), contexts) == \
        query_answers(Datastore.open(tmp_path / "fresh", tiny_tokenizer), contexts)


def test_a_damaged_shard_is_rebuilt_not_reused(tmp_path, corpus_cfg, tiny_tokenizer):
    out = tmp_path / "index"
    first = partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, out, shard_tokens=SHARD_TOKENS, sync=False)
    sa = out / first.shards[1] / "sa.bin"
    sa.write_bytes(sa.read_bytes()[:-4])
    again = partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, out, shard_tokens=SHARD_TOKENS, sync=False)
    assert again.shards == first.shards and again.reused_shards == len(first.shards) - 1
    Datastore.open(out, tiny_tokenizer, verify="full")


def test_a_shard_that_fails_stops_the_build_and_keeps_the_previous_index(tmp_path, corpus_cfg, tiny_tokenizer,
                                                                         monkeypatch):
    out = tmp_path / "index"
    partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, out, shard_tokens=SHARD_TOKENS, sync=False)
    before = indexdir.read_current(out)
    victim = sorted((tmp_path / "corpus").rglob("*.py"))[5]
    victim.write_text(victim.read_text() + "\nX = 2\n")
    real = build.build_shard

    def failing(files, *args, **kwargs):
        if any(f.path == str(victim) for f, _ in files):
            raise OSError(28, "No space left on device")
        return real(files, *args, **kwargs)

    monkeypatch.setattr(build, "build_shard", failing)
    with pytest.raises(DatastoreError) as info:
        partition.build_corpus_sharded(corpus_cfg, tiny_tokenizer, out, shard_tokens=SHARD_TOKENS, sync=False)
    message = str(info.value)
    assert "No space left on device" in message and "shard " in message and "previous index" in message
    assert indexdir.read_current(out)["shards"] == before["shards"]
    Datastore.open(out, tiny_tokenizer, verify="full")


def test_ray_missing_says_which_extra_to_install(monkeypatch, tmp_path, tiny_tokenizer_path):
    from indexer.remote import cluster
    from rest_lsp import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ClusterError) as info:
        cluster.require_ray()
    assert "rest-lsp[cluster]" in str(info.value)
    code = cli.main(["index", "build", "--corpus", str(make_corpus(tmp_path / "c", 3)), "--index-dir",
                     str(tmp_path / "out"), "--ray", "local", "--tokenizer", str(tiny_tokenizer_path)])
    assert code == ClusterError.exit_code


def test_the_core_never_imports_ray():
    code = ("import sys\n"
            "import indexer.remote.cluster, indexer.search.fanout, indexer.building.partition, indexer.remote.tier, indexer.datastore\n"
            "from rest_lsp import cli\n"
            "cli.build_parser()\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cluster_extra_pins_ray_serve():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("ray") for dep in project["dependencies"])
    assert any(dep.startswith("ray[serve]==") for dep in project["optional-dependencies"]["cluster"])


def test_cli_sharded_build_json(tmp_path, tiny_tokenizer_path, capsys):
    import json

    from rest_lsp import cli

    corpus = make_corpus(tmp_path / "c", 24)
    args = ["index", "build", "--corpus", str(corpus), "--index-dir", str(tmp_path / "out"), "--sharded",
            "--shard-tokens", str(SHARD_TOKENS), "--tokenizer", str(tiny_tokenizer_path), "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 24 and len(report["shards"]) >= 2 and report["executor"] == "in-process"
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["reused_shards"] == len(report["shards"])
