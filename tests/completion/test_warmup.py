"""The history warm-up: cursor positions, the warm-up loop, and the history file it resumes from."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import msgpack

from rest_lsp.completion.warmup import cursor_offsets, warm_history, warmup_positions
from rest_lsp.engine.drafter import Drafter

TEXT = "import os\n\n\nx = 1\n\ndef f(a):\n    if a:\n        return 1\n\n    return 2\n"


def test_cursor_offsets_sit_after_the_indentation_of_non_blank_lines():
    offsets = cursor_offsets(TEXT, min_line=3)
    lines = [TEXT[o:].split("\n", 1)[0] for o in offsets]
    assert lines == ["x = 1", "def f(a):", "if a:", "return 1", "return 2"]
    assert cursor_offsets(TEXT, min_line=100) == []


def test_warmup_positions_spread_over_files_first_and_are_reproducible():
    files = {f"f{i}.py": TEXT for i in range(4)} | {"empty.py": "", "short.py": "a\n", "gone.py": None}
    read = files.get
    first = warmup_positions(list(files), read, 4, min_line=3)
    assert sorted(p for p, _ in first) == ["f0.py", "f1.py", "f2.py", "f3.py"]  # one per file per round
    assert first == warmup_positions(list(reversed(files)), read, 4, min_line=3)  # the files' order does not matter
    assert warmup_positions(list(files), read, 4, seed=1, min_line=3) != first
    every = warmup_positions(list(files), read, 1000, min_line=3)
    assert len(every) == 20 and len(set(every)) == 20  # all of them, each once
    assert every[:4] == first  # a larger count extends the same sequence: a resumed run goes on
    assert warmup_positions(list(files), read, 0) == [] and warmup_positions([], read, 5) == []


def test_warmup_positions_read_no_more_files_than_the_count_needs():
    reads = []

    def read(path):
        reads.append(path)
        return TEXT

    assert len(warmup_positions([f"f{i}.py" for i in range(1000)], read, 3, min_line=3)) == 3
    assert len(reads) == 3  # a huge workspace is sampled, not read whole


def test_warm_history_retries_preempted_positions_and_stops_when_told():
    positions = [("a", 1), ("b", 2), ("gone", 3), ("c", 4)]
    preempt = {"b": 1}  # b's first decode is preempted by a request
    added, reported = [], []

    def prompt_at(path, offset):
        return None if path == "gone" else [offset, offset]

    def decode(ids):
        path = {1: "a", 2: "b", 4: "c"}[ids[0]]
        if preempt.get(path):
            preempt[path] -= 1
            return None
        return [ids[0]] * 3

    result = warm_history(positions, prompt_at, decode, added.append, progress=lambda d, t: reported.append((d, t)))
    assert added == [[1, 1, 1], [2, 2, 2], [4, 4, 4]]
    assert (result.completed, result.preempted, result.tokens, result.stopped) == (4, 1, 9, False)
    assert reported == [(1, 4), (2, 4), (3, 4), (4, 4)]

    calls = iter([True, True, False])
    stopped = warm_history(positions, prompt_at, decode, added.append, wait_idle=lambda: next(calls))
    assert (stopped.completed, stopped.stopped) == (2, True)


def _drafting(tmp_path, model, warmup=400):
    from rest_lsp.drafting.session import WorkspaceDrafting
    from rest_lsp.config.schema import Config

    config = Config()
    config.index.index_dir = str(tmp_path / "idx")
    config.retrieval.history_warmup = warmup
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    loaded = SimpleNamespace(model=model, runner=None, tokenizer=None, source="tiny")
    logs: list[str] = []
    return WorkspaceDrafting(str(workspace), config, loaded, SimpleNamespace(retrieve=None), threading.Lock(), logs.append), logs


def test_the_history_file_keeps_the_warm_up_count_and_is_refused_for_another_model(tmp_path):
    from engine_testing import tiny_model

    model = tiny_model()
    d, _ = _drafting(tmp_path, model)
    d.history.add([5, 6, 7])
    d.warmed = 12
    d.close()
    again, _ = _drafting(tmp_path, model)
    assert again.warmed == 12 and again.history.to_list() == [5, 6, 7, -1]
    assert again.stats()["history_warmup"] == {"done": 12, "target": 400}

    other = tiny_model(num_hidden_layers=1)  # another configuration: another model
    fresh, logs = _drafting(tmp_path, other)
    assert fresh.warmed == 0 and fresh.history.to_list() == []
    assert any("another model's" in line for line in logs)

    # format 1 (a bare list, before the model was named): kept when its ids fit the vocabulary
    again.history_file.write_bytes(msgpack.packb([5, 6, -1]))
    assert _drafting(tmp_path, model)[0].history.to_list() == [5, 6, -1]
    again.history_file.write_bytes(msgpack.packb([5, 10 ** 9, -1]))
    assert _drafting(tmp_path, model)[0].history.to_list() == []


def _service(tmp_path, warmup: int):
    from lsp_testing import init_options, make_tiny_model_dir

    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config

    model_dir = tmp_path / "model"
    if not model_dir.exists():
        make_tiny_model_dir(model_dir, steer=("a", "b"))  # never an empty output
        (tmp_path / "corpus").mkdir()
        (tmp_path / "corpus" / "lib.py").write_text("def join(a, b):\n    return a + b\n")
        ws = tmp_path / "ws"
        ws.mkdir()
        for i in range(3):
            (ws / f"m{i}.py").write_text("".join(f"def f{i}_{j}(x):\n    return x + {j}\n\n" for j in range(6)))
    config, problems = Config.from_dict(init_options(model_dir, tmp_path / "corpus", retrieval={"history_warmup": warmup},
                                                     index={"index_dir": str(tmp_path / "idx")}))
    assert not problems
    service = CompletionService(config, [str(tmp_path / "ws")])
    service.start()
    return service


def test_the_service_warms_its_history_resumes_after_a_restart_and_yields_to_requests(tmp_path):
    from rest_lsp.completion import warmup

    service = _service(tmp_path, 3)
    assert warmup.wanted(service) and service.drafting.history.to_list() == []
    service.config.decoding.mode = "greedy"  # drafts nothing: nothing to warm up for
    assert not warmup.wanted(service)
    service.config.decoding.mode = "rest"

    class Request(Drafter):
        """A drafter that makes a completion request arrive during the first warm-up decode."""

        arrived = False

        def draft(self, context_ids):
            if not Request.arrived:
                Request.arrived = True
                service.figures.requests += 1
            return []

    service.drafting.drafter.drafters.append(Request())
    reports = []
    line = warmup.run_warmup(service, lambda done, total, message: reports.append((done, total, message)))
    assert "history warmed: 3/3 completions" in line and "(1 preempted by requests)" in line, line
    assert reports[-1] == (3, 3, "warming the history: 3/3 completions")
    tokens = service.drafting.history.to_list()
    assert tokens.count(-1) == 3  # three outputs: the preempted one was not kept, its position was retried
    assert not warmup.wanted(service)
    service.close()

    more = _service(tmp_path, 5)  # restarted with a larger count: resumes from the saved history
    assert more.drafting.warmed == 3 and more.drafting.history.to_list() == tokens
    assert warmup.wanted(more)
    assert "history warmed: 5/5" in warmup.run_warmup(more, lambda *a: None)
    assert more.drafting.history.to_list()[:len(tokens)] == tokens
    more.close()


def test_a_closed_workspace_stops_the_warm_up(tmp_path):
    from rest_lsp.completion import warmup

    service = _service(tmp_path, 50)
    service.last_request_at = time.monotonic() + 3600  # requests for an hour: the warm-up waits for quiet
    done = threading.Event()
    lines = []
    worker = threading.Thread(target=lambda: (lines.append(warmup.run_warmup(service, lambda *a: None)), done.set()))
    worker.start()
    service.close()
    assert done.wait(30), "the warm-up did not stop when the workspace closed"
    assert "history stopped (workspace closed): 0/" in lines[0], lines[0]
