"""The document warm-up: the idle-time prefill of a document's next prompt (``document_warm``).

The warmer alone (a recording warm function, no model), then through a service on the embedded
model: a completion at a new place in a warmed document reuses the K/V up to its cursor and
completes as a cold request does.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service_testing import started_service
from rest_lsp.completion.document_warm import DocumentWarmer

WAIT_S = 30.0


class Recorder:
    """A warm function that records its calls; ``hold`` makes it run until told to stop."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[tuple[str, str, int | None]] = []
        self.called = threading.Event()
        self.saw_stop = threading.Event()
        self.hold = hold

    def __call__(self, uri, text, offset, should_stop) -> None:
        self.calls.append((uri, text, offset))
        self.called.set()
        deadline = time.monotonic() + WAIT_S
        while self.hold and time.monotonic() < deadline:  # a long prefill, chunk by chunk
            if should_stop():
                self.saw_stop.set()
                return
            self.saw_stop.wait(0.001)


def test_the_last_touched_document_is_warmed_once_idle_at_its_last_known_place():
    warm = Recorder()
    warmer = DocumentWarmer(warm, idle_s=0.05)
    try:
        warmer.touch("file:///a.py", "aaaa", 3)
        warmer.touch("file:///b.py", "bbbbbb", 5)
        warmer.touch("file:///b.py", "bbb")  # an edit: no place given, the last one kept (clamped)
        assert warmer.wait_rounds(1, WAIT_S)
    finally:
        warmer.close()
    assert warm.calls == [("file:///b.py", "bbb", 3)]
    assert warmer.done == 1 and warmer.stopped == 0


def warming(uri: str = "file:///a.py") -> tuple[Recorder, DocumentWarmer]:
    """A warmer whose warm-up of ``uri`` has started and runs until it is told to stop."""
    warm = Recorder(hold=True)
    warmer = DocumentWarmer(warm, idle_s=0.01)
    warmer.touch(uri, "text")
    assert warm.called.wait(WAIT_S)
    return warm, warmer


def test_a_request_stops_a_running_warm_up():
    warm, warmer = warming()
    try:
        warmer.busy()
        assert warm.saw_stop.wait(WAIT_S)
        assert warmer.wait_rounds(1, WAIT_S)
    finally:
        warmer.close()
    assert warmer.stopped == 1 and warmer.done == 0


def test_closing_the_document_stops_its_running_warm_up():
    warm, warmer = warming()
    try:
        warmer.forget("file:///b.py")  # another document: this one goes on
        assert not warm.saw_stop.wait(0.05)
        warmer.forget("file:///a.py")
        assert warm.saw_stop.wait(WAIT_S)
    finally:
        warmer.close()
    assert warmer.stopped == 1


def test_no_warm_up_while_a_request_runs():
    warm = Recorder()
    warmer = DocumentWarmer(warm, idle_s=0.01)
    try:
        warmer.busy()
        warmer.touch("file:///a.py", "text", 1)  # an edit during the request
        assert not warmer.wait_rounds(1, 0.2)  # twenty idle periods: still running
        warmer.idle()
        assert warmer.wait_rounds(1, WAIT_S)
    finally:
        warmer.close()
    assert warm.calls == [("file:///a.py", "text", 1)]


def test_a_closed_document_is_not_warmed_and_a_closed_warmer_warms_nothing():
    warm = Recorder()
    warmer = DocumentWarmer(warm, idle_s=WAIT_S)  # never idle long enough during the test
    warmer.touch("file:///a.py", "text", 2)
    warmer.forget("file:///a.py")
    warmer.close()
    warmer.touch("file:///a.py", "text", 2)
    assert not warmer.wait_rounds(1, 0.05)
    assert warm.calls == []


# ---- through a service on the embedded model ---------------------------------------------------

LINES = [f"def helper_{i}(value):\n    total = value * {i} + {i % 7}\n    return total - {i % 3}\n\n" for i in range(60)]
DOC = "".join(LINES)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with started_service(tmp_path_factory.mktemp("warm"), {"other.py": "def unrelated():\n    return 1\n"},
                         decoding={"max_new_tokens": 8}, server={"max_prompt_tokens": 512}) as svc:
        svc.warmer.idle_s = 0.05
        yield svc


def test_a_new_place_in_a_warmed_document_prefills_only_its_suffix(service):
    uri = (Path(service.folders[0]) / "cur.py").as_uri()
    first = DOC.index("def helper_30")
    done = service.warmer.done
    service.complete(DOC, first, uri=uri)  # a completion touches its document (no other touch here)
    assert service.warmer.wait_rounds(done + 1, WAIT_S, done_only=True)
    # the user moves three functions down and asks there (no warm-up during the comparison)
    service.warmer.idle_s = WAIT_S
    moved = DOC.index("def helper_33")
    warmed = service.complete(DOC, moved, uri=uri)
    last = dict(service.last)
    suffix = len(service.loaded.tokenizer.encode(DOC[moved:], add_special_tokens=False))
    assert last["prompt_tokens"] > 250
    assert last["prefill_tokens"] <= min(suffix, service.config.server.max_suffix_tokens) + 8
    assert last["reused_tokens"] >= last["prompt_tokens"] - last["prefill_tokens"] - 1
    # the same request from a cold cache completes the same
    service.engine.reset()
    cold = service.complete(DOC, moved, uri=uri)
    assert service.last["reused_tokens"] == 0 and service.last["prompt_tokens"] == last["prompt_tokens"]
    assert cold.items == warmed.items
    # a warm-up there keeps the block, chosen twelve lines up
    service.warmer.idle_s = 0.05
    started, done = service.context_session.started, service.warmer.done
    service.warmer.touch(uri, DOC, moved)
    assert service.warmer.wait_rounds(done + 1, WAIT_S, done_only=True)
    assert service.context_session.started == started
