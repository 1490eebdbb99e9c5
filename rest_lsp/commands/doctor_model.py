"""The checks of ``rest-lsp doctor`` that look at what the server would load and open.

The config file (and ``--model``), the model (resolved and loaded as the server would, and
described), its fill-in-the-middle template, the index for the workspace, and the cache folder the
indexes live in.  ``Check``, ``Context`` and the machine's checks are in ``doctor_checks``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from rest_lsp.commands.doctor_checks import OK, PROBLEM, WARN, Check, Context, cache_home, memory_info, nearest_existing

#: workspace files looked at when counting the ones changed since the index was built
STALE_WALK_LIMIT = 20_000


# ----- config, model, fim -------------------------------------------------------------------


def check_config(ctx: Context, path: str | None, model: str | None) -> Check:
    """The config file ``rest-lsp serve`` reads; ``--model`` replaces its ``model.name``."""
    from rest_lsp.commands.serve import default_config_path, read_config_file
    from rest_lsp.config.schema import Config
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


# ----- index, cache ---------------------------------------------------------------------------


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
    from indexer.building import sources

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
    from indexer.storage import indexdir
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
    from indexer.storage import cache_dirs
    from indexer.workspace_index import cache_root

    home = cache_home()
    root = cache_root()
    details: dict[str, Any] = {"path": str(home), "index": str(root)}
    probe = nearest_existing(home)
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
