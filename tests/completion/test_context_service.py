"""The context block through ``CompletionService.prompt_for`` on a small workspace, with the embedded
model: what the block holds, that it never quotes the current file, secrets or ignored files,
that it stays the same between keystrokes (so the prompt's tokens do), and that REST decoding of
a prompt with a block is token-identical to greedy decoding of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service_testing import started_service
from rest_lsp.engine.engine import common_prefix_len

GEOMETRY = '''import math


class Vector:
    """A 2-d vector."""

    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm(self):
        return math.sqrt(self.x ** 2 + self.y ** 2)


def scale_vector(vector, factor):
    """Multiply both coordinates by factor."""
    return Vector(vector.x * factor, vector.y * factor)
'''

SHAPES = '''from geometry import Vector


def make_square(side):
    corners = [Vector(0, 0), Vector(side, 0), Vector(side, side), Vector(0, side)]
    return corners
'''

#: a secret file and an ignored file, each holding the very docstring the text before the cursor
#: has, and definitions of names used there: a context source that broke the rules would quote them
SECRET = '''API_TOKEN = "sk-live-0123456789abcdef"


def hidden_rotation(vector, angle):
    """Multiply both coordinates by factor."""
    return LEAKED_SECRET(vector.x * math.cos(angle), vector.y * math.sin(angle))
'''
IGNORED = '''def generated_helper(vector, angle):
    """Multiply both coordinates by factor."""
    return LEAKED_IGNORED(vector.x * math.cos(angle), vector.y * math.sin(angle))
'''

CURRENT = '''import math

from geometry import Vector, scale_vector


def length_of(v):
    return math.sqrt(v.x ** 2 + v.y ** 2)


def bigger(vector, factor):
    """Multiply both coordinates by factor."""
    a = hidden_rotation(vector, factor)
    b = generated_helper(vector, factor)
    c = scale_vector(vector, 2)
    return '''
SUFFIX = "\n\n\ndef smaller(v):\n    return scale_vector(v, 0.5)\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    files = {
        "geometry.py": GEOMETRY, "shapes.py": SHAPES, ".env": SECRET, "generated.py": IGNORED,
        ".gitignore": "generated.py\n",
        "cur.py": CURRENT.replace("def bigger", "def the_copy_on_disk"),  # the current file's saved copy
    }
    # no background prefill between a test's steps (test_document_warm tests it)
    with started_service(tmp_path_factory.mktemp("context"), files, decoding={"max_new_tokens": 24},
                         server={"warm_documents": False}) as svc:
        yield svc


def uri_of(service, rel: str) -> str:
    return (Path(service.folders[0]) / rel).as_uri()


def text_of(service, ids) -> str:
    return service.loaded.tokenizer.decode(ids)


def prompt_at_end(service, text: str = CURRENT + SUFFIX, offset: int = len(CURRENT)):
    service.context_session.reset()
    uri = uri_of(service, "cur.py")
    service.update_buffer(uri, text)
    prompt, _, _ = service.prompt_for(text, offset, uri)
    return prompt, service.last_context


def test_the_block_quotes_other_files_matches_and_definitions(service):
    prompt, block = prompt_at_end(service)
    assert prompt.fim and prompt.context_tokens == block.tokens > 0
    assert prompt.context_tokens <= service.config.server.context_tokens
    paths = {s.path for s in block.snippets}
    assert paths <= {"geometry.py", "shapes.py"} and "geometry.py" in paths
    # scale_vector, used near the cursor (its window holds the docstring's run too: one snippet)
    assert ("geometry.py", "definition") in {(s.path, s.kind) for s in block.snippets}
    text = text_of(service, prompt.ids)
    # the embedded model has no repository tokens: commented headers open the file's text
    assert text.startswith("<|fim_prefix|># ") and "def scale_vector(vector, factor):" in text
    assert text.index("def scale_vector") < text.index("def length_of")


def test_runs_before_the_cursor_find_the_lines_of_other_files(service):
    from rest_lsp.completion.context_sources import match_snippets, query_ids, sources_of

    uri = uri_of(service, "cur.py")
    service.update_buffer(uri, CURRENT + SUFFIX)
    store = service.store
    found = match_snippets(sources_of(store, uri, store.workspace.root), query_ids(CURRENT, store.tokenizer.encode),
                           store.tokenizer.decode)
    docstring = [s for s in found if '"""Multiply both coordinates by factor."""' in s.text]
    assert docstring and {s.path for s in docstring} == {"geometry.py"}  # not .env, generated.py, cur.py
    assert "return Vector(vector.x * factor, vector.y * factor)" in docstring[0].text  # what followed it
    assert max(found, key=lambda s: s.score) is docstring[0] and docstring[0].score >= 12  # the longest run


def test_the_current_file_is_never_a_source(service):
    _, block = prompt_at_end(service)
    assert "cur.py" not in {s.path for s in block.snippets}
    assert not any("the_copy_on_disk" in s.text or "length_of" in s.text for s in block.snippets)


def test_secrets_and_ignored_files_never_enter_a_block(service):
    # opened in the editor too: the live tier refuses them, so they are no source either
    service.update_buffer(uri_of(service, ".env"), SECRET)
    service.update_buffer(uri_of(service, "generated.py"), IGNORED)
    try:
        prompt, block = prompt_at_end(service)
        text = text_of(service, prompt.ids)
        assert {s.path for s in block.snippets}.isdisjoint({".env", "generated.py"})
        for leak in ("sk-live", "LEAKED", "def hidden_rotation", "def generated_helper"):
            assert leak not in text
        # the same text in an ordinary open buffer is quoted: the rules, not the search, kept them out
        service.update_buffer(uri_of(service, "visible.py"), IGNORED.replace("LEAKED_IGNORED", "VISIBLE"))
        prompt, block = prompt_at_end(service)
        assert "return VISIBLE(" in text_of(service, prompt.ids)
        assert "visible.py" in {s.path for s in block.snippets}
    finally:
        for rel in (".env", "generated.py", "visible.py"):
            service.drop_buffer(uri_of(service, rel))


def test_the_block_is_kept_while_typing_on_so_the_prompt_tokens_are(service):
    service.context_session.reset()
    service.config.server.warm_documents = True  # the default; prompt_for alone starts no warm-up
    uri = uri_of(service, "cur.py")
    first_text = CURRENT + SUFFIX
    offset = len(CURRENT)
    first, _, _ = service.prompt_for(first_text, offset, uri)
    block = service.last_context
    typed = first_text[:offset] + "V" + first_text[offset:]
    second, _, _ = service.prompt_for(typed, offset + 1, uri)
    assert service.last_context is block and block.tokens > 0
    status = service.status()["context"]
    assert status["reused"] >= 1 and status["last_block"]["tokens"] == block.tokens
    # the opening FIM token, the whole block, and the file's prefix up to the edit (the last token
    # or two are healed or re-tokenized around the typed character)
    head = 1 + first.context_tokens
    prefix_tokens = first.ids.index(service.fim.suffix) - head
    assert second.ids[:head] == first.ids[:head] and prefix_tokens > 50
    assert common_prefix_len(first.ids, second.ids) >= head + prefix_tokens - 2
    # with the document warm-up (the default) a session is the document: a new line keeps the
    # block, and the warm-up's prompt (restart) chooses it again
    newline = typed[:offset + 1] + "\n    " + typed[offset + 1:]
    started = service.context_session.started
    service.prompt_for(newline, offset + 6, uri)
    assert service.context_session.started == started
    service.prompt_for(newline, offset + 6, uri, restart=True)
    assert service.context_session.started == started + 1
    # without it, a new line starts a new session: the block is chosen again
    service.config.server.warm_documents = False
    service.prompt_for(typed, offset + 1, uri)
    started = service.context_session.started
    service.prompt_for(newline, offset + 6, uri)
    assert service.context_session.started == started + 1


def test_no_block_when_the_context_is_off(service):
    with_block, _ = prompt_at_end(service)
    service.config.server.context = "off"
    try:
        without, block = prompt_at_end(service)
    finally:
        service.config.server.context = "auto"
    assert block.tokens == 0 and without.context_tokens == 0 and with_block.context_tokens > 0
    assert len(without.ids) < len(with_block.ids) and "# geometry.py" not in text_of(service, without.ids)


def test_rest_decoding_of_a_prompt_with_a_block_equals_greedy(service):
    prompt, block = prompt_at_end(service)
    assert block.tokens > 0
    first_allowed = None if prompt.healed is None else service.extensions.extending(prompt.healed)
    outputs = {}
    for mode in ("greedy", "rest", "greedy"):
        gen = service.engine.complete(prompt.ids, 24, mode=mode, first_allowed=first_allowed)
        outputs.setdefault(mode, []).append(list(gen.tokens))
    assert outputs["rest"][0] == outputs["greedy"][0] == outputs["greedy"][1] and outputs["rest"][0]
    # and through the service, as an editor asks
    text, uri = CURRENT + SUFFIX, uri_of(service, "cur.py")
    items = {}
    for mode in ("greedy", "rest"):
        service.config.decoding.mode = mode
        service.context_session.reset()
        items[mode] = service.complete(text, len(CURRENT), uri=uri).items
        assert service.last["context_tokens"] > 0 and "geometry.py" in service.last["context_files"]
    service.config.decoding.mode = "rest"
    assert items["rest"] == items["greedy"]


def test_the_cursor_completes_one_statement_except_at_a_new_body(service):
    uri = uri_of(service, "cur.py")
    head = CURRENT[: CURRENT.index("    a = hidden_rotation")]
    for text, offset, one in [
        (CURRENT + SUFFIX, len(CURRENT), True),  # "    return |": a line being written
        (head + "\n" + SUFFIX, len(head), False),  # a new body after its docstring, code after it
        (head + "    a = 1\n\n    b = 2\n", len(head) + len("    a = 1\n"), True),  # a line inserted
    ]:
        service.update_buffer(uri, text)
        _, cursor, _ = service.prompt_for(text, offset, uri)
        assert cursor.statement_only is one, text[:offset][-40:]
