"""End-to-end tests of ``rest-lsp serve`` over stdio with a real LSP client (pytest-lsp/pygls)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient, make_test_lsp_client

from rest_lsp.engine.model import resolve_device

from lsp_testing import (capabilities, init_options, make_tiny_model_dir, ready, server_command, server_env, wait_for_log,
                         wait_for_progress_end)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"


#: the two tokens the steered tiny model writes (``make_tiny_model_dir(steer=...)``)
STEER = ("a", "b")


def steered(text: str) -> bool:
    """Whether a completion is what the steered model writes: a non-empty run of its tokens."""
    return bool(text) and set(text) <= set("".join(STEER))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    # steered: greedy output is a run of "a"/"b" tokens whatever the prompt, so every completion
    # below has text (a random model's first token may be one the stop rules cut)
    return make_tiny_model_dir(tmp_path_factory.mktemp("model"), steer=STEER)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    (root / "pkg").mkdir()
    (root / "pkg" / "ops.py").write_text(SOURCE)
    (root / ".env").write_text("SECRET_TOKEN=hunter2\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "lib.py").write_text("import os\n\n\ndef join(a, b):\n    return os.path.join(a, b)\n")
    return root


async def start(home: Path, model_dir: Path, corpus: Path, workspace: Path, inline: bool = True, **sections):
    """A started, initialized client with its server ready to complete."""
    client = make_test_lsp_client()
    await client.start_io(*server_command(), env=server_env(home))
    result = await client.initialize_session(
        lsp.InitializeParams(
            capabilities=capabilities(inline),
            root_uri=workspace.as_uri(),
            workspace_folders=[lsp.WorkspaceFolder(uri=workspace.as_uri(), name="ws")],
            initialization_options=init_options(model_dir, corpus, **sections),
        )
    )
    line = await wait_for_log(client, ready)
    assert line.startswith("rest-lsp ready"), line
    return client, result


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(tmp_path_factory, model_dir, corpus, workspace):
    home = tmp_path_factory.mktemp("home")
    client, result = await start(home, model_dir, corpus, workspace)
    yield client, result, workspace
    await client.shutdown_session()
    await client.stop()


def open_doc(client: LanguageClient, path: Path, text: str, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))
    return uri


async def inline(client: LanguageClient, uri: str, line: int, col: int, invoked: bool = False):
    kind = lsp.InlineCompletionTriggerKind.Invoked if invoked else lsp.InlineCompletionTriggerKind.Automatic
    return await client.text_document_inline_completion_async(
        lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(trigger_kind=kind),
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=lsp.Position(line=line, character=col),
        )
    )


@pytest.mark.asyncio(loop_scope="module")
async def test_initialize_advertises_inline_completion_and_commands(session):
    client, result, _ = session
    caps = result.capabilities
    assert caps.inline_completion_provider
    assert caps.completion_provider is None  # the client has inline completion
    assert {"rest-lsp.status", "rest-lsp.query", "rest-lsp.reindex"} <= set(caps.execute_command_provider.commands)
    assert caps.text_document_sync.change == lsp.TextDocumentSyncKind.Incremental


@pytest.mark.asyncio(loop_scope="module")
async def test_indexing_reports_progress(session):
    client, _, _ = session
    await wait_for_progress_end(client)
    reports = [r for token, rs in client.progress_reports.items() for r in rs]
    assert any(isinstance(r, lsp.WorkDoneProgressBegin) for r in reports)
    assert any(isinstance(r, lsp.WorkDoneProgressEnd) for r in reports)


@pytest.mark.asyncio(loop_scope="module")
async def test_inline_completion_matches_the_service(session, model_dir, tmp_path):
    client, _, workspace = session
    text = "def square(x):\n    "
    uri = open_doc(client, workspace / "new.py", text)
    result = await inline(client, uri, 1, 4)
    assert isinstance(result, lsp.InlineCompletionList)
    assert result.items and all(steered(item.insert_text) for item in result.items)
    for item in result.items:
        assert item.range.start == lsp.Position(1, 4)
        assert item.command.command == "rest-lsp.accepted"
    # the same completion computed in-process, through the same service, gives the same text
    from rest_lsp.completion.service import CompletionService
    from rest_lsp.config.schema import Config

    config, problems = Config.from_dict(init_options(model_dir, workspace))
    assert not problems
    service = CompletionService(config, [])
    service._load_model()
    service._ready.set()
    service.store = None
    from rest_lsp.engine.drafter import NullDrafter

    service.engine.drafter = NullDrafter()  # greedy-exact: drafts never change the text
    expected = service.complete(text, len(text)).items
    assert [i.insert_text for i in result.items] == expected


@pytest.mark.asyncio(loop_scope="module")
async def test_incremental_change_and_invoked_items(session):
    client, _, workspace = session
    uri = open_doc(client, workspace / "inc.py", "x = 1\n")
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[lsp.TextDocumentContentChangePartial(range=lsp.Range(start=lsp.Position(line=1, character=0), end=lsp.Position(line=1, character=0)), text="def f():\n    ")],
        )
    )
    result = await inline(client, uri, 2, 4, invoked=True)
    assert isinstance(result, lsp.InlineCompletionList)
    assert 1 <= len(result.items) <= 3 and all(steered(item.insert_text) for item in result.items)


@pytest.mark.asyncio(loop_scope="module")
async def test_status_and_query_commands(session):
    client, _, _ = session
    status = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.status"))
    assert status["state"] == "ready"
    assert status["model"]["device"] == str(resolve_device("auto"))  # model.device = "auto" here
    assert status["index"]
    found = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.query", arguments=["    return a"]))
    assert found["suffix_len"] > 0
    assert any(c["source"] == "workspace" for c in found["candidates"])


@pytest.mark.asyncio(loop_scope="module")
async def test_saved_file_becomes_retrievable(session):
    client, _, workspace = session
    path = workspace / "pkg" / "fresh.py"
    marker = "zebra_quokka_marker = compute_the_zebra_quokka(42)\n"
    path.write_text(marker)
    client.workspace_did_change_watched_files(
        lsp.DidChangeWatchedFilesParams(changes=[lsp.FileEvent(uri=path.as_uri(), type=lsp.FileChangeType.Created)])
    )
    client.text_document_did_save(lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=path.as_uri())))
    # the refresh runs in the background: ask until it is visible, each ask an awaited round trip
    for _ in range(200):
        found = await client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command="rest-lsp.query", arguments=["zebra_quokka_marker = compute_the"])
        )
        if any("zebra_quokka" in c["text"] for c in found["candidates"]):
            break
    else:
        pytest.fail(f"saved file never became retrievable: {found}")


@pytest.mark.asyncio(loop_scope="module")
async def test_secrets_are_not_indexed(session):
    client, _, _ = session
    found = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.query", arguments=["SECRET_TOKEN="]))
    assert not any("hunter2" in c["text"] for c in found["candidates"])


@pytest.mark.asyncio(loop_scope="module")
async def test_supersession_and_cancellation(session):
    client, _, workspace = session
    uri = open_doc(client, workspace / "race.py", "def g(y):\n    ")
    first = asyncio.ensure_future(inline(client, uri, 1, 4))
    second = asyncio.ensure_future(inline(client, uri, 1, 4))
    results = await asyncio.gather(first, second)
    assert all(isinstance(r, lsp.InlineCompletionList) for r in results)
    # a request cancelled by the client is answered with the LSP cancellation error or a result
    third = asyncio.ensure_future(inline(client, uri, 1, 4))
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    # the server still answers afterwards
    assert isinstance(await inline(client, uri, 1, 4), lsp.InlineCompletionList)


@pytest.mark.asyncio(loop_scope="module")
async def test_bad_params_get_jsonrpc_errors_and_server_survives(session):
    client, _, workspace = session
    from pygls.exceptions import JsonRpcException

    with pytest.raises(JsonRpcException):
        await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.no-such-command"))
    with pytest.raises(JsonRpcException):
        await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.query", arguments=[42]))
    # a completion for a document that was never opened is an empty result, not a dead server
    result = await inline(client, (workspace / "never-opened.py").as_uri(), 0, 0)
    assert result is None or not result.items
    uri = open_doc(client, workspace / "after.py", "import os\n")
    assert isinstance(await inline(client, uri, 1, 0), lsp.InlineCompletionList)


@pytest.mark.asyncio(loop_scope="module")
async def test_configuration_change_applies_and_reports_problems(session):
    client, _, workspace = session
    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"rest-lsp": {"decoding": {"max_new_tokens": "many"}}})
    )
    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"rest-lsp": {"decoding": {"max_new_tokens": 4, "draft_budget": 8}}})
    )
    status = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.status"))
    assert status["draft_budget"] == 8
    assert any("max_new_tokens" in m.message for m in client.messages)


@pytest.mark.asyncio
async def test_classic_completion_for_clients_without_inline(tmp_path, model_dir, corpus, workspace):
    client, result = await start(tmp_path / "home", model_dir, corpus, workspace, inline=False,
                                 decoding={"max_new_tokens": 8})
    try:
        assert result.capabilities.completion_provider is not None
        uri = open_doc(client, workspace / "classic.py", "def h(z):\n    ")
        items = await client.text_document_completion_async(
            lsp.CompletionParams(text_document=lsp.TextDocumentIdentifier(uri=uri), position=lsp.Position(line=1, character=4))
        )
        assert isinstance(items, lsp.CompletionList)
        assert items.items and all(steered(item.text_edit.new_text) for item in items.items)
        for item in items.items:
            assert item.text_edit.range.start == lsp.Position(1, 4)
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.asyncio
async def test_invalid_initialization_options_are_reported_and_defaults_used(tmp_path, model_dir, corpus, workspace):
    client, _ = await start(tmp_path / "home", model_dir, corpus, workspace,
                            decoding={"max_new_tokens": -3}, server={"debounce_ms": 0, "nonsense": 1})
    try:
        texts = [m.message for m in client.messages]
        assert any("max_new_tokens" in t for t in texts) and any("nonsense" in t for t in texts)
        status = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.status"))
        assert status["state"] == "ready"
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.asyncio
async def test_classic_and_inline_requests_together_share_one_result(tmp_path, model_dir, corpus, workspace):
    # VS Code with both kinds on sends textDocument/completion and inlineCompletion at once
    client, result = await start(tmp_path / "home", model_dir, corpus, workspace, inline=True,
                                 server={"classic_completion": True, "debounce_ms": 0})
    try:
        assert result.capabilities.completion_provider is not None
        uri = open_doc(client, workspace / "both.py", "def k(w):\n    ")
        classic = asyncio.ensure_future(client.text_document_completion_async(
            lsp.CompletionParams(text_document=lsp.TextDocumentIdentifier(uri=uri), position=lsp.Position(line=1, character=4))))
        ghost = asyncio.ensure_future(inline(client, uri, 1, 4))
        items, ghosts = await asyncio.gather(classic, ghost)
        assert ghosts.items
        assert [i.text_edit.new_text for i in items.items][:1] == [g.insert_text for g in ghosts.items]
        await wait_for_log(client, lambda m: "shares the result" in m, timeout=30)
        assert not any("superseded" in m.message for m in client.log_messages)
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.asyncio
async def test_dense_on_builds_the_dense_index_in_the_background(tmp_path, model_dir, corpus, workspace):
    # retrieval.dense = "on" and no dense index yet: completions work at once, the first build
    # follows under the same $/progress, and from then on the dense tier drafts
    client, _ = await start(tmp_path / "home", model_dir, corpus, workspace, retrieval={"dense": "on", "history_warmup": 0})
    try:
        uri = open_doc(client, workspace / "dense.py", "def k(w):\n    ")
        await inline(client, uri, 1, 4)  # answered, whether or not the build is done
        line = await wait_for_log(client, lambda m: m.startswith("rest-lsp: dense index"), timeout=120)
        assert line.startswith("rest-lsp: dense index built"), line
        reports = [r for rs in client.progress_reports.values() for r in rs]
        assert any(isinstance(r, lsp.WorkDoneProgressReport) and "embedding" in (r.message or "") for r in reports)
        ends = [r for r in reports if isinstance(r, lsp.WorkDoneProgressEnd)]
        assert ends and ends[-1].message == line  # the progress ends once the dense tier serves
        status = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.status"))
        assert status["dense"]["entries"] > 0
        result = await inline(client, uri, 1, 4)
        assert isinstance(result, lsp.InlineCompletionList)
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_history_warm_up_follows_the_dense_build_and_persists(tmp_path, model_dir, corpus):
    # after indexing: the dense build under the start-up progress, then, with no progress (the
    # daemon is ready: an editor must not show it as indexing), the model's completions at 4
    # workspace positions, logged; a restart does not warm up again
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "mod.py").write_text("".join(f"def f{j}(x):\n    return x * {j}\n\n" for j in range(8)))
    for attempt in (1, 2):
        client, _ = await start(tmp_path / "home", model_dir, corpus, ws, retrieval={"dense": "on", "history_warmup": 4})
        try:
            if attempt == 1:
                dense_line = await wait_for_log(client, lambda m: m.startswith("rest-lsp: dense index"), timeout=120)
                line = await wait_for_log(client, lambda m: m.startswith("rest-lsp: history"), timeout=120)
                assert dense_line.startswith("rest-lsp: dense index built"), dense_line
                assert "history warmed: 4/4 completions" in line, line
                reports = [r for rs in client.progress_reports.values() for r in rs]
                ends = [r for r in reports if isinstance(r, lsp.WorkDoneProgressEnd)]
                assert ends and ends[-1].message == dense_line
                assert not any("history" in (getattr(r, "message", None) or "") for r in reports)
            status = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.status"))
            assert status["history_warmup"] == {"done": 4, "target": 4} and status["history_tokens"] > 0
            if attempt == 2:  # persisted with the history: nothing left to warm up
                assert not any(m.message.startswith("rest-lsp: history") for m in client.log_messages)
        finally:
            await client.shutdown_session()
            await client.stop()
