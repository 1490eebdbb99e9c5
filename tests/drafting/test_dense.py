"""Dense drafts (DReSD), the history source and learned source weights: exact, refused, learned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine_testing import VOCAB, near_copies, reference_greedy, single_thread, tiny_model  # noqa: F401
from indexer.search import dense as dense_mod
from indexer.search.dense import DenseIndex, Projection
from rest_lsp.config.schema import DecodingConfig
from rest_lsp.drafting.dense import DenseDrafter, build_dense_index, hidden_states_of, model_identity
from rest_lsp.engine.drafter import (
    Candidate,
    ContextSuffixDrafter,
    HistoryDrafter,
    MergedDrafter,
)
from rest_lsp.engine.source_weights import SourceWeights, source_credit
from rest_lsp.engine.engine import Engine
from rest_lsp.engine.forward import verify_tree
from rest_lsp.engine import kv_cache
from rest_lsp.engine.draft_tree import build_draft_tree
from rest_lsp.engine.model import choose_forward
from rest_lsp.engine.tree_inputs import tree_inputs
from rest_lsp.errors import IndexCorruptError, ModelMismatchError


def _docs(seed: int, n_docs: int = 6, length: int = 60) -> list[tuple[str, list[int]]]:
    return [(f"f{i}.py", doc) for i, doc in enumerate(near_copies(seed, n_docs, length, 3))]


@pytest.mark.parametrize("forward", ["packed", "transformers"])
def test_verify_tree_hidden_states_give_the_same_logits(forward):
    model = tiny_model()
    runner, _, _ = choose_forward(model, forward)
    tree = build_draft_tree(5, [Candidate((1, 2, 3), 1.0, "corpus", 2), Candidate((4,), 1.0, "corpus", 2)], 8)
    inputs = tree_inputs(tree)
    a = kv_cache.new_cache(runner)
    b = kv_cache.new_cache(runner)
    from rest_lsp.engine.forward import prefill

    prefill(runner, a, [7, 8, 9])
    prefill(runner, b, [7, 8, 9])
    plain = verify_tree(runner, a, inputs)
    logits, states = verify_tree(runner, b, inputs, hidden=True)
    assert states.shape == (len(tree), 64)
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)


def test_hidden_states_in_windows_keep_the_overlap():
    model = tiny_model()
    ids = np.random.default_rng(0).integers(1, VOCAB, size=40).tolist()
    full = hidden_states_of(model, ids)
    from rest_lsp.engine.forward import hidden_states

    windowed = hidden_states(model, ids, chunk=16, overlap=8).numpy()
    assert full.shape == windowed.shape == (40, 64)
    np.testing.assert_allclose(windowed[:16], full[:16], rtol=1e-4, atol=1e-4)  # first window: same


def test_projection_reduces_to_unit_rows_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 32)) * rng.uniform(0.1, 10, size=32) + rng.normal(size=32)
    p = Projection.fit(x, dims=8)
    y = p.apply(x)
    assert y.shape == (500, 8) and np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    q = Projection.from_dict(p.to_dict())
    np.testing.assert_array_equal(q.apply(x), y)


def test_ivf_recall_against_exact_search(monkeypatch):
    import faiss

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 16))
    x = (centres[rng.integers(0, 50, size=30_000)] + 0.3 * rng.normal(size=(30_000, 16))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ann = dense_mod.new_ann(x)
    assert isinstance(ann, faiss.IndexIVF)
    ann.add_with_ids(x, np.arange(len(x)))
    exact = faiss.IndexFlatIP(16)
    exact.add(x)
    q = x[rng.permutation(len(x))[:200]] + 0.05 * rng.normal(size=(200, 16)).astype(np.float32)
    _, truth = exact.search(q, 50)
    _, got = ann.search(q, 50)
    recall = np.mean([len(np.intersect1d(g, t)) / 50 for g, t in zip(got, truth)])
    assert recall >= 0.95, recall


def _index(model, docs):
    return build_dense_index(model, model_identity(model), docs, dims=16, span=8)


def test_dense_index_finds_itself_replaces_files_and_round_trips(tmp_path):
    model = tiny_model()
    docs = _docs(0)
    index = _index(model, docs)
    path, ids = docs[2]
    states = hidden_states_of(model, ids)
    near = index.neighbours(states[10], k=5)
    assert near[0].score > 0.99 and tuple(ids[11:19]) in [n.tokens for n in near]
    # a file changed on disk: its old entries stop being returned
    index.add_doc(path, np.array(ids[:30]), states[:30])
    after = index.neighbours(states[40], k=index.entries)
    assert all(n.tokens != tuple(ids[41:49]) or n.path != path for n in after)
    assert index.remove_doc("f0.py") and all(n.path != "f0.py" for n in index.neighbours(states[5], k=index.entries))
    saved = index.save(tmp_path / "dense.msgpack")
    back = DenseIndex.open(saved, model_identity(model))
    assert back.entries == index.entries
    assert back.tokens.tolist() == index.tokens.tolist()  # the separators too (-1, not 0xFFFF)
    assert [n.tokens for n in back.neighbours(states[10], 5)] == [n.tokens for n in index.neighbours(states[10], 5)]


def test_dense_index_for_another_model_or_damaged_is_refused(tmp_path):
    model, other = tiny_model(seed=0), tiny_model(seed=1)
    saved = _index(model, _docs(0)).save(tmp_path / "dense.msgpack")
    with pytest.raises(ModelMismatchError) as info:
        DenseIndex.open(saved, model_identity(other))
    assert info.value.expected == model_identity(other)
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError):
        DenseIndex.open(saved, model_identity(model))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_stays_exact_with_every_source_on(seed):
    model = tiny_model(seed=seed)
    docs = _docs(seed)
    dense = DenseDrafter(_index(model, docs), neighbours=20)
    history = HistoryDrafter(max_tokens=500, min_suffix=1)
    for _, ids in docs[:3]:
        history.add(ids, accepted=True)
    drafter = MergedDrafter([ContextSuffixDrafter(), history, dense])
    engine = Engine(model, DecodingConfig(draft_budget=12), drafter)
    for prompt_len in (5, 17, 33):
        prompt = docs[-1][1][:prompt_len]
        got = engine.complete(prompt, 24)
        assert list(got.tokens) == reference_greedy(model, prompt, 24)
    assert dense.searches > 0  # the dense drafter was asked with real hidden states
    assert got.stats.accepted_by_source  # and acceptance is credited per source


def test_history_drafter_bounds_persists_and_counts_accepted_twice():
    h = HistoryDrafter(max_tokens=20, min_suffix=2)
    h.add([1, 2, 3, 4])
    h.add([5, 2, 3, 9], accepted=True)
    found = {c.tokens: c.count for c in h.draft([7, 2, 3])}
    assert found == {(9,): 2.0, (4,): 1.0}
    for i in range(10):
        h.add([10 + i, 11 + i, 12 + i])
    assert len(h.tokens) <= 20 and h.tokens[0] != -1
    assert HistoryDrafter(max_tokens=20).from_list(h.to_list()).tokens.tolist() == h.tokens.tolist()


def test_source_credit_and_weights_move_toward_the_accepted_source():
    a = Candidate((1, 2, 3), 1.0, "a", 2)
    b = Candidate((7, 8), 1.0, "b", 2)
    assert source_credit([a, b], (1, 2)) == {"a": 2}
    weights = SourceWeights(prior={"a": 1.0, "b": 1.0}, ceiling=4.0)
    for _ in range(100):  # a deterministic simulation: a's drafts always accepted, b's never
        weights.observe([a, b], (1, 2, 3))
    assert weights.weights["a"] > 3 * weights.weights["b"]
    assert weights.weights["a"] <= 4.0 and weights.weights["b"] >= 0.25
    wa, wb = weights([a, b])
    assert wa > wb


def test_refresher_replaces_a_changed_file_and_drops_a_deleted_one(tmp_path):
    import threading

    from rest_lsp.drafting.dense import DenseRefresher

    class Words:  # token ids are the words "t<i>"
        def encode(self, text, add_special_tokens=False, verbose=True):  # a tokenizer's signature
            return [int(w[1:]) for w in text.split()]

    model = tiny_model()
    docs = _docs(3)
    for path, ids in docs:
        (tmp_path / path).write_text(" ".join(f"t{i}" for i in ids))
    index = _index(model, docs)
    saved = tmp_path / "cache" / "dense.msgpack"
    refresher = DenseRefresher(index, model, Words(), tmp_path, threading.Lock(), saved)
    new = list(range(1, 41))
    (tmp_path / "f1.py").write_text(" ".join(f"t{i}" for i in new))
    (tmp_path / "f2.py").unlink()
    refresher.notify([str(tmp_path / "f1.py"), str(tmp_path / "f2.py")])
    assert refresher.idle.wait(60)
    refresher.close()
    states = hidden_states_of(model, new)
    near = index.neighbours(states[10], k=3)
    assert near[0].path == "f1.py" and near[0].tokens[:5] == tuple(new[11:16])
    everything = index.neighbours(states[10], k=index.entries)
    assert all(n.path != "f2.py" for n in everything)
    assert all(n.path != "f1.py" or n.tokens[0] in new for n in everything)
    assert DenseIndex.open(saved).entries == index.entries  # saved after the batch


def test_streaming_build_fits_on_the_first_files_and_adds_the_rest(monkeypatch):
    from rest_lsp.drafting import dense as rest_dense

    monkeypatch.setattr(rest_dense, "FIT_SAMPLE", 50)
    monkeypatch.setattr(dense_mod, "training_rows", lambda entries: 100)
    model = tiny_model()
    docs = _docs(4)
    seen = []
    index = build_dense_index(model, "m", docs, dims=16, span=8, progress=lambda t, d: seen.append(d))
    assert index.entries == sum(len(ids) - 1 for _, ids in docs) and seen == list(range(1, 7))
    path, ids = docs[-1]  # streamed after the index was trained
    near = index.neighbours(hidden_states_of(model, ids)[20], k=1)
    assert near[0].path == path and near[0].tokens == tuple(ids[21:29])


def test_workspace_drafting_learns_persists_and_uses_the_dense_index(tmp_path):
    import threading
    from types import SimpleNamespace

    from rest_lsp.drafting.session import WorkspaceDrafting
    from rest_lsp.config.schema import Config
    from rest_lsp.drafting.dense import dense_path

    model = tiny_model()
    loaded = SimpleNamespace(model=model, runner=None, tokenizer=None, source="tiny")
    config = Config()
    config.index.index_dir = str(tmp_path / "idx")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    _index(model, _docs(5)).save(dense_path(workspace, config.index))
    logs = []
    store = SimpleNamespace(retrieve=None)
    d = WorkspaceDrafting(str(workspace), config, loaded, store, threading.Lock(), logs.append)
    assert d.dense is not None and any("dense index" in line for line in logs)
    d.completed(7, (1, 2, 3, 4))
    d.accepted([[7, 0]])
    assert d.history.draft([9, 2, 3]) == [Candidate((4,), 3.0, "history", 2)]  # accepted: counted again
    assert d.stats()["history_tokens"] == 15 and d.stats()["dense"]["entries"] > 0
    d.close()
    again = WorkspaceDrafting(str(workspace), config, loaded, store, threading.Lock(), logs.append)
    assert again.history.to_list() == d.history.to_list()  # persisted across restarts
    config.retrieval.dense = "off"
    off = WorkspaceDrafting(str(workspace), config, loaded, store, threading.Lock(), logs.append)
    assert off.dense is None
    for w in (again, off):
        w.close()


@pytest.mark.parametrize("dense_for", ["this model", "another model"])
def test_workspace_drafting_with_every_source_on_stays_greedy(dense_for, tmp_path, index_env, tiny_tokenizer_path,
                                                            tiny_tokenizer):
    # the daemon's own merged drafter (context, recycling, datastore, history, dense): exact
    # greedy output; a dense tier built from another model's hidden states is refused, not used
    import threading
    from types import SimpleNamespace

    from indexer.workspace_index import open_or_build
    from indexer_fixtures import SAMPLE_CODE, small_index_config
    from rest_lsp.drafting.session import WorkspaceDrafting
    from rest_lsp.config.schema import Config
    from rest_lsp.drafting.dense import dense_path
    from rest_lsp.drafting.datastore import open_corpus_datastore

    vocab = tiny_tokenizer.vocab_size
    model = tiny_model("qwen2", seed=5, vocab=vocab)
    built_for = model if dense_for == "this model" else tiny_model("qwen2", seed=6, vocab=vocab)
    config = Config(index=small_index_config(tmp_path))
    open_or_build(None, config, tiny_tokenizer_path).close()
    store, line = open_corpus_datastore(tiny_tokenizer_path, "", config)
    assert store is not None, line
    ids = tiny_tokenizer.encode(SAMPLE_CODE)
    renamed = tiny_tokenizer.encode(SAMPLE_CODE.replace("Point", "Vec"))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    docs = [("a.py", ids), ("b.py", renamed), ("c.py", ids[len(ids) // 2:] + ids[:len(ids) // 2])]
    build_dense_index(built_for, model_identity(built_for), docs, dims=16, span=8).save(
        dense_path(workspace, config.index))
    loaded = SimpleNamespace(model=model, runner=None, tokenizer=None, source="tiny")
    logs: list[str] = []
    d = WorkspaceDrafting(str(workspace), config, loaded, store, threading.Lock(), logs.append)
    try:
        d.completed(1, tuple(renamed[:60]))
        d.accepted([[1, 0]])
        sources = {type(x).__name__ for x in d.drafter.drafters}
        if dense_for == "this model":
            assert d.dense is not None and "DenseDrafter" in sources
        else:
            assert d.dense is None and "DenseDrafter" not in sources
            assert any("dense index not used" in m and "ModelMismatch" not in m for m in logs), logs
        assert {"ContextSuffixDrafter", "RecyclingDrafter", "HistoryDrafter"} <= sources
        engine = Engine(model, DecodingConfig(draft_budget=12), d.drafter)
        for prompt_len in (9, 31, 57):
            prompt = ids[:prompt_len]
            got = engine.complete(prompt, 24)
            assert list(got.tokens) == reference_greedy(model, prompt, 24)
        if d.dense is not None:
            assert d.dense.searches > 0
    finally:
        d.close()
        store.close()
