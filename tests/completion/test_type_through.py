"""Typing through a suggestion: ``rest_after_typing`` (pure), then through a service on the
embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from rest_lsp.completion.type_through import Shown, rest_after_typing
from service_testing import started_service

TEXT = "def f(x):\n    \n\nprint(f(1))\n"
AT = TEXT.index("\n\nprint")
SHOWN = Shown("file:///a.py", TEXT, AT, "return x * 2")


def typed(chars: str) -> str:
    return TEXT[:AT] + chars + TEXT[AT:]


def test_typing_the_beginning_of_the_suggestion_leaves_its_rest():
    assert rest_after_typing(SHOWN, "file:///a.py", typed("re"), AT + 2) == "turn x * 2"
    assert rest_after_typing(SHOWN, "file:///a.py", typed("return x * "), AT + 11) == "2"


def test_anything_else_decodes():
    assert rest_after_typing(None, "file:///a.py", typed("r"), AT + 1) is None
    assert rest_after_typing(SHOWN, "file:///b.py", typed("r"), AT + 1) is None  # another document
    assert rest_after_typing(SHOWN, "file:///a.py", typed("x"), AT + 1) is None  # not what it says
    assert rest_after_typing(SHOWN, "file:///a.py", typed("return x * 2"), AT + 12) is None  # nothing left
    assert rest_after_typing(SHOWN, "file:///a.py", TEXT, AT) is None  # no keystroke
    other = typed("r").replace("print(f(1))", "print(f(2))")
    assert rest_after_typing(SHOWN, "file:///a.py", other, AT + 1) is None  # the text after changed too
    assert rest_after_typing(SHOWN, "file:///a.py", "# " + typed("r"), AT + 3) is None  # and before
    lines = Shown("file:///a.py", TEXT, AT, "return x\n    pass")
    assert rest_after_typing(lines, "file:///a.py", typed("return x\n"), AT + 9) is None  # a newline typed


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with started_service(tmp_path_factory.mktemp("through"), {"other.py": "def unrelated():\n    return 1\n"},
                         decoding={"max_new_tokens": 12}, server={"warm_documents": False}) as svc:
        yield svc


def test_a_keystroke_typing_the_suggestion_is_answered_without_decoding(service):
    uri = (Path(service.folders[0]) / "cur.py").as_uri()
    text = "def scale(vector, factor):\n    "
    first = service.complete(text, len(text), uri=uri)
    assert first.items and len(first.items[0]) > 1, first.items
    shown = first.items[0]
    through = service.complete(text + shown[0], len(text) + 1, uri=uri)
    assert through.items == [shown[1:]] and service.last["type_through"] is True
    assert service.figures.typed_through == 1
    # a keystroke that does not follow it decodes again
    other = "#" if shown[0] != "#" else "@"
    service.complete(text + other, len(text) + 1, uri=uri)
    assert "type_through" not in service.last and service.last["new_tokens"] >= 0
    # switched off, the same keystroke decodes
    service.config.server.type_through = False
    try:
        service.complete(text, len(text), uri=uri)
        service.complete(text + shown[0], len(text) + 1, uri=uri)
        assert "type_through" not in service.last
    finally:
        service.config.server.type_through = True
