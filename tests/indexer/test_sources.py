"""The walk's skip rules: every file passed over has a reason, and nothing crashes the walk."""

from __future__ import annotations

import os

import pytest

from indexer.building import shards as build
from indexer.building import sources
from indexer_fixtures import make_workspace
from indexer.settings import IndexConfig


def walk(root, config=None, corpus=False):
    """(kept relative paths, {relative path: reason} of skips, stats)."""
    rules = sources.Rules.from_config(config or IndexConfig(), corpus=corpus)
    stats = sources.WalkStats()
    skips: list[sources.Skip] = []
    kept = {sources.relpath(f.path, root) for f in sources.walk(root, rules, stats, skips)}
    reasons = {sources.relpath(s.path.rstrip("/"), root): s.reason for s in skips}
    return kept, reasons, stats


def test_plain_files_are_kept(tmp_path):
    make_workspace(tmp_path, {"a.py": "x = 1\n", "pkg/b.py": "y = 2\n", "README.md": "hi\n"})
    kept, reasons, stats = walk(tmp_path)
    assert kept == {"a.py", "pkg/b.py", "README.md"}
    assert stats.files == 3 and not reasons


def test_git_dir_and_ignore_globs_are_skipped(tmp_path):
    make_workspace(tmp_path, {".git/config": "x", "node_modules/m.js": "x", "__pycache__/a.pyc": b"\0",
                              "src/.venv/lib.py": "x", "keep.py": "x"})
    kept, reasons, _ = walk(tmp_path)
    assert kept == {"keep.py"}
    assert reasons[".git"] == "ignored" and reasons["node_modules"] == "ignored"
    assert reasons["src/.venv"] == "ignored"


def test_secrets_are_never_indexed(tmp_path):
    files = {".env": "TOKEN=1", "config/.env.local": "x", "id_rsa": "k", "certs/server.pem": "k",
             ".aws/credentials": "k", "app/secrets.yaml": "k", "ok.py": "x"}
    make_workspace(tmp_path, files)
    kept, reasons, stats = walk(tmp_path)
    assert kept == {"ok.py"}
    for rel in (".env", "config/.env.local", "id_rsa", "certs/server.pem", ".aws", "app/secrets.yaml"):
        assert reasons[rel] == "secret", rel
    assert stats.skipped["secret"] == 6


def test_secret_globs_are_configurable(tmp_path):
    make_workspace(tmp_path, {"token.txt": "x", ".env": "x"})
    kept, reasons, _ = walk(tmp_path, IndexConfig(secret_globs=["token.txt"]))
    assert kept == {".env"} and reasons["token.txt"] == "secret"


def test_gitignore_nested_and_negated(tmp_path):
    make_workspace(tmp_path, {
        ".gitignore": "*.log\nbuild/\n",
        "a.log": "x", "build/out.py": "x", "src/.gitignore": "!keep.log\ngen_*.py\n",
        "src/keep.log": "x", "src/drop.log": "x", "src/gen_x.py": "x", "src/main.py": "x",
        "other/gen_y.py": "x",
    })
    kept, reasons, _ = walk(tmp_path)
    assert kept == {".gitignore", "src/.gitignore", "src/keep.log", "src/main.py", "other/gen_y.py"}
    assert reasons["a.log"] == reasons["build"] == reasons["src/drop.log"] == "gitignore"
    assert reasons["src/gen_x.py"] == "gitignore"


def test_rest_lspignore(tmp_path):
    make_workspace(tmp_path, {".rest-lspignore": "data/\n*.csv\n", "data/x.py": "x", "t.csv": "a,b",
                              "m.py": "x"})
    kept, reasons, _ = walk(tmp_path)
    assert kept == {".rest-lspignore", "m.py"}
    assert reasons["data"] == reasons["t.csv"] == "rest-lspignore"


def test_corpus_include_filter(tmp_path):
    make_workspace(tmp_path, {"a.py": "x", "b.pyi": "x", "c.txt": "x"})
    kept, reasons, _ = walk(tmp_path, corpus=True)
    assert kept == {"a.py", "b.pyi"} and reasons["c.txt"] == "not-included"


def test_too_large(tmp_path):
    make_workspace(tmp_path, {"big.py": "x" * 2000, "small.py": "x"})
    kept, reasons, _ = walk(tmp_path, IndexConfig(max_file_bytes=1000))
    assert kept == {"small.py"} and reasons["big.py"] == "too-large"


def test_symlink_loop_and_dangling_link(tmp_path):
    make_workspace(tmp_path, {"pkg/a.py": "x"})
    os.symlink(tmp_path / "pkg", tmp_path / "pkg" / "again")  # pkg/again -> pkg: a cycle
    os.symlink(tmp_path / "self_loop", tmp_path / "self_loop")  # ELOOP
    os.symlink(tmp_path / "missing.py", tmp_path / "dangling.py")
    kept, reasons, _ = walk(tmp_path)
    assert kept == {"pkg/a.py"}
    assert reasons["pkg/again"] == "symlink-loop"
    assert reasons["self_loop"] == "symlink-loop"
    assert reasons["dangling.py"] == "vanished"


def test_fifo_is_not_regular(tmp_path):
    make_workspace(tmp_path, {"a.py": "x"})
    os.mkfifo(tmp_path / "pipe")
    kept, reasons, _ = walk(tmp_path)
    assert kept == {"a.py"} and reasons["pipe"] == "not-regular"


def _read(tmp_path, rel):
    stats = build.BuildStats()
    f = sources.SourceFile(str(tmp_path / rel), 1, 0)
    docs = build.read_docs([f], [rel], stats)
    return docs, stats.walk.skipped


def test_binary_and_non_utf8_are_skipped_when_read(tmp_path):
    make_workspace(tmp_path, {"nul.bin": b"abc\0def", "latin.txt": "caf\xe9".encode("latin-1")})
    for rel in ("nul.bin", "latin.txt"):
        docs, skipped = _read(tmp_path, rel)
        assert docs == [] and skipped["binary"] == 1


def test_vanished_between_walk_and_read(tmp_path):
    make_workspace(tmp_path, {"gone.py": "x"})
    (tmp_path / "gone.py").unlink()
    docs, skipped = _read(tmp_path, "gone.py")
    assert docs == [] and skipped["vanished"] == 1


def test_unreadable_file(tmp_path, monkeypatch):
    make_workspace(tmp_path, {"locked.py": "x"})
    real_open = open

    def deny(path, *a, **k):
        if str(path).endswith("locked.py"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", deny)  # root ignores chmod 000, so simulate EACCES
    docs, skipped = _read(tmp_path, "locked.py")
    assert docs == [] and skipped["unreadable"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_directory_by_mode(tmp_path):
    make_workspace(tmp_path, {"closed/a.py": "x", "b.py": "x"})
    os.chmod(tmp_path / "closed", 0)
    try:
        kept, reasons, _ = walk(tmp_path)
    finally:
        os.chmod(tmp_path / "closed", 0o755)
    assert kept == {"b.py"} and reasons["closed"] == "unreadable"


def test_vanished_directory_during_walk(tmp_path, monkeypatch):
    make_workspace(tmp_path, {"d/a.py": "x", "b.py": "x"})
    real_scandir = os.scandir

    def flaky(path):
        if str(path).endswith(os.sep + "d"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_scandir(path)

    monkeypatch.setattr(sources.os, "scandir", flaky)
    kept, reasons, _ = walk(tmp_path)
    assert kept == {"b.py"} and reasons["d"] == "vanished"


def test_missing_root_raises_source_error(tmp_path):
    from rest_lsp.errors import SourceError

    with pytest.raises(SourceError) as info:
        list(sources.walk(tmp_path / "nope", sources.Rules()))
    assert "nope" in str(info.value)


def test_is_indexable_matches_walk_rules(tmp_path):
    make_workspace(tmp_path, {".gitignore": "gen/\n", "gen/x.py": "x", "src/.env": "x", "src/m.py": "x"})
    rules = sources.Rules.from_config(IndexConfig())
    assert sources.is_indexable(tmp_path / "src/m.py", tmp_path, rules) is None
    assert sources.is_indexable(tmp_path / "gen/x.py", tmp_path, rules).reason == "gitignore"
    assert sources.is_indexable(tmp_path / "src/.env", tmp_path, rules).reason == "secret"
    assert sources.is_indexable(tmp_path / "src/none.py", tmp_path, rules).reason == "vanished"


def test_watch_plan_leaves_ignored_directories_unwatched(tmp_path):
    for d in ("a/b", ".venv/lib/site", "pkg/node_modules/x", "pkg/src/deep", ".git/objects"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "pkg" / ".gitignore").write_text("node_modules/\n")
    alone, trees = sources.watch_plan(tmp_path, sources.Rules(ignore=(".git/", ".venv/")))
    root = str(tmp_path)
    # the root and pkg hold ignored directories: watched alone; the clean subtrees whole
    assert alone == [root, str(tmp_path / "pkg")]
    assert trees == [str(tmp_path / "a"), str(tmp_path / "pkg" / "src")]


def test_watch_plan_of_a_clean_tree_is_one_recursive_watch(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert sources.watch_plan(tmp_path, sources.Rules(ignore=())) == ([], [str(tmp_path)])


def test_pattern_skip_of_directories(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / ".gitignore").write_text("build/\n")
    rules = sources.Rules(ignore=(".venv/",))
    assert sources.pattern_skip(tmp_path / ".venv", tmp_path, rules, is_dir=True).reason == "ignored"
    assert sources.pattern_skip(tmp_path / "pkg" / "build", tmp_path, rules, is_dir=True).reason == "gitignore"
    assert sources.pattern_skip(tmp_path / "pkg" / "src", tmp_path, rules, is_dir=True) is None
    assert sources.pattern_skip(tmp_path, tmp_path, rules, is_dir=True) is None
