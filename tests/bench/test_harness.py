"""The HumanEval benchmark's pure parts: interleaving, summaries, table, plots, store subsampling."""

from __future__ import annotations

import json

import pytest

from rest_lsp.bench import humaneval
from rest_lsp.bench import plots
from rest_lsp.bench.humaneval import Run


def fake(name, tokens_of, seconds, steps=1):
    calls = []

    def run(ids):
        calls.append((name, tuple(ids)))
        return Run("", 0, tuple(tokens_of(ids)), steps, seconds, forward_s=seconds * 0.8, draft_s=seconds * 0.1,
                   tree_s=seconds * 0.05, other_s=seconds * 0.05)

    run.calls = calls
    return run


def test_interleaving_rotates_the_method_order():
    order = []
    methods = {n: (lambda n: lambda ids: order.append(n) or Run("", 0, ()))(n) for n in ("a", "b", "c")}
    runs = humaneval.run_interleaved(methods, [[1], [2], [3], [4]], say=None)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert [r.prompt for r in runs["b"]] == [0, 1, 2, 3] and all(r.method == "b" for r in runs["b"])


def test_summaries_compare_with_greedy_prompt_by_prompt():
    prompts = [[1, 2], [3, 4], [5, 6]]
    methods = {
        "greedy": fake("greedy", lambda ids: [ids[0]] * 4, 1.0, steps=4),
        "default": fake("default", lambda ids: [ids[0]] * 4, 0.5, steps=2),
        # wrong on the second prompt
        "broken": fake("broken", lambda ids: [ids[0]] * (3 if ids[0] == 3 else 4), 2.0, steps=1),
    }
    s = {m.method: m for m in humaneval.summarize(humaneval.run_interleaved(methods, prompts, say=None))}
    assert s["greedy"].speedup_vs_greedy == 1.0 and s["greedy"].identical_to_greedy == 1.0
    assert s["default"].speedup_vs_greedy == 2.0 and s["default"].speedup_vs_greedy_median == 2.0
    assert s["default"].tokens_per_step == 2.0 and s["default"].tokens_per_s == pytest.approx(8.0)
    assert s["broken"].identical_to_greedy == pytest.approx(0.6667, abs=1e-4)
    assert s["default"].latency_p50_ms == 500.0
    assert s["default"].time_split == {"retrieval": 0.1, "model": 0.8, "other": 0.1}
    table = humaneval.table(list(s.values()))
    assert "rest-lsp default" in table and "2.00x / 2.00x" in table and "67%" in table
    json.dumps([m.to_dict() for m in s.values()])  # JSON-ready


def test_plots_are_written(tmp_path):
    methods = {"greedy": fake("g", lambda ids: [1, 2], 1.0, 2), "default": fake("d", lambda ids: [1, 2], 0.5, 1)}
    summaries = humaneval.summarize(humaneval.run_interleaved(methods, [[1], [2]], say=None))
    for path in (plots.speedup_bars(summaries, tmp_path / "s.png", "t"),
                 plots.tokens_per_step_boxes(summaries, tmp_path / "b.png", "t"),
                 plots.speedup_vs_store({"default": [(10, 1.1), (1000, 1.5)]}, tmp_path / "v.png", "t")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_subsampled_store_keeps_a_fraction_of_the_documents(tmp_path, index_env, tiny_tokenizer):
    from indexer import workspace_index
    from indexer_fixtures import SAMPLE_CODE, make_workspace, small_index_config

    corpus = make_workspace(tmp_path / "corpus", {f"lib/m{i}.py": SAMPLE_CODE.replace("Point", f"P{i}")
                                                  for i in range(40)})
    config = small_index_config(tmp_path, corpus_roots=[str(corpus)])
    store = workspace_index.open_or_build(None, config, tiny_tokenizer)
    sub = humaneval.subsample_store(store, 0.25, seed=1)
    full_docs = sum(s.n_docs for s in store.corpus)
    assert 0 < sum(s.n_docs for s in sub.corpus) < full_docs
    assert 0 < humaneval.store_tokens(sub) < humaneval.store_tokens(store)
    ids = tiny_tokenizer.encode("    def __init__(self")  # in every document
    full, part = store.retrieve(ids).candidates, sub.retrieve(ids).candidates
    assert 0 < sum(c.count for c in part) < sum(c.count for c in full)  # a quarter of the documents


def test_repo_workload_pieces(tmp_path):
    import random

    from rest_lsp.bench import workloads

    files = [f"pkg/m{i}.py" for i in range(20)]
    held = workloads.held_out_files(files, 3, seed=7)
    assert len(held) == 3 and held == sorted(held) and held == workloads.held_out_files(list(reversed(files)), 3, seed=7)
    assert workloads.held_out_files(files, 3, seed=8) != held
    text = "import os\n\n\ndef f(x):\n    if x:\n        return 1\n\n    return 2\n"
    offsets = workloads.cursor_positions(text, 10, random.Random(0), min_line=3)
    # after the indentation of every non-blank line from the fourth on
    assert [text[o:].split("\n")[0] for o in offsets] == ["def f(x):", "if x:", "return 1", "return 2"]
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    for f in ("pkg/a.py", "pkg/b.py"):
        (tmp_path / "src" / f).write_text(f)
    workloads.copy_without(tmp_path / "src", tmp_path / "copy", {"pkg/b.py"}, ["pkg/a.py", "pkg/b.py"])
    assert (tmp_path / "copy" / "pkg" / "a.py").read_text() == "pkg/a.py"
    assert not (tmp_path / "copy" / "pkg" / "b.py").exists()


def test_drafting_methods_are_built_from_one_place():
    from rest_lsp.bench.drafters import dense_drafter_of, method_drafter
    from rest_lsp.config.schema import RetrievalConfig
    from rest_lsp.drafting.dense import DenseDrafter
    from rest_lsp.engine.drafter import ContextSuffixDrafter, HistoryDrafter, MergedDrafter, RecyclingDrafter

    r = RetrievalConfig()
    kinds = {}
    for name in ("rest-sparse", "rest-dense", "rest-history", "rest-merged", "sparse+recycle", "daemon", "daemon+dense"):
        drafter, history = method_drafter(name, r, [], None, 64, span=7)
        parts = getattr(drafter, "drafters", [drafter])
        kinds[name] = [type(d) for d in parts]
        assert (history is not None) == (name in ("rest-history", "rest-merged", "daemon", "daemon+dense"))
        assert history is None or history in parts
        assert all(d.span == 7 for d in parts if isinstance(d, (ContextSuffixDrafter, HistoryDrafter)))
        assert (dense_drafter_of(drafter) is not None) == (name in ("rest-dense", "rest-merged", "daemon+dense"))
    assert kinds["rest-merged"] == [ContextSuffixDrafter, HistoryDrafter, DenseDrafter]
    assert kinds["sparse+recycle"] == [ContextSuffixDrafter, RecyclingDrafter]
    # the daemon's drafting (completion/drafting.py): the same sources, with and without its dense index
    assert kinds["daemon"] == [ContextSuffixDrafter, RecyclingDrafter, HistoryDrafter]
    assert kinds["daemon+dense"] == kinds["daemon"] + [DenseDrafter]
    assert isinstance(method_drafter("rest-sparse", r, [], None, 64, 7)[0], MergedDrafter)
    with pytest.raises(ValueError):
        method_drafter("rest-everything", r, [], None, 64, 7)


def test_the_repository_workload_warms_its_history_on_indexed_files_only(tmp_path):
    from types import SimpleNamespace

    from rest_lsp.bench.drafters import method_drafter
    from rest_lsp.bench.workloads import RepositoryWorkload
    from rest_lsp.config.schema import Config, RetrievalConfig

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "a.py").write_text("".join(f"def indexed_{j}():\n    return {j}\n" for j in range(10)))
    (tmp_path / "held.py").write_text("".join(f"def held_{j}():\n    return {j}\n" for j in range(10)))
    work = RepositoryWorkload(root=tmp_path, held=["held.py"], rel_files=["a.py", "held.py"], copy=copy, store=None)
    chars = SimpleNamespace(encode=lambda s, add_special_tokens=False: [ord(c) for c in s])
    prompts = work.warmup_prompts(chars, Config(), 6)
    texts = ["".join(map(chr, p)) for p in prompts]
    assert len(texts) == 6 and all(t.startswith("def indexed_0") for t in texts)
    assert not any("held_" in t for t in texts)

    warm = [[1, 2, 3], [4, 5, 6]]
    _, history = method_drafter("rest-merged", RetrievalConfig(), [], None, 64, 16, warm)
    assert history.to_list() == [1, 2, 3, -1, 4, 5, 6, -1]
    assert method_drafter("rest-sparse", RetrievalConfig(), [], None, 64, 16, warm)[1] is None


def test_torch_only_methods_are_refused_on_the_llama_cpp_forward():
    """Before: an AttributeError ('LlamaCppRunner' object has no attribute 'generate') mid-run."""
    from types import SimpleNamespace

    import pytest

    from rest_lsp.bench.humaneval import build_methods
    from rest_lsp.config.schema import Config
    from rest_lsp.errors import ConfigError

    loaded = SimpleNamespace(forward="llama.cpp", model=SimpleNamespace(config=SimpleNamespace(vocab_size=10)))
    with pytest.raises(ConfigError, match="bench peers"):
        build_methods(loaded, Config(), None, ["greedy", "hf_greedy"], 8)
