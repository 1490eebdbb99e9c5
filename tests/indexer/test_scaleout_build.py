"""The corpus build on Ray (a local instance, num_cpus=2): the same index as in-process, and faults.

One Ray instance for the module.  A killed worker is simulated by a task that ends its process
(``os._exit``) the first time it runs a given shard, after leaving a half-written shard behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from indexer.remote import cluster
from indexer.storage import indexdir
from indexer.building import partition  # noqa: E402
from indexer.datastore import Datastore  # noqa: E402
from indexer.storage.shard import ARRAY_FILES  # noqa: E402
from rest_lsp.config.schema import IndexConfig  # noqa: E402
from rest_lsp.errors import DatastoreError  # noqa: E402
from scaleout_testing import SHARD_TOKENS, make_corpus, query_answers, random_contexts  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    started = cluster.connect("local", num_cpus=2, object_store_mb=128)
    assert started
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("scaleout") / "corpus", n_files=48, seed=5)


@pytest.fixture
def cfg(corpus):
    return IndexConfig(corpus_roots=[str(corpus)])


def build_ray(cfg, tok, out, **kwargs):
    return partition.build_corpus_sharded(cfg, tok, out, shard_tokens=SHARD_TOKENS, sync=False,
                                          executor=cluster.ray_executor(sync=False, **kwargs), executor_name="ray")


def crash_once(marker: Path, victim_index: int):
    """A shard task that kills its worker the first time it builds the shard holding file ``victim_index``,
    after writing a partial temporary shard directory."""

    def task(spec, files, out_dir, sync, threads):
        if any(name.endswith(f"mod{victim_index:02d}.py") for *_, name in files) and not marker.exists():
            marker.write_text(str(os.getpid()))
            partial = Path(out_dir) / f".tmp-corpus-partial-{os.getpid()}-dead"
            partial.mkdir()
            (partial / "tokens.bin").write_bytes(b"\0" * 100)
            os._exit(1)
        return cluster.shard_task(spec, files, out_dir, sync, threads)

    return task


def test_ray_builds_the_same_index_as_the_in_process_build(tmp_path, cfg, tiny_tokenizer):
    local = partition.build_corpus_sharded(cfg, tiny_tokenizer, tmp_path / "local", shard_tokens=SHARD_TOKENS,
                                           sync=False)
    progress = []
    on_ray = partition.build_corpus_sharded(cfg, tiny_tokenizer, tmp_path / "ray", shard_tokens=SHARD_TOKENS,
                                            sync=False, executor=cluster.ray_executor(sync=False),
                                            progress=lambda d, t, m: progress.append((d, t, m)))
    assert len(local.shards) >= 4
    assert on_ray.shards == local.shards and on_ray.tokens == local.tokens and on_ray.files == local.files
    assert progress[-1][:2] == (len(local.shards), len(local.shards)) and "tokens/s" in progress[-1][2]
    for name in local.shards:
        for fname in ARRAY_FILES:
            assert (tmp_path / "local" / name / fname).read_bytes() == (tmp_path / "ray" / name / fname).read_bytes()
    contexts = random_contexts(tiny_tokenizer, 80, seed=7)
    a = Datastore.open(tmp_path / "local", tiny_tokenizer, verify="full")
    b = Datastore.open(tmp_path / "ray", tiny_tokenizer, verify="full")
    assert query_answers(a, contexts) == query_answers(b, contexts)
    # a re-run on Ray reuses every shard
    assert build_ray(cfg, tiny_tokenizer, tmp_path / "ray").reused_shards == len(local.shards)


def test_a_killed_worker_is_retried_and_the_build_completes(tmp_path, cfg, tiny_tokenizer):
    marker = tmp_path / "crashed"
    report = build_ray(cfg, tiny_tokenizer, tmp_path / "ray", retries=2, task=crash_once(marker, 20))
    assert marker.exists()  # the worker did die
    reference = partition.build_corpus_sharded(cfg, tiny_tokenizer, tmp_path / "local", shard_tokens=SHARD_TOKENS,
                                               sync=False)
    assert report.shards == reference.shards
    leftovers = [p.name for p in (tmp_path / "ray").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []  # the dead worker's partial shard was collected
    contexts = random_contexts(tiny_tokenizer, 40, seed=8)
    assert query_answers(Datastore.open(tmp_path / "ray", tiny_tokenizer, verify="full"), contexts) == \
        query_answers(Datastore.open(tmp_path / "local", tiny_tokenizer), contexts)


def test_a_killed_worker_without_retries_stops_the_build_and_keeps_the_previous_index(tmp_path, cfg, corpus,
                                                                                      tiny_tokenizer):
    out = tmp_path / "ray"
    build_ray(cfg, tiny_tokenizer, out)
    before = indexdir.read_current(out)
    contexts = random_contexts(tiny_tokenizer, 30, seed=9)
    answers = query_answers(Datastore.open(out, tiny_tokenizer), contexts)
    victim = corpus / "pkg1" / "mod33.py"
    original = victim.read_text()
    try:
        victim.write_text(original + "\nY = 3\n")  # so that the shard must be built again
        with pytest.raises(DatastoreError) as info:
            build_ray(cfg, tiny_tokenizer, out, retries=0, task=crash_once(tmp_path / "crashed", 33))
    finally:
        victim.write_text(original)
    message = str(info.value)
    assert "shard " in message and "mod" in message and "previous index is unchanged" in message
    assert "died" in message.lower() or "crash" in message.lower() or "worker" in message.lower(), message
    assert indexdir.read_current(out)["shards"] == before["shards"]
    assert query_answers(Datastore.open(out, tiny_tokenizer, verify="full"), contexts) == answers


def test_a_task_that_keeps_failing_names_the_reason(tmp_path, cfg, tiny_tokenizer):
    def task(spec, files, out_dir, sync, threads):
        if any(name.endswith("mod07.py") for *_, name in files):
            raise ValueError("tokenizer exploded on purpose")
        return cluster.shard_task(spec, files, out_dir, sync, threads)

    with pytest.raises(DatastoreError) as info:
        build_ray(cfg, tiny_tokenizer, tmp_path / "ray", retries=1, task=task)
    assert "tokenizer exploded on purpose" in str(info.value) and "ValueError" in str(info.value)
    assert not (tmp_path / "ray" / indexdir.POINTER).exists()  # no index at all rather than one with a hole


def test_cli_build_with_ray(tmp_path, corpus, tiny_tokenizer_path, capsys):
    import json

    from rest_lsp import cli

    out = tmp_path / "cli"
    args = ["index", "build", "--corpus", str(corpus), "--index-dir", str(out), "--ray", "local",
            "--shard-tokens", str(SHARD_TOKENS), "--tokenizer", str(tiny_tokenizer_path), "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["executor"].startswith("ray") and report["files"] == 48 and len(report["shards"]) >= 4
    assert ray.is_initialized()  # the module's instance was used, not shut down


def test_ray_messages_on_stdout_stay_out_of_the_json(tmp_path, corpus, tiny_tokenizer_path, capsys, monkeypatch):
    # Ray prints a retried task's error on stdout even with log_to_driver off (seen in CI)
    import json

    from indexer.remote import cluster
    from rest_lsp import cli

    real = cluster.build_on_ray

    def noisy(*args, **kwargs):
        print("(raylet) Task shard_task failed. There are 3 retries remaining, so the task will be retried.")
        return real(*args, **kwargs)

    monkeypatch.setattr(cluster, "build_on_ray", noisy)
    args = ["index", "build", "--corpus", str(corpus), "--index-dir", str(tmp_path / "cli"), "--ray", "local",
            "--shard-tokens", str(SHARD_TOKENS), "--tokenizer", str(tiny_tokenizer_path), "--json"]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["files"] == 48
    assert "(raylet) Task shard_task failed" in captured.err
