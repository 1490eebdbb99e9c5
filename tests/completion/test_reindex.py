"""``rest-lsp.reindex`` rebuilds: ``CompletionService.start(rebuild=True)`` (what the command runs)
builds the workspace's index again from its files, where a plain start reopens the one on disk."""

from __future__ import annotations

from indexer_fixtures import SAMPLE_CODE, make_workspace


def test_a_rebuild_builds_the_workspace_index_again_where_a_start_reopens_it(tmp_path, monkeypatch):
    from indexer import workspace_index
    from indexer.storage import indexdir
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config

    builds: list[str] = []
    build = workspace_index.build_workspace

    def counted(root, *args, **kwargs):
        builds.append(root)
        return build(root, *args, **kwargs)

    monkeypatch.setattr(workspace_index, "build_workspace", counted)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ws = make_workspace(tmp_path / "proj", {"m.py": SAMPLE_CODE})
    corpus = make_workspace(tmp_path / "corpus", {"c.py": "x = 1\n"})
    config = Config.strict({"model": {"threads": 1},
                            "index": {"corpus_roots": [str(corpus)], "index_dir": str(tmp_path / "index")},
                            "retrieval": {"history_warmup": 0, "history_tokens": 0}})
    service = CompletionService(config, [str(ws)])
    try:
        service.start()
        assert builds == [str(ws)]  # the first start builds the missing index
        wdir = workspace_index.workspace_dir(str(ws), config.index)
        first = indexdir.read_current(wdir)
        service.start()  # a start with the index current reopens it
        assert builds == [str(ws)]
        service.start(rebuild=True)  # rest-lsp.reindex
        assert builds == [str(ws), str(ws)]
        assert service.state == "ready"
        again = indexdir.read_current(wdir)
        assert again["root"] == first["root"] == str(ws) and again["shards"]
        assert service.store.workspace is not None and service.store.workspace.pointer == again
    finally:
        service.close()
