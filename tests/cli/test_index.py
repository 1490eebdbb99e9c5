"""``rest-lsp index`` smoke tests, and the indexer's promises: never to import torch, and to work without ``rest_lsp``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from indexer_fixtures import SAMPLE_CODE, make_workspace
from rest_lsp.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_build_stats_query_verify(tmp_path, index_env, tiny_tokenizer_path, capsys):
    ws = make_workspace(tmp_path / "ws", {"m.py": SAMPLE_CODE})
    corpus = make_workspace(tmp_path / "corpus", {"c.py": SAMPLE_CODE.replace("add", "plus")})
    common = ["--workspace", str(ws), "--tokenizer", str(tiny_tokenizer_path)]
    assert main(["index", "build", *common, "--corpus", str(corpus), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["workspace"]["docs"] == 1 and built["corpus"]["docs"] == 1

    assert main(["index", "stats", *common, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["workspace"]["tokens"] == built["workspace"]["tokens"]
    assert main(["index", "stats", *common]) == 0
    assert "workspace: 1 shard(s)" in capsys.readouterr().out

    assert main(["index", "query", "def add(a, b):\\n    return", *common, "--json"]) == 0
    q = json.loads(capsys.readouterr().out)
    assert q["suffix_len"] > 0 and q["candidates"]
    first = q["candidates"][0]
    assert set(first) == {"tokens", "text", "count", "source", "suffix_len"}
    assert main(["index", "query", "def add(a, b):\\n    return", *common]) == 0
    out = capsys.readouterr().out
    assert "matched suffix" in out and "latency" in out

    assert main(["index", "verify", *common]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")


def test_stats_without_index_is_a_clean_error(tmp_path, index_env, tiny_tokenizer_path, capsys):
    code = main(["index", "stats", "--index-dir", str(tmp_path / "none"), "--tokenizer", str(tiny_tokenizer_path)])
    assert code == 1
    assert "no index" in capsys.readouterr().err


def test_indexer_never_imports_torch():
    code = (
        "import sys\n"
        "import indexer, indexer.datastore, indexer.workspace_index, indexer.watcher, rest_lsp.bench.index\n"
        "import indexer.search.retrieval, indexer.building.sources, indexer.tokens, indexer.storage.shard, indexer.building.shards\n"
        "import rest_lsp.commands.index\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m == 'transformers']\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_the_indexer_works_without_rest_lsp(tmp_path, tiny_tokenizer_path):
    """Every indexer module imports, and an index is built and searched, with ``rest_lsp`` unimportable."""
    code = (
        "import importlib, pkgutil, sys\n"
        "sys.modules['rest_lsp'] = None  # any import of it now raises\n"
        "import indexer\n"
        "names = [m.name for m in pkgutil.walk_packages(indexer.__path__, 'indexer.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "from indexer.settings import IndexConfig\n"
        "from indexer.tokens import load_tokenizer\n"
        "from indexer.workspace_index import open_or_build\n"
        "ws, tok = sys.argv[1], load_tokenizer(sys.argv[2])\n"
        "store = open_or_build(ws, IndexConfig(index_dir=sys.argv[3]), tok, use_corpus=False)\n"
        "found = store.retrieve(tok.encode('def add(a, b):')).candidates\n"
        "assert found and all(c.source == 'workspace' for c in found), found\n"
        "print(len(names))\n"
    )
    ws = make_workspace(tmp_path / "ws", {"m.py": SAMPLE_CODE})
    r = subprocess.run([sys.executable, "-c", code, str(ws), str(tiny_tokenizer_path), str(tmp_path / "index")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) > 20  # the walk saw the whole package


def test_bench_smoke(tmp_path, index_env, tiny_tokenizer_path, capsys):
    corpus = make_workspace(tmp_path / "corpus", {f"lib/m{i}.py": SAMPLE_CODE for i in range(5)})
    out = tmp_path / "bench.json"
    code = main(["index", "bench", "--corpus", str(corpus), "--tokenizer", str(tiny_tokenizer_path),
                 "--work", str(tmp_path / "work"), "--queries", "30", "--files", "20", "--saves", "2",
                 "--out", str(out), "--quiet"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["build"]["tokens"] > 0 and result["refresh"]["files"] == 20
    assert result["refresh"]["watcher_p95_ms"] < 5000 and not result["refresh"]["errors"]
    assert set(result["retrieval_corpus"]) == {"longest", "all_lengths", "rest_paper"}
    assert "| figure | measured | target |" in capsys.readouterr().out


def test_compact_tier_from_the_cli(tmp_path, index_env, tiny_tokenizer_path, capsys):
    from indexer.tokens import load_tokenizer
    from indexer.workspace_index import corpus_dir
    from rest_lsp.config.schema import IndexConfig

    ws = make_workspace(tmp_path / "ws", {"m.py": SAMPLE_CODE})
    corpus = make_workspace(tmp_path / "corpus", {f"c{i}.py": SAMPLE_CODE.replace("add", f"plus{i}") for i in range(4)})
    common = ["--workspace", str(ws), "--tokenizer", str(tiny_tokenizer_path)]
    assert main(["index", "build", *common, "--corpus", str(corpus), "--json"]) == 0
    capsys.readouterr()
    source = corpus_dir(IndexConfig(corpus_roots=[str(corpus)]), load_tokenizer(str(tiny_tokenizer_path)))
    out = tmp_path / "compact"
    assert main(["index", "compact", "--index-dir", str(source), "--out", str(out), "--top-ngrams", "200",
                 "--tokenizer", str(tiny_tokenizer_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entries"] == min(200, report["candidates"]) and report["bytes"] == sum(f.stat().st_size for f in out.iterdir())
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"index": {"corpus_roots": [str(corpus)], "corpus_tier": "compact",
                                            "corpus_compact_dir": str(out)}}))
    assert main(["index", "stats", *common, "--config", str(config), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["corpus"]["kind"] == "compact" and stats["corpus"]["entries"] == report["entries"]
    assert stats["workspace"]["kind"] == "full"
    assert main(["index", "query", "    return a", *common, "--config", str(config), "--limit", "1000", "--json"]) == 0
    q = json.loads(capsys.readouterr().out)
    assert {c["source"] for c in q["candidates"]} <= {"workspace", "corpus-compact"}
    assert "corpus-compact" in {c["source"] for c in q["candidates"]}


def test_prune_lists_then_removes_what_nothing_uses(tmp_path, index_env, tiny_tokenizer_path, capsys):
    import shutil

    tok = ["--tokenizer", str(tiny_tokenizer_path)]
    kept_ws = make_workspace(tmp_path / "kept", {"m.py": SAMPLE_CODE})
    gone_ws = make_workspace(tmp_path / "gone", {"m.py": SAMPLE_CODE.replace("add", "sum")})
    kept_corpus = make_workspace(tmp_path / "c1", {"c.py": SAMPLE_CODE})
    gone_corpus = make_workspace(tmp_path / "c2", {"c.py": SAMPLE_CODE.replace("add", "plus")})
    assert main(["index", "build", "--workspace", str(kept_ws), "--corpus", str(kept_corpus), *tok, "--json"]) == 0
    assert main(["index", "build", "--workspace", str(gone_ws), "--corpus", str(gone_corpus), *tok, "--json"]) == 0
    capsys.readouterr()
    root = index_env / "rest-lsp" / "index"
    gone_dirs = {p for p in (root / "workspaces").iterdir() if p.is_dir()}
    (root / "corpus" / "half-built").mkdir()  # no pointer yet: a build under way, never pruned
    shutil.rmtree(gone_ws)
    gone_index = next(p for p in gone_dirs if "gone" in (p / "CURRENT").read_bytes().decode(errors="replace"))
    history = gone_index.parent / f"{gone_index.name}.history.msgpack"
    history.write_bytes(b"\x90")

    assert main(["index", "prune", *tok, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert not listed["removed"]
    paths = {Path(e["path"]) for e in listed["entries"]}
    kinds = sorted(e["kind"] for e in listed["entries"])
    assert gone_index in paths and history in paths and kinds == ["corpus", "workspace", "workspace"]
    assert all(p.exists() for p in paths)  # only listed
    assert main(["index", "prune", *tok]) == 0
    assert "run again with --yes" in capsys.readouterr().out

    assert main(["index", "prune", *tok, "--yes"]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    assert not any(p.exists() for p in paths) and (root / "corpus" / "half-built").is_dir()
    assert main(["index", "stats", "--workspace", str(kept_ws), *tok]) == 0  # the live index is intact
    capsys.readouterr()
    assert main(["index", "prune", *tok]) == 0
    assert "nothing to prune" in capsys.readouterr().out
