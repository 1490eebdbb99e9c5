"""The engine with the real datastore behind ``rest_lsp.drafting.datastore`` (tiny tokenizer and corpus)."""

from __future__ import annotations

import pytest

from engine_testing import reference_greedy, single_thread, tiny_model  # noqa: F401
from indexer_fixtures import SAMPLE_CODE, small_index_config
from rest_lsp.config.schema import Config
from rest_lsp.drafting.datastore import DatastoreDrafter, open_corpus_datastore
from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter
from rest_lsp.engine.engine import Engine


@pytest.fixture
def store(tmp_path, index_env, tiny_tokenizer_path):
    from indexer.workspace_index import open_or_build

    config = Config(index=small_index_config(tmp_path))
    missing, why = open_corpus_datastore(tiny_tokenizer_path, "", config)
    assert missing is None and "no datastore" in why
    open_or_build(None, config, tiny_tokenizer_path).close()
    opened, line = open_corpus_datastore(tiny_tokenizer_path, "", config)
    assert opened is not None and line.startswith("datastore ")
    yield opened
    opened.close()


def test_datastore_drafts_the_corpus_continuation(store, tiny_tokenizer):
    head = SAMPLE_CODE.index("def mul")
    ids = tiny_tokenizer.encode(SAMPLE_CODE[:head])
    truth = tiny_tokenizer.encode(SAMPLE_CODE)[len(ids):len(ids) + 4]
    cands = DatastoreDrafter(store, span=10).draft(ids)
    assert cands and {c.source for c in cands} <= {"corpus", "workspace", "live"}
    assert any(c.tokens[:len(truth)] == tuple(truth) for c in cands)


def test_engine_with_datastore_drafts_is_exact(store, tiny_tokenizer):
    model = tiny_model("qwen2", "sdpa", seed=11, vocab=tiny_tokenizer.vocab_size)
    drafter = MergedDrafter([ContextSuffixDrafter(), DatastoreDrafter(store, span=10)])
    engine = Engine(model, drafter=drafter, eos_ids=())
    for cut in ("def mul", "class Point", "    def norm"):
        ids = tiny_tokenizer.encode(SAMPLE_CODE[: SAMPLE_CODE.index(cut) + len(cut)])
        for budget in (1, 8, 64):
            gen = engine.complete(ids, 16, budget=budget)
            assert list(gen.tokens) == reference_greedy(model, ids, 16), (cut, budget)
            assert gen.stats.drafted_tokens > 0
