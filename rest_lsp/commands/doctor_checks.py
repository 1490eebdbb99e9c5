"""The checks of ``rest-lsp doctor`` that look at the machine, and what every check shares.

``Check`` (one line of the report), ``Context`` (what the checks pass on to each other) and the
statuses; then the environment checks: the interpreter, torch, free disk where the cache is, free
memory against the model, the ``rest-lsp`` on PATH, and the editors on PATH.  The checks of the
configuration, the model and the index are in ``doctor_model``; ``doctor`` runs them all.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

OK, WARN, PROBLEM = "ok", "warn", "problem"
MIN_PYTHON = (3, 11)
GIB = 1 << 30
#: free disk in the cache folder below which doctor warns / reports a problem (a packaged model
#: is assembled there, ~0.5-1.1 GB, and converted to safetensors for the torch forward)
DISK_WARN, DISK_PROBLEM = 4 * GIB, 1 * GIB
#: free memory beyond the model's weights below which doctor warns (the index, the KV cache,
#: torch's own buffers)
MEMORY_HEADROOM = 1 * GIB
#: editors looked for on PATH, with the argument that prints their version
EDITORS: tuple[str, ...] = ("code", "code-server", "nvim")
#: the Neovim plugin's needs (editors/nvim/README.md): 0.10 omnifunc, 0.11 ghost text
NVIM_MIN, NVIM_GHOST = (0, 10), (0, 11)


@dataclass
class Check:
    """One line of the report: what was checked, how it stands, and the fix when it is not ok."""

    name: str
    status: str  # ok, warn or problem
    summary: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What the checks share: the configuration, the model once loaded, memory before loading."""

    config: Any = None  # rest_lsp.config.schema.Config
    config_path: str = ""
    workspace: str = "."
    resolved: Any = None  # rest_lsp.models.resolve.ResolvedModel
    loaded: Any = None  # rest_lsp.engine.model.LoadedModel
    model_bytes: int = 0  # the loaded weights' bytes in memory (or the GGUF file's for llama.cpp)
    memory_before: tuple[int, int] | None = None  # (total, available) before the model loaded
    corpus_dir: Path | None = None


# ----- python, torch ------------------------------------------------------------------------


def check_python(version: tuple[int, ...] | None = None) -> Check:
    import rest_lsp

    version = tuple(version or sys.version_info[:3])
    text = ".".join(str(v) for v in version)
    details = {"version": text, "executable": sys.executable, "implementation": platform.python_implementation(),
               "rest_lsp": rest_lsp.__version__, "rest_lsp_package": str(Path(rest_lsp.__file__).parent)}
    summary = f"Python {text} ({sys.executable}); rest-lsp {rest_lsp.__version__}"
    if version[:2] < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return Check("python", PROBLEM, f"{summary}: rest-lsp needs Python {need} or later",
                     f"install Python {need}+ and reinstall rest-lsp in a virtual environment made with it "
                     "(python3.11 -m venv .venv)", details)
    return Check("python", OK, summary, details=details)


def check_torch(which: Callable[[str], str | None] = shutil.which) -> Check:
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken build (OSError of a missing library)
        return Check("torch", PROBLEM, f"torch cannot be imported: {type(exc).__name__}: {exc}",
                     "pip install torch (CPU only: pip install torch --index-url "
                     "https://download.pytorch.org/whl/cpu), or run scripts/install.sh in a clone",
                     {"error": str(exc)})
    cuda_build = torch.version.cuda  # None for a CPU build
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU build"
    details: dict[str, Any] = {"version": torch.__version__, "build": build, "cuda_build": cuda_build,
                               "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    gpu_on_host = which("nvidia-smi") is not None
    if torch.cuda.is_available():
        devices = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devices.append({"index": i, "name": p.name, "memory_bytes": p.total_memory,
                            "capability": f"{p.major}.{p.minor}"})
        details["devices"] = devices
        first = devices[0]
        return Check("torch", OK, f"torch {torch.__version__} ({build}); device cuda:0 {first['name']} "
                     f"({first['memory_bytes'] / GIB:.0f} GiB){f', {len(devices)} GPUs' if len(devices) > 1 else ''}",
                     details=details)
    summary = f"torch {torch.__version__} ({build}); device cpu, {details['threads']} threads"
    if cuda_build and gpu_on_host:
        return Check("torch", WARN, summary + ": torch sees no GPU although nvidia-smi is installed",
                     "check the NVIDIA driver with nvidia-smi, and that CUDA_VISIBLE_DEVICES does not hide the GPU",
                     details)
    if not cuda_build and gpu_on_host:
        return Check("torch", WARN, summary + ": a CPU build on a machine with an NVIDIA GPU",
                     "install a CUDA build of torch to complete on the GPU: pip install torch --index-url "
                     "https://download.pytorch.org/whl/cu124 (docs/gpu.md)", details)
    return Check("torch", OK, summary, details=details)


# ----- cache folder, disk, memory ------------------------------------------------------------


def cache_home() -> Path:
    """The user cache folder of rest-lsp (indexes under ``index/``, converted models under ``models/``)."""
    from indexer.workspace_index import cache_root

    return cache_root().parent


def nearest_existing(path: Path) -> Path:
    """``path`` or the nearest folder above it that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(folder: Path, usage: Callable[[str], Any] = shutil.disk_usage) -> Check:
    """Free disk where the cache lives (indexes, assembled and converted models)."""
    where = nearest_existing(folder)
    du = usage(str(where))
    details = {"path": str(folder), "measured_at": str(where), "free_bytes": du.free, "total_bytes": du.total}
    summary = f"{du.free / GIB:,.1f} GiB free of {du.total / GIB:,.1f} GiB at {where}"
    fix = "free disk space there, or set XDG_CACHE_HOME (and index.index_dir) to a disk with room"
    if du.free < DISK_PROBLEM:
        return Check("disk", PROBLEM, summary + f": under {DISK_PROBLEM / GIB:.0f} GiB", fix, details)
    if du.free < DISK_WARN:
        return Check("disk", WARN, summary + f": under {DISK_WARN / GIB:.0f} GiB (a model is assembled and "
                     "converted in the cache)", fix, details)
    return Check("disk", OK, summary, details=details)


def memory_info() -> tuple[int, int] | None:
    """(total, available) bytes of memory: /proc/meminfo's MemAvailable, else free pages."""
    try:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = int(value.split()[0]) * 1024
        return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0))
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(ctx: Context, info: tuple[int, int] | None = None) -> Check:
    """Free memory (measured before the model loaded) against the model's weights plus headroom."""
    info = info or ctx.memory_before or memory_info()
    if info is None:
        return Check("memory", WARN, "free memory unknown on this system", "")
    total, available = info
    need = ctx.model_bytes if ctx.loaded is not None and str(ctx.loaded.device).startswith("cpu") else 0
    details: dict[str, Any] = {"total_bytes": total, "available_bytes": available, "model_bytes": need}
    gpu = ""
    if ctx.loaded is not None and str(ctx.loaded.device).startswith("cuda"):
        try:
            import torch

            free, gpu_total = torch.cuda.mem_get_info(ctx.loaded.device)
            details.update(gpu_free_bytes=free, gpu_total_bytes=gpu_total)
            gpu = f"; GPU {free / GIB:,.1f} GiB free of {gpu_total / GIB:,.1f} GiB with the model loaded"
        except Exception as exc:
            details["gpu_error"] = str(exc)
    summary = f"{available / GIB:,.1f} GiB available of {total / GIB:,.1f} GiB" + (
        f"; the model's weights take {need / GIB:,.2f} GiB" if need else "") + gpu
    fix = ("close other programs, or use a smaller or quantized model (qwen2.5-coder-0.5b, a Q4 .gguf with "
           "llama-cpp-python), or model.device = \"cuda\"")
    if available < need:
        return Check("memory", PROBLEM, summary + ": not enough for the model", fix, details)
    if available < need + MEMORY_HEADROOM:
        return Check("memory", WARN, summary + f": under {MEMORY_HEADROOM / GIB:.0f} GiB left beside the model", fix, details)
    return Check("memory", OK, summary, details=details)


# ----- server command, editors -----------------------------------------------------------------


def check_server_command(which: Callable[[str], str | None] = shutil.which) -> Check:
    """The ``rest-lsp`` an editor starts by default (found on PATH), and whether it is this one."""
    this = Path(sys.executable).with_name("rest-lsp")
    found = which("rest-lsp")
    details = {"on_path": found, "this_installation": str(this) if this.exists() else None}
    nvim = f"Neovim: setup({{ cmd = {{ '{this}', 'serve', '--stdio' }} }})"
    if not found:
        return Check("server", WARN, "`rest-lsp` is not on PATH: an editor set up with the default command will not find it",
                     f"add {this.parent} to PATH, or give editors the full path {this} (VS Code: the "
                     f"rest-lsp.serverPath setting; {nvim})", details)
    if this.exists() and Path(found).resolve() != this.resolve():
        return Check("server", WARN, f"`rest-lsp` on PATH is {found}, another installation than this one ({this})",
                     f"editors start the one on PATH: put {this.parent} first on PATH, or give editors the full path "
                     f"(VS Code: rest-lsp.serverPath; {nvim})", details)
    return Check("server", OK, f"`rest-lsp` on PATH: {found}", details=details)


def editor_version(path: str, timeout: float = 15.0) -> str:
    """The first line ``PATH --version`` prints (or why it printed none)."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"version unknown ({type(exc).__name__})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"version unknown (exit status {out.returncode})"


def check_editors(which: Callable[[str], str | None] = shutil.which, version: Callable[[str], str] = editor_version) -> Check:
    """VS Code, code-server and Neovim on PATH, with their versions; an old Neovim is a warning."""
    found: dict[str, dict[str, str]] = {}
    for name in EDITORS:
        path = which(name)
        if path:
            found[name] = {"path": path, "version": version(path)}
    details = {"found": found, "looked_for": list(EDITORS)}
    if not found:
        return Check("editors", WARN, f"none of {', '.join(EDITORS)} on PATH",
                     "install VS Code with editors/vscode, or Neovim 0.11+ with editors/nvim (their READMEs); "
                     "any LSP client can run `rest-lsp serve --stdio`", details)
    summary = "; ".join(f"{name} {info['version']} ({info['path']})" for name, info in found.items())
    nvim = found.get("nvim")
    if nvim:
        m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", nvim["version"])
        got = (int(m[1]), int(m[2])) if m else None
        if got is not None and got < NVIM_MIN:
            return Check("editors", WARN, summary + ": the Neovim plugin needs 0.10 or later",
                         "upgrade Neovim to 0.11 or later (ghost text)", details)
        if got is not None and got < NVIM_GHOST:
            return Check("editors", WARN, summary + ": Neovim 0.10 completes through the omnifunc only",
                         "upgrade Neovim to 0.11 or later for ghost text", details)
    return Check("editors", OK, summary, details=details)
