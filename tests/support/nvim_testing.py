"""Driving a headless Neovim with the plugin's Lua driver (editors/nvim/tests/complete.lua), and
reading its ghost text: shared by the Neovim tests."""

from __future__ import annotations

import json
import subprocess

from editors_testing import REPO, editor_env, find_nvim, needs_editor

NVIM, NVIM_VERSION = find_nvim()
needs_nvim = needs_editor(None if NVIM else NVIM_VERSION)


def run_driver(tmp_path, spec: dict, timeout: float = 300, clean: bool = True, env: dict | None = None) -> dict:
    """Run the Lua driver in a headless Neovim; its JSON report.

    ``clean=False``: Neovim reads the user's config and packages (of the temporary home in
    ``env``, default ``editor_env(tmp_path / "home")``), as a user's Neovim does."""
    out = tmp_path / "report.json"
    spec = {"plugin": str(REPO / "editors" / "nvim"), "out": str(out), "timeout_ms": int(timeout * 1000) - 30000, **spec}
    env = dict(env) if env is not None else editor_env(tmp_path / "home")
    env["REST_LSP_TEST"] = json.dumps(spec)
    proc = subprocess.run(
        [NVIM, "--headless", *(["--clean"] if clean else []), "-S", str(REPO / "editors" / "nvim" / "tests" / "complete.lua")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
    )
    assert out.exists(), f"no report (rc {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert report.get("error") is None, json.dumps(report, indent=1)
    return report


def minor_version() -> tuple[int, int]:
    return tuple(int(x) for x in NVIM_VERSION.split("v", 1)[1].split(".")[:2])


def drawn(marks: list[dict]) -> str:
    """The text ghost-text extmarks draw: virtual text, then each virtual line after a newline."""
    text = ""
    for mark in marks:
        text += "".join(chunk[0] for chunk in mark.get("virt_text") or [])
        text += "".join("\n" + "".join(chunk[0] for chunk in line) for line in mark.get("virt_lines") or [])
    return text
