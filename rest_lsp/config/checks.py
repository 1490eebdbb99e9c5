"""The range and choice checks of a configuration (``Config.check``): one list of problems.

Each offending field is reset to its default, so that a server shows the problems and carries
on; ``Config.strict`` turns them into one ``ConfigError``.
"""

from __future__ import annotations

from typing import Any

from rest_lsp.completion.fim import TEMPLATE_NAMES

#: (section, field, the values it may take): checked by ``Config.check``
_CHOICES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("decoding", "mode", ("rest", "greedy")),
    ("decoding", "source_weights", ("learned", "fixed")),
    ("retrieval", "dense", ("auto", "on", "off")),
    ("model", "dtype", ("auto", "float32", "bfloat16", "float16")),
    ("model", "forward", ("auto", "llama.cpp", "packed", "static", "transformers")),
    ("model", "repack", ("auto", "on", "off")),
    ("model", "kv_cache", ("auto", "exact")),
    ("index", "corpus_tier", ("full", "compact")),
    ("server", "fim", ("auto", "on", "off")),
    ("server", "fim_template", ("auto", *TEMPLATE_NAMES)),
    ("server", "repo_header", ("auto", "off")),
    ("server", "context", ("auto", "off")),
    ("server", "instruct", ("auto", "on", "off")),
    ("server", "multiline", ("auto", "always")),
)


def check(config: Any) -> list[str]:
    """Range checks across fields; returns problems (and resets offending fields)."""
    problems: list[str] = []
    r = config.retrieval
    if not 1 <= r.min_suffix <= r.max_suffix:
        problems.append(
            f"retrieval.min_suffix={r.min_suffix} must be >= 1 and <= max_suffix={r.max_suffix}"
        )
        r.min_suffix, r.max_suffix = default_of(r, "min_suffix"), default_of(r, "max_suffix")
    for section, name, low in (
        (r, "span", 1),
        (r, "max_candidates", 1),
        (config.decoding, "max_new_tokens", 1),
        (config.decoding, "draft_budget", 0),
        (config.decoding, "max_draft_budget", 1),
        (config.index, "max_file_bytes", 1),
        (config.index, "watch_debounce_ms", 0),
        (config.index, "corpus_shard_tokens", 1),
        (config.index, "compact_tokens", 1),
        (r, "max_nodes", 0),
        (r, "history_tokens", 0),
        (r, "history_warmup", 0),
        (r, "dense_neighbours", 1),
        (config.server, "debounce_ms", 0),
        (config.server, "max_prompt_tokens", 16),
        (config.server, "max_suffix_tokens", 0),
        (config.server, "context_tokens", 0),
        (config.model, "threads", 0),
    ):
        value = getattr(section, name)
        if value < low:
            problems.append(f"{type(section).__name__}.{name}={value} must be >= {low}")
            setattr(section, name, default_of(section, name))
    if not 0 <= config.server.ready_wait_s < float("inf"):  # NaN and inf fail too (TOML has both)
        problems.append(f"server.ready_wait_s={config.server.ready_wait_s!r} must be a finite number of seconds >= 0")
        config.server.ready_wait_s = default_of(config.server, "ready_wait_s")
    if config.decoding.temperature < 0:
        problems.append(f"decoding.temperature={config.decoding.temperature} must be >= 0")
        config.decoding.temperature = default_of(config.decoding, "temperature")
    for part, name in (("decoding", "top_p"), ("decoding", "depth_decay")):
        section = getattr(config, part)
        if not 0 < getattr(section, name) <= 1:
            problems.append(f"{part}.{name}={getattr(section, name)!r} must be in (0, 1]")
            setattr(section, name, default_of(section, name))
    for part, name, choices in _CHOICES:
        section = getattr(config, part)
        if getattr(section, name) not in choices:
            either = ", ".join(choices[:-1]) + " or " + choices[-1]
            problems.append(f"{part}.{name}={getattr(section, name)!r} must be {either}")
            setattr(section, name, default_of(section, name))
    if config.index.corpus_tier == "compact" and not config.index.corpus_compact_dir:
        problems.append("index.corpus_tier=compact needs index.corpus_compact_dir (build one with "
                        "`rest-lsp index compact`); using the full corpus")
        config.index.corpus_tier = "full"
    problems.extend(_check_remote(config))
    if "" in config.decoding.stop:  # an empty stop string would cut every completion to nothing
        problems.append("decoding.stop: an empty string stops nothing; left out")
        config.decoding.stop = [s for s in config.decoding.stop if s]
    dev = config.model.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        problems.append(f"model.device={dev!r} must be auto, cpu, cuda or cuda:N")
        config.model.device = default_of(config.model, "device")
    return problems


def _check_remote(config: Any) -> list[str]:
    """The remote datastore options: http(s) URLs with a host, a positive budget."""
    import urllib.parse

    problems: list[str] = []
    ix = config.index
    good = []
    for url in ix.remote_datastores:
        parts = urllib.parse.urlsplit(url)
        try:
            parts.port  # noqa: B018 (raises on a bad port)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if ok:
            good.append(url)
        else:
            problems.append(f"index.remote_datastores: {url!r} is not an http(s)://host[:port] URL; left out")
    ix.remote_datastores = good
    if not ix.remote_budget_ms > 0:
        problems.append(f"index.remote_budget_ms={ix.remote_budget_ms} must be > 0")
        ix.remote_budget_ms = default_of(ix, "remote_budget_ms")
    if not ix.remote_retry_s >= 0:
        problems.append(f"index.remote_retry_s={ix.remote_retry_s} must be >= 0")
        ix.remote_retry_s = default_of(ix, "remote_retry_s")
    return problems


def default_of(section: object, name: str) -> Any:
    """The default value of one field of a section dataclass."""
    return getattr(type(section)(), name)
