"""``rest-lsp doctor``: one check per line (ok / warn / problem), each problem with its fix, --json.

The two CLI runs use the embedded 10 M model (or no model at all) in a temporary home, so the
test stays within seconds; the checks that look at the machine (disk, memory, editors, the
server on PATH) are also run with stand-ins for what they measure.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from lsp_testing import server_env
from rest_lsp.commands import doctor, doctor_model

GIB = 1 << 30


def run_doctor(tmp_path: Path, *args: str, cwd: Path | None = None) -> tuple[int, dict]:
    """``rest-lsp doctor --json ARGS`` in a home under ``tmp_path``; (exit status, report)."""
    env = server_env(tmp_path / "home")
    proc = subprocess.run([sys.executable, "-m", "rest_lsp.cli", "doctor", "--json", *args], env=env,
                          cwd=cwd or tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().startswith("{"), f"rc {proc.returncode}: {proc.stderr[-3000:]}"
    return proc.returncode, json.loads(proc.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_a_model_path_that_does_not_exist_is_a_problem_with_a_fix(tmp_path):
    rc, report = run_doctor(tmp_path, "--model", "/nonexistent/path")
    checks = by_name(report)
    assert [c["name"] for c in report["checks"]] == list(doctor.CHECKS)  # every check, named, in order
    model = checks["model"]
    assert model["status"] == "problem", model
    assert "/nonexistent/path" in model["summary"] and "no such file or folder" in model["summary"]
    assert "model.name" in model["fix"] and "--model" in model["fix"], model["fix"]
    assert report["ok"] is False and report["problems"] >= 1
    assert rc == 1
    # what needs the model says it was not checked, and is not a second problem
    assert checks["fim"]["status"] == "warn" and "not checked" in checks["fim"]["summary"]
    assert all(c["status"] in ("ok", "warn", "problem") for c in report["checks"])
    assert all(c["fix"] for c in report["checks"] if c["status"] == "problem")


def test_the_embedded_model_passes_and_the_index_tiers_are_reported(tmp_path):
    """With the embedded model the model and FIM checks are ok; an index built beforehand is
    reported per tier (the workspace's file and the one-file corpus), with files changed since."""
    home = tmp_path / "home"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "lib.py").write_text("def join(a, b):\n    return a + b\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "main.py").write_text("def main():\n    return 1\n")
    config = home / "config" / "rest-lsp" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[model]\nname = "embedded"\n[index]\ncorpus_roots = [{json.dumps(str(corpus))}]\n')
    build = subprocess.run([sys.executable, "-m", "rest_lsp.cli", "index", "build", "--config", str(config), "--json"],
                           env=server_env(home), cwd=ws, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (ws / "new.py").write_text("x = 1\n")  # a file the index has not seen
    os.utime(ws / "new.py", (os.stat(ws / "new.py").st_atime, os.stat(ws / "new.py").st_mtime + 5))

    rc, report = run_doctor(tmp_path, "--model", "embedded", cwd=ws)
    checks = by_name(report)
    assert list(checks) == list(doctor.CHECKS)
    model = checks["model"]
    assert model["status"] == "ok", model
    assert model["details"]["kind"] == "embedded" and 9e6 < model["details"]["parameters"] < 11e6
    assert model["details"]["weights"].startswith("safetensors") and model["details"]["device"] == "cpu"
    assert model["details"]["forward"] in model["summary"]
    fim = checks["fim"]
    assert fim["status"] == "ok" and fim["details"]["template"] == "qwen", fim
    index = checks["index"]
    assert index["status"] == "ok", index
    stats = index["details"]["stats"]
    assert stats["workspace"]["docs"] == 1 and stats["workspace"]["tokens"] > 0, stats
    assert stats["corpus"]["docs"] == 1 and stats["corpus"]["tokens"] > 0, stats
    assert index["details"]["changed_files"] == 1 and "1 workspace file(s) changed since" in index["summary"]
    assert "workspace: 1 shard(s), 1 docs" in index["summary"] and "corpus: 1 shard(s), 1 docs" in index["summary"]
    assert checks["config"]["details"]["path"] == str(config) and checks["config"]["status"] == "ok"
    assert rc == (1 if report["problems"] else 0)


def test_the_text_report_has_one_line_per_check_and_the_fix_under_a_problem():
    checks = [doctor.Check("python", "ok", "Python 3.11"), doctor.Check("model", "problem", "no model", "install one"),
              doctor.Check("disk", "warn", "low", "free some")]
    lines = doctor.format_report(checks).splitlines()
    assert lines[0].split()[:2] == ["ok", "python"]
    assert lines[1].split()[:2] == ["problem", "model"] and lines[2].strip() == "fix: install one"
    assert lines[3].split()[:2] == ["warn", "disk"] and lines[4].strip() == "fix: free some"
    assert lines[-1] == "1 problem(s), 1 warning(s)"


def test_an_old_python_is_a_problem():
    check = doctor.check_python((3, 10, 4))
    assert check.status == "problem" and "3.11" in check.summary and "venv" in check.fix, check


@pytest.mark.parametrize("name, path", [
    ("/nonexistent/path", True), ("~/models/x", True), ("./model", True), ("a/b/c", True), ("m.gguf", True),
    ("C:\\models\\x", True), ("Qwen/Qwen2.5-Coder-0.5B", False), ("embedded", False), ("qwen2.5-coder-0.5b", False),
])
def test_model_names_meant_as_paths(name, path):
    assert doctor_model.looks_like_path(name) is path


Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize("free, status", [(GIB // 2, "problem"), (2 * GIB, "warn"), (100 * GIB, "ok")])
def test_free_disk(tmp_path, free, status):
    check = doctor.check_disk(tmp_path / "not-yet" / "cache", usage=lambda path: Usage(200 * GIB, 0, free))
    assert check.status == status, check
    assert check.details["measured_at"] == str(tmp_path)  # the nearest folder that exists
    assert bool(check.fix) == (status != "ok")


def test_free_memory_against_the_model():
    class Loaded:
        device = "cpu"

    ctx = doctor.Context(loaded=Loaded(), model_bytes=3 * GIB)
    assert doctor.check_memory(ctx, info=(16 * GIB, 2 * GIB)).status == "problem"
    assert doctor.check_memory(ctx, info=(16 * GIB, int(3.5 * GIB))).status == "warn"
    ok = doctor.check_memory(ctx, info=(16 * GIB, 8 * GIB))
    assert ok.status == "ok" and "3.00 GiB" in ok.summary, ok


def test_the_server_executable_not_on_path_is_a_warning_with_the_full_path():
    check = doctor.check_server_command(which=lambda name: None)
    assert check.status == "warn" and "not on PATH" in check.summary
    here = str(Path(sys.executable).with_name("rest-lsp"))
    assert here in check.fix and "rest-lsp.serverPath" in check.fix and "cmd = {" in check.fix


def fake_editor(folder: Path, name: str, version: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_editors_found_on_path_with_their_versions(tmp_path):
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    which = lambda name: shutil.which(name, path=str(bin_dir))  # noqa: E731
    none = doctor.check_editors(which=which)
    assert none.status == "warn" and none.fix and none.details["found"] == {}
    fake_editor(bin_dir, "code", "1.100.3")
    fake_editor(bin_dir, "nvim", "NVIM v0.11.4")
    found = doctor.check_editors(which=which)
    assert found.status == "ok", found
    assert found.details["found"]["nvim"]["version"] == "NVIM v0.11.4"
    assert f"code 1.100.3 ({bin_dir / 'code'})" in found.summary
    fake_editor(bin_dir, "nvim", "NVIM v0.9.5")
    old = doctor.check_editors(which=which)
    assert old.status == "warn" and "0.10 or later" in old.summary and "0.11" in old.fix, old
