"""The typed configuration of rest-lsp: one dataclass per section, one source of defaults.

Defaults live only here.  The CLI, the server (``initializationOptions``), the config file and
the editors' settings are all checked against these dataclasses.  ``Config.from_dict`` validates
and reports every invalid option instead of raising on the first one, so that the server can
show them and carry on with defaults.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from rest_lsp.errors import ConfigError

#: file names never indexed by default (secrets); gitignore-style patterns
DEFAULT_SECRET_GLOBS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".pgpass",
    ".htpasswd",
    "credentials",
    "credentials.*",
    "*credentials*.json",
    "secrets.*",
    "*.secret",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    ".aws/",
    ".ssh/",
    ".gnupg/",
)

#: build, vendor and cache paths never indexed by default; gitignore-style patterns
DEFAULT_IGNORE_GLOBS: tuple[str, ...] = (
    ".git/",
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.pyc",
    "node_modules/",
    ".venv/",
    "venv/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".rest-lsp-index/",
    "*.egg-info/",
    "*.min.js",
    "*.lock",
    "package-lock.json",
)


@dataclass
class ModelConfig:
    """Which model decodes, where and in what precision."""

    #: a packaged model (qwen2.5-coder-0.5b, qwen2.5-coder-1.5b), a .gguf file, ollama:NAME[:TAG],
    #: a model folder, a hub name or "embedded"; empty means the default: the packaged 0.5B when
    #: installed, else the embedded model (rest_lsp/models/resolve.py, docs/models.md)
    name: str = ""
    #: "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:N"
    device: str = "auto"
    #: "auto" (bf16 on cuda, fp32 on cpu), "float32", "bfloat16", "float16"
    dtype: str = "auto"
    trust_remote_code: bool = False
    #: torch threads on the CPU; 0 means all cores
    threads: int = 0
    #: "auto" (llama.cpp for a GGUF model on the CPU when llama-cpp-python is installed; else the
    #: packed forward for supported architectures in float32 on the CPU; the static forward, fixed
    #: shapes in CUDA graphs, for them on CUDA; else transformers'), "llama.cpp", "packed",
    #: "static" or "transformers"
    forward: str = "auto"


@dataclass
class IndexConfig:
    """What gets indexed and where the index lives."""

    #: corpus roots; empty means the running Python's standard library
    corpus_roots: list[str] = field(default_factory=list)
    #: index directory; empty means the user cache directory keyed by workspace
    index_dir: str = ""
    #: extra gitignore-style patterns to skip
    exclude_globs: list[str] = field(default_factory=list)
    #: patterns never indexed (secrets); replace to change the list
    secret_globs: list[str] = field(default_factory=lambda: list(DEFAULT_SECRET_GLOBS))
    #: files larger than this are skipped
    max_file_bytes: int = 1_000_000
    #: file watcher debounce
    watch_debounce_ms: int = 50
    #: build/vendor/cache paths never indexed (gitignore-style); replace to change the list
    ignore_globs: list[str] = field(default_factory=lambda: list(DEFAULT_IGNORE_GLOBS))
    #: files a corpus root contributes (gitignore-style); empty means every text file
    corpus_include_globs: list[str] = field(default_factory=lambda: ["*.py", "*.pyi"])
    #: most tokens in one corpus or workspace shard: every query searches every shard, so
    #: fewer is faster; a shard's suffix array needs ~25 bytes/token of memory while built
    corpus_shard_tokens: int = 96_000_000
    #: changed workspace files live in a small in-memory delta shard, rebuilt on every save
    #: (cost grows with it); past this many tokens they are folded into a rebuilt base shard
    compact_tokens: int = 250_000
    #: "full" (the corpus suffix array) or "compact" (frequent n-grams with precomputed trees,
    #: built by `rest-lsp index compact`, at ``corpus_compact_dir``); workspace and live tiers
    #: are always full
    corpus_tier: str = "full"
    corpus_compact_dir: str = ""
    #: served corpus indexes (``rest-lsp datastore serve``) drafted from as one more tier each,
    #: "http://host:port"
    remote_datastores: list[str] = field(default_factory=list)
    #: the most a decoding step waits for the remote tiers, counted from the step's start (their
    #: request overlaps the local search); past it the step drafts from the local tiers
    remote_budget_ms: float = 5.0
    #: a remote tier that failed (down, or late 3 steps in a row) is left out this long, then retried
    remote_retry_s: float = 10.0


@dataclass
class RetrievalConfig:
    """How continuations are retrieved from the datastore."""

    #: longest context suffix searched
    max_suffix: int = 16
    #: shortest context suffix searched
    min_suffix: int = 2
    #: tokens per retrieved continuation (16 pays with decoding.depth_decay: `bench replay`)
    span: int = 16
    #: at most this many continuations are gathered per suffix (sampled evenly, not first-k);
    #: 1000 ranks a 64-node draft tree about as well as 5000 at a third of the cost (the
    #: "rest_paper" retrieval mode keeps the paper's first 5000 unless told otherwise)
    max_candidates: int = 1000
    #: candidates are prefix-merged so that about this many draft-tree nodes survive, each of
    #: the heaviest nodes with its exact weight (bounds the list's length); 0 keeps every one
    max_nodes: int = 128
    #: seed of the sample taken when a suffix has more than max_candidates matches
    sample_seed: int = 0
    #: ask the datastore only while the accepted tokens only it proposed pay for what a step
    #: costs more with it (rest_lsp/engine/gate.py): worth it on real code, not on every workload
    gate: bool = True
    #: tokens of the model's own recent outputs kept as the "history" draft source (0: off)
    history_tokens: int = 50_000
    #: cursor positions of the workspace the model completes in the background, while idle, to
    #: fill the history source with its own outputs (rest_lsp/completion/warmup.py; 0: off)
    history_warmup: int = 400
    #: dense drafts (DReSD) from the workspace's dense index: "auto" uses one when built (`rest-lsp
    #: index dense`), "on" also builds it in the server's background, "off" never; not "on" by
    #: default: on the embedded model they add at most 0.4 % tokens/step to the daemon's other
    #: sources, less than the search costs (BENCHMARKS.md, `bench replay` daemon vs daemon+dense)
    dense: str = "auto"
    #: nearest neighbours asked of the dense index per step
    dense_neighbours: int = 50


@dataclass
class DecodingConfig:
    """How completions are decoded."""

    max_new_tokens: int = 64
    #: draft tree nodes; 0 means adaptive (chosen from the measured cost of verification)
    draft_budget: int = 0
    #: upper bound for the adaptive budget
    max_draft_budget: int = 64
    #: 0 means greedy
    temperature: float = 0.0
    top_p: float = 1.0
    #: keep the KV cache of the longest common prefix between requests
    kv_reuse: bool = True
    #: "rest" (speculative, drafts verified in one pass) or "greedy" (one token per forward,
    #: the baseline the speed-ups are measured against; same output)
    mode: str = "rest"
    #: per-source draft weights: "learned" online from which drafts were accepted (starting
    #: from the defaults), or "fixed" at the defaults
    source_weights: str = "learned"
    #: draft-tree prior that a deeper draft token is less likely reached: a node at depth d
    #: weighs depth_decay^(d-1) times its candidates' weight (1: no decay)
    depth_decay: float = 0.6
    #: extra stop strings: a completion ends before the first of them it contains
    stop: list[str] = field(default_factory=list)


@dataclass
class ServerConfig:
    """Language-server behaviour."""

    debounce_ms: int = 75
    #: languages (LSP language ids) for which completion is off
    disabled_languages: list[str] = field(default_factory=list)
    #: prompt budget in tokens (prefix + suffix)
    max_prompt_tokens: int = 1024
    #: most tokens of the text after the cursor in a fill-in-the-middle prompt (within a quarter
    #: of the budget): the suffix follows the prefix, so each keystroke prefills it again
    max_suffix_tokens: int = 64
    #: also offer textDocument/completion when the client supports inline completion
    classic_completion: bool = False
    #: "auto" uses fill-in-the-middle prompts when the model has FIM tokens; "on" / "off"
    fim: str = "auto"
    #: the prompt format (rest_lsp.completion.fim): "auto" detects it from the tokenizer, or
    #: qwen | starcoder | deepseek | codellama | codestral; its stop tokens apply even when fim is off
    fim_template: str = "auto"
    #: "auto": prompts start with the repository name and file path where the template has such a
    #: header (Qwen2.5-Coder, StarCoder2); "off"
    repo_header: str = "auto"
    #: "auto": prompts hold a context block: lines of other open buffers and of the workspace
    #: index that share the longest token runs with the text before the cursor, and definitions
    #: of names used near it, in the model's repository format or as commented headers, chosen
    #: once per completion session (docs/server.md); "off"
    context: str = "auto"
    #: most tokens of the context block, taken out of max_prompt_tokens (the file's own text
    #: always keeps half of it; 0: no block)
    context_tokens: int = 384
    #: completion items returned for an explicit (invoked) request, for cycling
    max_items: int = 3
    #: seconds a completion request that arrives while the model or index is still loading waits
    #: for them (then it is answered as usual; past it, empty, with the reason in the log), so
    #: that the first request of a session is not lost; 0 answers such a request empty at once
    ready_wait_s: float = 20.0


@dataclass
class Config:
    """The whole configuration of rest-lsp."""

    model: ModelConfig = field(default_factory=ModelConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> tuple["Config", list[str]]:
        """Build a config from nested dicts; return it and the problems found.

        Unknown keys and invalid values are reported and replaced by defaults.
        """
        problems: list[str] = []
        config = cls()
        if not data:
            return config, problems
        if not isinstance(data, dict):
            return config, [f"configuration must be an object, got {type(data).__name__}"]
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in data.items():
            if name not in sections:
                problems.append(f"unknown section {name!r}")
                continue
            if not isinstance(value, dict):
                problems.append(f"section {name!r} must be an object, got {type(value).__name__}")
                continue
            section = getattr(config, name)
            problems.extend(_apply(section, value, prefix=name))
        problems.extend(config.check())
        return config, problems

    @classmethod
    def strict(cls, data: dict[str, Any] | None) -> "Config":
        """Build a config from nested dicts; raise ``ConfigError`` on any problem."""
        config, problems = cls.from_dict(data)
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems), problems=problems)
        return config

    def to_dict(self) -> dict[str, Any]:
        """The configuration as nested plain dicts (JSON-ready)."""
        return dataclasses.asdict(self)

    def check(self) -> list[str]:
        """Range checks across fields; returns problems (and resets offending fields)."""
        from rest_lsp.config_check import check

        return check(self)


def default_of(section: object, name: str) -> Any:
    """The default value of one field of a section dataclass."""
    return getattr(type(section)(), name)


def _apply(section: object, values: dict[str, Any], prefix: str) -> list[str]:
    """Set the fields of ``section`` from ``values``, type-checked; return problems."""
    problems: list[str] = []
    hints = typing.get_type_hints(type(section))
    names = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in names:
            problems.append(f"unknown option {prefix}.{key}")
            continue
        converted, ok = _convert(value, hints[key])
        if not ok:
            problems.append(
                f"{prefix}.{key}={value!r} must be {_type_name(hints[key])}, using default"
            )
            continue
        setattr(section, key, converted)
    return problems


def _convert(value: Any, hint: Any) -> tuple[Any, bool]:
    """Convert a JSON value to the hinted type; (value, ok)."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return value, isinstance(value, bool)
    if hint is int:
        return value, isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (float(value) if ok else value), ok
    if hint is str:
        return value, isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            return value, False
        out = []
        for v in value:
            c, ok = _convert(v, item)
            if not ok:
                return value, False
            out.append(c)
        return out, True
    return value, False


def _type_name(hint: Any) -> str:
    """A readable name of a type hint."""
    origin = typing.get_origin(hint)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
