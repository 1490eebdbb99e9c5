"""``bench replay``: replaying greedy traces through drafters gives the engine's own steps."""

from __future__ import annotations

import numpy as np

from engine_testing import VOCAB, near_copies, single_thread, tiny_model  # noqa: F401
from rest_lsp.bench.replay import EOS_MARK, Trace, accepted_length, capture, load_traces, replay, save_traces
from rest_lsp.config.schema import DecodingConfig
from rest_lsp.drafting.dense import DenseDrafter, build_dense_index, model_identity
from rest_lsp.engine.draft_tree import DraftTree
from rest_lsp.engine.drafter import ContextSuffixDrafter, HistoryDrafter, MergedDrafter, RecyclingDrafter
from rest_lsp.engine.source_weights import SourceWeights
from rest_lsp.engine.engine import Engine
from rest_lsp.engine.drafter import Drafter


def _drafter(model, docs):
    index = build_dense_index(model, model_identity(model), [(f"f{i}", d) for i, d in enumerate(docs)], dims=16, span=8)
    history = HistoryDrafter(max_tokens=400, min_suffix=1)
    drafter = MergedDrafter([ContextSuffixDrafter(), history, DenseDrafter(index, neighbours=10), RecyclingDrafter(VOCAB)])
    return drafter, history


def test_accepted_length_follows_one_path():
    # root 0 -> 1 -> 2, root -> 3 (BFS: nodes 0:root 1:"1" 2:"3" 3:"2")
    tree = DraftTree(tokens=(9, 1, 3, 2), parents=(-1, 0, 0, 1), depths=(0, 1, 1, 2), ranks=(0, 1, 2, 3),
                     weights=(0.0, 1.0, 1.0, 1.0))
    assert accepted_length(tree, [1, 2, 5], 0) == 2
    assert accepted_length(tree, [7, 3, 4], 1) == 1
    assert accepted_length(tree, [4], 0) == 0
    assert accepted_length(tree, [1, EOS_MARK], 0) == 1


def test_replay_takes_the_engines_steps_with_every_source(tmp_path):
    """The same drafters, budget and depth decay: the replay's steps, tokens and per-source credit
    are the engine's, prompt after prompt (history, learned weights, recycling, dense state)."""
    model = tiny_model(seed=3)
    docs = near_copies(3, 5, 50, 4)
    prompts = [docs[-1][:n] for n in (6, 15, 27, 38)] + [docs[-2][:20]]
    config = DecodingConfig(depth_decay=0.6)
    traces = capture(Engine(model, DecodingConfig(), None), prompts, 20, say=lambda _: None)
    save_traces(traces, tmp_path / "t.npz")
    back = load_traces(tmp_path / "t.npz")
    assert [(t.prompt, t.out, t.eos) for t in back] == [(t.prompt, t.out, t.eos) for t in traces]
    np.testing.assert_array_equal(np.concatenate([t.top_k for t in back]), np.concatenate([t.top_k for t in traces]))

    drafter, history = _drafter(model, docs)
    engine = Engine(model, config, drafter)
    steps, tokens, credit = 0, 0, {}
    for prompt, trace in zip(prompts, traces):
        engine.reset()
        gen = engine.complete(prompt, 20, budget=8)
        assert list(gen.tokens) == trace.out  # exact: the engine decodes the traced greedy output
        steps += gen.stats.steps
        tokens += len(gen.tokens) + int(trace.eos)
        for source, n in gen.stats.accepted_by_source.items():
            credit[source] = credit.get(source, 0) + n
        history.add(gen.tokens)

    drafter, history = _drafter(model, docs)
    got = replay(back, drafter, SourceWeights(), budget=8, max_new_tokens=20, depth_decay=0.6, history=history)
    assert (got.steps, got.tokens) == (steps, tokens)
    assert got.accepted_by_source == credit
    assert got.tokens_per_step > 1.0  # the drafts were accepted at all


def test_trace_target_marks_the_end_of_sequence():
    t = Trace([1], [2, 3], True, np.zeros((3, 4), np.float32), np.zeros((3, 4), np.int64))
    assert t.target == [2, 3, EOS_MARK]


def test_replay_counts_steps_by_accepted_length():
    from rest_lsp.engine.drafter import Candidate

    class Fixed(Drafter):  # always drafts the next three target tokens
        def draft(self, context):
            return [Candidate(tuple(range(len(context), len(context) + 3)), 1.0, "context", 2)]

    trace = Trace([0], list(range(1, 9)), False, np.zeros((9, 2), np.float32), np.zeros((9, 4), np.int64))
    got = replay([trace], Fixed(), budget=4, max_new_tokens=8)
    # the target is 1..8 after the prompt [0]: 3 drafts + bonus, twice
    assert (got.steps, got.tokens, got.accepted_lengths) == (2, 8, {3: 2})
