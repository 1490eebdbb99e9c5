"""The built package, as a user installs it: ``python -m build``'s sdist and wheel, what they carry,
and the wheel installed into a fresh venv serving completions to an LSP client (issue 28, part 1).

The wheel is built from the sdist (``python -m build``'s default), so a file the sdist lacks is
missing from the wheel too.  The fresh venv is not the repository's: it gets ``torch==2.13.0``
(the CPU build; an unpinned torch would pull a multi-GB CUDA build) and then the wheel with its
dependencies from the package index, never an editable install.  Everything run from it runs in
a temporary folder with no ``PYTHONPATH``, so it can import only what the wheel installed; the
server's status names the embedded model's folder, which must lie inside that venv.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pytest_lsp import make_test_lsp_client

from lsp_testing import REPO, capabilities, ready, server_env, wait_for_log

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PACKAGES = ("rest_lsp", "indexer")
WEIGHTS = "rest_lsp/embedded/model.safetensors"
#: the editors' settings defaults (tests/editors/test_defaults.py): the sdist carries them
EDITOR_DEFAULTS = ("editors/vscode/package.json", "editors/nvim/lua/rest_lsp/defaults.lua")
#: a prompt the embedded model completes with code (greedy, so the same text each run)
PROMPT = "import os\n\n\ndef read_file(path):\n    with open(path) as f:\n        "


#: what would point a command run from the fresh venv at the repository or the repository's venv
NOT_PASSED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "VIRTUAL_ENV")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a command run from the fresh venv: nothing pointing at the repository
    or the repository's venv (pip keeps the user's cache and index settings)."""
    return {k: v for k, v in {**os.environ, **extra}.items() if k not in NOT_PASSED}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 400) -> subprocess.CompletedProcess:
    """Run ``cmd``; a failure shows the end of its output."""
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def package_files() -> set[str]:
    """Every file of the packages in the source tree (bytecode aside), as wheel paths."""
    return {
        p.relative_to(REPO).as_posix()
        for name in PACKAGES
        for p in (REPO / name).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the sdist) that ``python -m build`` makes from this repository."""
    if importlib.util.find_spec("build") is None:
        pytest.fail("the `build` package is missing: it comes with the dev extra (bash scripts/install.sh)")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, REPO], cwd=out)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0], sdists[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory, dist) -> Path:
    """A fresh venv holding torch==2.13.0 and the wheel (with its dependencies), nothing else."""
    wheel, _ = dist
    cwd = tmp_path_factory.mktemp("cwd")
    root = tmp_path_factory.mktemp("venv") / "fresh"
    run([sys.executable, "-m", "venv", root], cwd=cwd)
    pip = [root / "bin" / "python", "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    run([*pip, "torch==2.13.0"], cwd=cwd)
    run([*pip, wheel], cwd=cwd)
    return root


def test_wheel_carries_every_package_file_and_the_embedded_model(dist):
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
        metadata = z.read(next(n for n in infos if n.endswith(".dist-info/METADATA"))).decode()
    missing = package_files() - set(infos)
    assert not missing, f"the wheel lacks {sorted(missing)}: add them to [tool.setuptools.package-data]"
    # the weights themselves, not a pointer to them: the same size as the source tree's
    assert WEIGHTS in infos and infos[WEIGHTS].file_size == (REPO / WEIGHTS).stat().st_size > 10_000_000
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert f"rest_lsp/embedded/{name}" in infos
    assert {n.split("/")[0] for n in infos} == {*PACKAGES, wheel.name.split("-py3")[0] + ".dist-info"}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in infos)
    assert "License-Expression: MIT" in metadata
    assert "rest-lsp = rest_lsp.cli:main" in zipfile.ZipFile(wheel).read(
        next(n for n in infos if n.endswith(".dist-info/entry_points.txt"))).decode()


def test_sdist_carries_the_sources_the_license_and_the_editors_defaults(dist):
    _, sdist = dist
    with tarfile.open(sdist) as t:
        names = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
        weights = t.getmember(f"{sdist.name[:-len('.tar.gz')]}/{WEIGHTS}")
    missing = (package_files() | {"LICENSE", "README.md", "pyproject.toml", "scripts/install.sh", *EDITOR_DEFAULTS}) - names
    assert not missing, f"the sdist lacks {sorted(missing)}"
    assert weights.size == (REPO / WEIGHTS).stat().st_size
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n or n.startswith("editors/.deps")]


def test_help_and_imports_come_from_the_fresh_venv(venv, tmp_path):
    out = run([venv / "bin" / "rest-lsp", "--help"], cwd=tmp_path).stdout
    assert "serve" in out and "complete" in out
    where = run([venv / "bin" / "python", "-c",
                 "import rest_lsp, indexer; from rest_lsp.embedded.model import EMBEDDED_DIR, has_weights;"
                 "print(rest_lsp.__file__); print(indexer.__file__); print(has_weights(EMBEDDED_DIR))"], cwd=tmp_path).stdout
    rest_lsp_file, indexer_file, weights = where.split()
    site = venv.resolve() / "lib"
    assert Path(rest_lsp_file).resolve().is_relative_to(site) and Path(indexer_file).resolve().is_relative_to(site), where
    assert weights == "True"


@pytest.mark.asyncio
async def test_installed_server_answers_an_inline_completion(venv, tmp_path):
    workspace, corpus, home = tmp_path / "ws", tmp_path / "corpus", tmp_path / "home"
    for d in (workspace, corpus, home):
        d.mkdir()
    (workspace / "files.py").write_text(PROMPT)
    (corpus / "lib.py").write_text("import os\n\n\ndef join(a, b):\n    return os.path.join(a, b)\n")
    env = clean_env(**{**server_env(home), "REST_LSP_DEFAULT_MODEL": "embedded"})
    client = make_test_lsp_client()
    await client.start_io(str(venv / "bin" / "rest-lsp"), "serve", "--stdio", env=env, cwd=str(workspace))
    try:
        result = await client.initialize_session(  # initialize, then initialized
            lsp.InitializeParams(
                capabilities=capabilities(inline=True),
                root_uri=workspace.as_uri(),
                workspace_folders=[lsp.WorkspaceFolder(uri=workspace.as_uri(), name="ws")],
                initialization_options={
                    "model": {"name": "embedded", "threads": 1},
                    "index": {"corpus_roots": [str(corpus)]},
                    "decoding": {"max_new_tokens": 16},
                    "server": {"debounce_ms": 0},
                },
            )
        )
        assert result.capabilities.inline_completion_provider
        line = await wait_for_log(client, ready)
        assert line.startswith("rest-lsp ready"), line

        uri = (workspace / "files.py").as_uri()
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=PROMPT)))
        end = lsp.Position(line=PROMPT.count("\n"), character=len(PROMPT.rsplit("\n", 1)[1]))
        answer = await client.text_document_inline_completion_async(lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Invoked),
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=end,
        ))
        assert isinstance(answer, lsp.InlineCompletionList), answer
        assert answer.items, "the embedded model completes this prompt with code; the installed server gave nothing"
        for item in answer.items:
            assert isinstance(item.insert_text, str) and item.insert_text.strip()
            assert item.range.start == end
            assert item.command.command == "rest-lsp.accepted"

        status = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="rest-lsp.status"))
        assert status["state"] == "ready"
        assert status["model"]["kind"] == "embedded"
        # the weights the server loaded are the wheel's, inside the fresh venv
        assert Path(status["model"]["source"]).resolve().is_relative_to(venv.resolve()), status["model"]
    finally:
        await client.shutdown_session()
        await client.stop()
