"""``rest-lsp doctor``: what is wrong with this installation, and how to fix it.

One check per line, each ``ok``, ``warn`` or ``problem``; every problem (and most warnings) comes
with its fix.  ``--json`` prints the same checks as one JSON object.  The exit status is 1 when a
problem was found, else 0 (warnings do not fail it).  The checks, in order (``CHECKS``):

python   the interpreter (3.11+) and this rest-lsp
torch    the torch build (CUDA or CPU) and the device completions run on
config   the server's config file (the one ``rest-lsp serve`` reads), and its invalid settings
model    the model resolves and loads (``model.name``, or ``--model``): kind, size, weights
         format, device, dtype, forward
fim      the fill-in-the-middle template detected in the model's vocabulary
index    the index the server would open for the workspace (``--workspace``, default: here): the
         corpus and workspace tiers, their sizes, when built, files changed since; compact and
         remote tiers when configured
cache    the cache folder (indexes, converted models): size, writable, what ``index prune`` frees
disk     free space where the cache is
memory   free memory against what the model needs (and the GPU's, on CUDA)
server   the ``rest-lsp`` an editor starts: on PATH, and this installation
editors  VS Code (``code``), code-server and Neovim (``nvim``) found on PATH, with their versions

Nothing is downloaded: a hub model that is not cached yet is reported, not fetched; an index that
is missing is reported, not built.  docs/doctor.md describes each check and its fixes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

OK, WARN, PROBLEM = "ok", "warn", "problem"
#: every check, in the order they run and print
CHECKS: tuple[str, ...] = ("python", "torch", "config", "model", "fim", "index", "cache", "disk", "memory",
                           "server", "editors")
MIN_PYTHON = (3, 11)
GIB = 1 << 30
#: free disk in the cache folder below which doctor warns / reports a problem (a packaged model
#: is assembled there, ~0.5-1.1 GB, and converted to safetensors for the torch forward)
DISK_WARN, DISK_PROBLEM = 4 * GIB, 1 * GIB
#: free memory beyond the model's weights below which doctor warns (the index, the KV cache,
#: torch's own buffers)
MEMORY_HEADROOM = 1 * GIB
#: workspace files looked at when counting the ones changed since the index was built
STALE_WALK_LIMIT = 20_000
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

    config: Any = None  # rest_lsp.config.Config
    config_path: str = ""
    workspace: str = "."
    resolved: Any = None  # rest_lsp.models.resolve.ResolvedModel
    loaded: Any = None  # rest_lsp.engine.model.LoadedModel
    model_bytes: int = 0  # the loaded weights' bytes in memory (or the GGUF file's for llama.cpp)
    memory_before: tuple[int, int] | None = None  # (total, available) before the model loaded
    corpus_dir: Path | None = None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``doctor`` subcommand."""
    p = sub.add_parser("doctor", help="check the installation: Python, torch, the model, the index, disk, memory, editors")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="check this model.name instead of the config file's (a packaged name, a .gguf file, "
                        "ollama:NAME, a model folder, a hub name or 'embedded')")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="the server's config file (default: the user config dir's config.toml, as `serve`)")
    p.add_argument("--workspace", default=".", metavar="DIR", help="the workspace whose index is checked (default: .)")
    p.add_argument("--json", action="store_true", help="print the checks as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run every check, print them, and return 1 when one found a problem."""
    checks = run_checks(args.model, args.config, args.workspace)
    report = as_report(checks)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(checks))
    return 1 if report["problems"] else 0


def run_checks(model: str | None, config_path: str | None, workspace: str = ".") -> list[Check]:
    """Every check of ``CHECKS``, in order; a check that raises is reported as a problem."""
    ctx = Context(workspace=os.path.abspath(workspace))
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("torch", check_torch),
        ("config", lambda: check_config(ctx, config_path, model)),
        ("model", lambda: check_model(ctx)),
        ("fim", lambda: check_fim(ctx)),
        ("index", lambda: check_index(ctx)),
        ("cache", lambda: check_cache(ctx)),
        ("disk", lambda: check_disk(cache_home())),
        ("memory", lambda: check_memory(ctx)),
        ("server", check_server_command),
        ("editors", check_editors),
    ]
    assert tuple(name for name, _ in steps) == CHECKS
    checks = []
    for name, step in steps:
        try:
            checks.append(step())
        except Exception as exc:  # doctor reports, it never dies of what it checks
            checks.append(Check(name, PROBLEM, f"the check failed: {type(exc).__name__}: {exc}",
                                "run `rest-lsp -vv doctor` and report the traceback",
                                {"error": f"{type(exc).__name__}: {exc}"}))
    return checks


def as_report(checks: list[Check]) -> dict[str, Any]:
    """The JSON form: counts, then every check (name, status, summary, fix, details)."""
    problems = sum(c.status == PROBLEM for c in checks)
    return {
        "ok": problems == 0,
        "problems": problems,
        "warnings": sum(c.status == WARN for c in checks),
        "checks": [asdict(c) for c in checks],
    }


def format_report(checks: list[Check]) -> str:
    """One line per check, its fix under it when there is one, then the counts."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<8} {c.name:<{width}}  {c.summary}")
        if c.fix:
            lines.append(f"{'':<8} {'':<{width}}  fix: {c.fix}")
    problems = sum(c.status == PROBLEM for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    lines.append(f"{problems} problem(s), {warnings} warning(s)" if problems or warnings else "everything looks fine")
    return "\n".join(lines)


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


# ----- config, model, fim -------------------------------------------------------------------


def check_config(ctx: Context, path: str | None, model: str | None) -> Check:
    """The config file ``rest-lsp serve`` reads; ``--model`` replaces its ``model.name``."""
    from rest_lsp.commands.serve import default_config_path, read_config_file
    from rest_lsp.config import Config
    from rest_lsp.errors import ConfigError

    file = Path(path) if path else default_config_path()
    ctx.config_path = str(file)
    details: dict[str, Any] = {"path": str(file), "exists": file.exists()}
    try:
        data = read_config_file(path)
    except (ConfigError, OSError) as exc:
        ctx.config = _with_model(Config(), model)
        fix = ("give --config an existing file" if not file.exists()
               else "fix the file's syntax (TOML or JSON), or move it away to use the defaults")
        return Check("config", PROBLEM, f"{file} cannot be read: {exc}", fix, details)
    config, problems = Config.from_dict(data)
    ctx.config = _with_model(config, model)
    details["problems"] = problems
    details["sections"] = sorted(data)
    where = f"{file}" if file.exists() else f"no config file ({file}): defaults"
    if model is not None:
        where += f"; model.name from --model: {model!r}"
    if problems:
        return Check("config", WARN, f"{where}: {len(problems)} invalid setting(s), defaults used instead: "
                     + "; ".join(problems), f"correct them in {file} (docs/server.md lists the settings)", details)
    return Check("config", OK, where, details=details)


def _with_model(config: Any, name: str | None) -> Any:
    if name is not None:
        config.model.name = name
    return config


def looks_like_path(name: str) -> bool:
    """Whether ``model.name`` is meant as a file or folder (a hub name is ``org/name`` or ``name``)."""
    return (name.startswith(("/", "~", "./", "../", ".\\")) or name.count("/") > 1 or "\\" in name
            or name.lower().endswith(".gguf") or bool(re.match(r"^[A-Za-z]:[\\/]", name)))


def model_fix() -> str:
    return ("set model.name (or --model) to an existing model folder or .gguf file, a packaged model "
            "(qwen2.5-coder-0.5b, qwen2.5-coder-1.5b), ollama:NAME or 'embedded'; docs/models.md lists them")


def check_model(ctx: Context) -> Check:
    """Resolve and load the model as the server would, and describe it."""
    from rest_lsp.engine.model import describe, gguf_weight_type, load_model
    from rest_lsp.errors import ModelError
    from rest_lsp.models import catalog, parts
    from rest_lsp.models.resolve import DEFAULT_ENV, EMBEDDED, resolve

    cfg = ctx.config.model
    name = cfg.name.strip()
    details: dict[str, Any] = {"name": name or "(default)", "device_setting": cfg.device, "dtype_setting": cfg.dtype,
                               "forward_setting": cfg.forward}
    ctx.memory_before = memory_info()
    if name and looks_like_path(name) and not Path(name).expanduser().exists():
        return Check("model", PROBLEM, f"model {name!r}: no such file or folder", model_fix(), details)
    if name in catalog.PACKAGED:
        missing = parts.missing_parts(catalog.PACKAGED[name])
        if missing:
            details["missing_parts"] = missing
            return Check("model", PROBLEM, f"model {name!r} is not installed: {len(missing)} of "
                         f"{len(catalog.PACKAGED[name].distributions)} parts missing",
                         catalog.PACKAGED[name].install_command(), details)
    try:
        resolved = resolve(name, weights=False)
    except ModelError as exc:
        details["error"] = str(exc)
        return Check("model", PROBLEM, f"model {name!r}: {exc}", model_fix(), details)
    ctx.resolved = resolved
    details.update(resolved=resolved.name, kind=resolved.kind, why=resolved.why, folder=resolved.folder)
    if resolved.kind == "hub" and not _hub_cached(resolved.folder):
        return Check("model", WARN, f"model {name!r}: a Hugging Face hub name that is not downloaded yet "
                     "(doctor does not download it; the server will at its first start)",
                     f"download it once with `rest-lsp model info --model {name}`, or give a local folder", details)
    started = time.perf_counter()
    try:
        loaded = load_model(cfg)
        from rest_lsp.completion.health import check_tokenizer_fits

        check_tokenizer_fits(loaded)
    except ModelError as exc:
        details["error"] = str(exc)
        return Check("model", PROBLEM, f"model {name or resolved.name!r} does not load: {exc}", model_fix(), details)
    seconds = time.perf_counter() - started
    ctx.loaded, ctx.resolved = loaded, loaded.resolved or resolved
    info = describe(loaded)
    weights = weights_format(loaded, gguf_weight_type)
    ctx.model_bytes = model_bytes(loaded)
    details.update(info, weights=weights, load_seconds=round(seconds, 2), memory_bytes=ctx.model_bytes)
    params = info["parameters"] / 1e6
    summary = (f"{info['name']} ({info['kind']}): {params:,.1f} M parameters, {weights}; on {info['device']} "
               f"{info['dtype']}, forward {info['forward']} ({info['forward_reason']}); loaded in {seconds:.1f} s")
    if info["kind"] == EMBEDDED and not name and not os.environ.get(DEFAULT_ENV):
        default = catalog.PACKAGED[catalog.DEFAULT_PACKAGED]
        return Check("model", WARN, summary + f": the default model {default.name} is not installed, and the "
                     "embedded 10 M model cannot write real code", default.install_command(), details)
    return Check("model", OK, summary, details=details)


def _hub_cached(repo: str) -> bool:
    """Whether the hub model ``repo`` is in the local Hugging Face cache (its config.json)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # an invalid repo id: not cached either
        return False


def weights_format(loaded: Any, gguf_weight_type: Callable[[str], str]) -> str:
    """How the weights are stored: a GGUF file (its quantization) or safetensors (their dtypes)."""
    resolved = loaded.resolved
    if loaded.forward == "llama.cpp":
        return f"GGUF {loaded.dtype} (read by llama.cpp)"
    if resolved is not None and resolved.gguf:
        return f"GGUF {gguf_weight_type(resolved.gguf)}, converted to safetensors"
    dtypes = safetensors_dtypes(Path(loaded.source))
    return f"safetensors {'/'.join(dtypes)}" if dtypes else "safetensors"


def safetensors_dtypes(folder: Path) -> list[str]:
    """The dtypes stored in a folder's .safetensors files (their headers only)."""
    found: set[str] = set()
    for file in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            with open(file, "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(min(size, 100 << 20)))
        except (OSError, ValueError):
            continue
        found.update(v["dtype"] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict))
    return sorted(found)


def model_bytes(loaded: Any) -> int:
    """Bytes the model's weights take in memory (the GGUF file's size for llama.cpp)."""
    if loaded.forward == "llama.cpp" and loaded.resolved is not None and loaded.resolved.gguf:
        return Path(loaded.resolved.gguf).stat().st_size
    try:
        return sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    except Exception:
        return 0


def check_fim(ctx: Context) -> Check:
    """The prompt template the server would pick from the model's vocabulary (``server.fim_template``)."""
    from rest_lsp.completion.fim import TEMPLATE_NAMES, choose, matching
    from rest_lsp.errors import ConfigError

    if ctx.loaded is None:
        return Check("fim", WARN, "not checked: the model did not load (see model)")
    server = ctx.config.server
    vocab = ctx.loaded.tokenizer.get_vocab()
    details: dict[str, Any] = {"fim": server.fim, "fim_template": server.fim_template,
                               "matching": [t.name for t in matching(vocab)]}
    try:
        tokens = choose(vocab, server.fim_template)
    except ConfigError as exc:
        return Check("fim", PROBLEM, str(exc), 'set server.fim_template = "auto" (the template is detected)', details)
    if tokens is None:
        if server.fim == "off":
            return Check("fim", OK, "off (server.fim = off); no FIM template fits the model anyway", details=details)
        return Check("fim", WARN, "no FIM template fits the model: completions see only the text before the cursor",
                     "use a model with FIM tokens (qwen2.5-coder-0.5b), or name its family in server.fim_template "
                     f"({', '.join(TEMPLATE_NAMES)})", details)
    on = server.fim in ("auto", "on")
    how = "detected" if server.fim_template == "auto" else "server.fim_template"
    details.update(template=tokens.name, on=on, header=bool(tokens.header), stop_tokens=len(tokens.stop_ids))
    return Check("fim", OK, f"template {tokens.name} ({how}); fill-in-the-middle {'on' if on else 'off (server.fim = off)'}; "
                 f"{'repository header' if tokens.header else 'no repository header'}; "
                 f"{len(tokens.stop_ids)} stop tokens", details=details)


# ----- index, cache, disk, memory -------------------------------------------------------------


def cache_home() -> Path:
    """The user cache folder of rest-lsp (indexes under ``index/``, converted models under ``models/``)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("rest-lsp"))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _tier_line(name: str, tier: dict[str, Any]) -> str:
    if tier.get("kind") == "compact":
        return f"{name}: compact, {tier.get('entries', 0):,} n-grams, {tier.get('bytes', 0) / 1e6:.1f} MB"
    return (f"{name}: {tier.get('shards', 0)} shard(s), {tier.get('docs', 0):,} docs, {tier.get('tokens', 0):,} tokens, "
            f"{tier.get('bytes', 0) / 1e6:.1f} MB")


def changed_since(root: str, since: float, index_config: Any, limit: int = STALE_WALK_LIMIT) -> tuple[int, int, bool]:
    """(files changed after ``since``, files looked at, whether the walk stopped at ``limit``)."""
    from indexer import sources

    changed = seen = 0
    since_ns = int(since * 1e9)
    for f in sources.walk(root, sources.Rules.from_config(index_config)):
        seen += 1
        changed += f.mtime_ns > since_ns
        if seen >= limit:
            return changed, seen, True
    return changed, seen, False


def check_index(ctx: Context) -> Check:
    """The index the server would open for the workspace: tiers, sizes, age, changes since."""
    from indexer import indexdir
    from indexer.datastore import Datastore
    from indexer.tokens import load_tokenizer
    from indexer.workspace_index import cache_root, corpus_dir, corpus_roots, open_compact, workspace_dir
    from rest_lsp.errors import DatastoreError

    index_cfg = ctx.config.index
    wdir = workspace_dir(ctx.workspace, index_cfg)
    details: dict[str, Any] = {"cache_root": str(cache_root()), "workspace": ctx.workspace, "workspace_dir": str(wdir),
                               "corpus_tier": index_cfg.corpus_tier}
    status, notes, fixes = OK, [], []

    def worse(level: str) -> None:
        nonlocal status
        order = (OK, WARN, PROBLEM)
        status = max(status, level, key=order.index)

    roots, _ = corpus_roots(index_cfg)
    missing_roots = [r for r in roots if not os.path.isdir(r)]
    if missing_roots:
        worse(WARN)
        notes.append(f"corpus roots missing: {', '.join(missing_roots)}")
        fixes.append("correct index.corpus_roots")
    if ctx.resolved is None:
        details["tokenizer"] = None
        summary = f"not checked against the model's tokenizer (the model did not resolve); workspace index {wdir}"
        return Check("index", WARN, summary, "; ".join(fixes), details)
    tok = load_tokenizer(ctx.resolved.folder)
    details["tokenizer"] = tok.identity
    if index_cfg.corpus_tier == "compact":
        try:
            compact = open_compact(index_cfg.corpus_compact_dir, tok)
            details["compact"] = compact.stats()
            notes.append(_tier_line("corpus", compact.stats()))
        except DatastoreError as exc:
            worse(PROBLEM)
            notes.append(f"compact corpus tier unusable: {exc}")
            fixes.append(f"rest-lsp index compact --out {index_cfg.corpus_compact_dir}")
    else:
        ctx.corpus_dir = cdir = corpus_dir(index_cfg, tok)
        details["corpus_dir"] = str(cdir)
    target = wdir if (wdir / indexdir.POINTER).exists() else ctx.corpus_dir
    if target is None or not (target / indexdir.POINTER).exists():
        worse(WARN)
        notes.append("no index built yet for this model and workspace (the server builds it at its first start: "
                     "a minute or two for the standard library, before the first completion)")
        fixes.append(f"build it now: rest-lsp index build --workspace {ctx.workspace}"
                     + (f" --tokenizer {ctx.resolved.folder}" if ctx.config.model.name else ""))
    else:
        try:
            pointer = indexdir.read_current(target)
            store = Datastore.open(target, tok, ctx.config)
            try:
                stats = store.stats()
            finally:
                store.close()
            built = float(pointer.get("written") or (target / indexdir.POINTER).stat().st_mtime)
            details["stats"] = stats
            details["built"] = built
            tiers = ("workspace", "corpus") if target == wdir else ("corpus",)
            for name in tiers:
                if isinstance(stats.get(name), dict) and (name != "corpus" or index_cfg.corpus_tier != "compact"):
                    notes.append(_tier_line(name, stats[name]))
            notes.append(f"built {_age(time.time() - built)} ago")
            if target == wdir:
                if ctx.corpus_dir is not None and pointer.get("corpus_dir") not in (None, str(ctx.corpus_dir)):
                    notes.append("the workspace index names another corpus index (the server points it at the current one)")
                changed, seen, capped = changed_since(ctx.workspace, built, index_cfg)
                details.update(changed_files=changed, files_looked_at=seen, walk_capped=capped)
                if changed:
                    notes.append(f"{changed}{'+' if capped else ''} workspace file(s) changed since "
                                 "(the server re-reads them when it starts)")
            else:
                notes.append(f"no workspace index for {ctx.workspace} yet (built when an editor opens a file there)")
        except DatastoreError as exc:
            worse(WARN)
            notes.append(f"index {target} unusable ({exc}); the server rebuilds it at its next start")
            fixes.append(f"rebuild it now: rest-lsp index build --rebuild --workspace {ctx.workspace}")
    if index_cfg.remote_datastores:
        details["remote"] = list(index_cfg.remote_datastores)
        notes.append(f"remote tiers: {', '.join(map(str, index_cfg.remote_datastores))} (not contacted)")
    return Check("index", status, f"{target or wdir}: " + "; ".join(notes), "; ".join(fixes), details)


def check_cache(ctx: Context) -> Check:
    """The cache folder: where, how big, writable, and what ``rest-lsp index prune`` would free."""
    from indexer import cache_dirs
    from indexer.workspace_index import cache_root

    home = cache_home()
    root = cache_root()
    details: dict[str, Any] = {"path": str(home), "index": str(root)}
    probe = _nearest_existing(home)
    writable = os.access(probe, os.W_OK | os.X_OK)
    details["writable"] = writable
    if not writable:
        return Check("cache", PROBLEM, f"{home} is not writable ({probe})",
                     f"make {probe} writable, or point XDG_CACHE_HOME (or index.index_dir) somewhere writable", details)
    size = cache_dirs.tree_bytes(home) if home.exists() else 0
    keep = [ctx.corpus_dir] if ctx.corpus_dir is not None else []
    stale = cache_dirs.stale_entries(root, keep=keep) if root.is_dir() and keep else []
    stale_bytes = sum(e.bytes for e in stale)
    details.update(bytes=size, stale_entries=len(stale), stale_bytes=stale_bytes)
    summary = f"{home}: {size / 1e6:,.1f} MB"
    if stale:
        summary += f"; {len(stale)} index(es) nothing uses any more, {stale_bytes / 1e6:,.1f} MB"
        if stale_bytes > 500e6:
            return Check("cache", WARN, summary, "rest-lsp index prune --yes", details)
        return Check("cache", OK, summary + " (rest-lsp index prune --yes removes them)", details=details)
    return Check("cache", OK, summary, details=details)


def _nearest_existing(path: Path) -> Path:
    """``path`` or the nearest folder above it that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(folder: Path, usage: Callable[[str], Any] = shutil.disk_usage) -> Check:
    """Free disk where the cache lives (indexes, assembled and converted models)."""
    where = _nearest_existing(folder)
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
