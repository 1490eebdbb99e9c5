"""``rest-lsp index query`` / ``index stats`` on every kind of index folder: workspace, corpus,
sharded, compact, served (a URL); and one clear error, naming the kinds, for anything else."""

from __future__ import annotations

import http.server
import json
from pathlib import Path

import msgpack
import pytest

from indexer.search import fanout
from indexer.storage import index_kind
from indexer.remote.tier import INFO_PATH, Request, encode_error, encode_retrieval
from indexer.tokens import load_tokenizer
from indexer_fixtures import SAMPLE_CODE, make_workspace
from scaleout_testing import LoopbackHttp, answer
from rest_lsp.cli import main
from indexer.settings import IndexConfig

QUERY = "def add(a, b):\\n    return"


class ServedIndex:
    """A served index on a free loopback port, as ``datastore serve`` answers: ``GET /info`` and
    ``POST /retrieve`` over every shard of a corpus index (one group, no Ray)."""

    def __init__(self, index_dir: Path, tokenizer_identity: str) -> None:
        from indexer.storage import indexdir

        names = indexdir.read_current(index_dir)["shards"]
        group = fanout.ShardGroup.open(index_dir, names, tokenizer_identity)
        info = {"v": 1, "tokenizer": tokenizer_identity, "shards": len(names), "replicas": 1,
                "tokens": group.n_tokens, "index_dir": str(index_dir)}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                answer(self, 200, msgpack.packb(info)) if self.path == INFO_PATH else answer(self, 404, b"")

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    candidates, longest = fanout.retrieve([group], Request.decode(body))
                    answer(self, 200, encode_retrieval(candidates, longest, 0.0))
                except Exception as exc:
                    answer(self, *encode_error(exc))

        self.info = info
        self.http = LoopbackHttp(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def indexes(tmp_path, index_env, tiny_tokenizer_path, capsys):
    """Every kind built from one small corpus: {kind: location}, and the tokenizer arguments."""
    from indexer.workspace_index import corpus_dir, workspace_dir

    tok = ["--tokenizer", str(tiny_tokenizer_path)]
    ws = make_workspace(tmp_path / "ws", {"m.py": SAMPLE_CODE})
    corpus = make_workspace(tmp_path / "corpus", {f"c{i}.py": SAMPLE_CODE.replace("add", f"plus{i}") for i in range(6)})
    assert main(["index", "build", "--workspace", str(ws), "--corpus", str(corpus), *tok, "--json"]) == 0
    cfg = IndexConfig(corpus_roots=[str(corpus)])
    full = corpus_dir(cfg, load_tokenizer(str(tiny_tokenizer_path)))
    sharded = tmp_path / "sharded"
    assert main(["index", "build", "--sharded", "--shard-tokens", "100", "--index-dir", str(sharded),
                 "--corpus", str(corpus), *tok, "--json"]) == 0
    compact = tmp_path / "compact"
    assert main(["index", "compact", "--index-dir", str(full), "--out", str(compact), "--top-ngrams", "300",
                 *tok, "--json"]) == 0
    capsys.readouterr()
    served = ServedIndex(sharded, load_tokenizer(str(tiny_tokenizer_path)).identity)
    yield {"workspace": workspace_dir(str(ws), cfg), "corpus": full, "sharded": sharded, "compact": compact,
           "remote": served.url}, tok, served
    served.close()


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_kind_is_detected_by_its_markers(indexes):
    where, _, _ = indexes
    for kind, location in where.items():
        assert index_kind.detect(str(location)).kind == kind
    assert index_kind.detect(str(where["sharded"])).pointer["built_with"] == "in-process"


@pytest.mark.parametrize("kind", ["workspace", "corpus", "sharded", "compact", "remote"])
def test_stats_and_query_on_every_kind(indexes, capsys, kind):
    where, tok, served = indexes
    location = str(where[kind])
    stats = run_json(capsys, "index", "stats", "--index-dir", location, *tok)
    assert stats["index_kind"] == kind and stats["index_dir"] == location.rstrip("/")
    corpus = stats["corpus"]
    if kind == "compact":
        assert corpus["kind"] == "compact" and corpus["entries"] == 300
    elif kind == "remote":
        assert corpus["kind"] == "remote" and corpus["tokens"] == served.info["tokens"] > 0
        assert corpus["shards"] == served.info["shards"] >= 2 and corpus["tokenizer_matches"]
    else:
        assert corpus["kind"] == "full" and corpus["tokens"] > 0
    if kind == "workspace":
        assert stats["workspace"]["docs"] == 1
    if kind == "sharded":
        assert stats["built_with"] == "in-process" and corpus["shards"] >= 2

    q = run_json(capsys, "index", "query", QUERY, "--index-dir", location, "--limit", "1000", *tok)
    assert q["suffix_len"] > 0 and q["candidates"], q
    sources = {c["source"] for c in q["candidates"]}
    assert sources <= {"compact": {"corpus-compact"}, "workspace": {"workspace", "corpus"}}.get(kind, {"corpus"})
    # the text forms too
    assert main(["index", "stats", "--index-dir", location, *tok]) == 0
    out = capsys.readouterr().out
    assert f"({kind} index" in out and "corpus:" in out
    assert main(["index", "query", QUERY, "--index-dir", location, *tok]) == 0
    assert "matched suffix" in capsys.readouterr().out


def test_a_served_index_answers_what_its_folder_does(indexes, capsys):
    where, tok, _ = indexes
    local = run_json(capsys, "index", "query", QUERY, "--index-dir", str(where["sharded"]), "--limit", "1000", *tok)
    remote = run_json(capsys, "index", "query", QUERY, "--index-dir", where["remote"], "--limit", "1000", *tok)
    assert remote["candidates"] == local["candidates"] and remote["suffix_len"] == local["suffix_len"]
    by_flag = run_json(capsys, "index", "stats", "--remote", where["remote"], *tok)
    assert by_flag["index_kind"] == "remote" and by_flag["corpus"]["served_dir"] == str(where["sharded"])


def test_a_folder_of_no_kind_is_a_clear_error_naming_the_kinds(indexes, tmp_path, capsys):
    where, tok, _ = indexes
    (tmp_path / "empty").mkdir()
    shard = next(p for p in Path(where["sharded"]).iterdir() if p.is_dir() and not p.name.startswith("."))
    cases = {tmp_path / "empty": "no CURRENT file and no compact manifest",
             tmp_path / "missing": "no such folder",
             shard: "one shard of an index: pass the folder above it",
             Path(where["compact"]) / "keys.bin": "a file, not a folder"}
    for folder, why in cases.items():
        for command in (["index", "stats"], ["index", "query", "x"]):
            assert main([*command, "--index-dir", str(folder), *tok]) == 1
            err = capsys.readouterr().err
            assert f"no index at {folder} (" in err and why in err, err
            for words in ("a workspace index", "a corpus index", "a sharded corpus index",
                          "a compact corpus tier", "a served index"):
                assert words in err, (words, err)


def test_verify_reads_the_local_kinds_and_refuses_a_url(indexes, capsys):
    where, tok, _ = indexes
    for kind in ("corpus", "sharded", "compact"):
        assert main(["index", "verify", "--index-dir", str(where[kind]), *tok]) == 0
        assert capsys.readouterr().out.strip().endswith("ok")
    assert main(["index", "verify", "--index-dir", where["remote"], *tok]) == 1
    assert "is a served index" in capsys.readouterr().err
