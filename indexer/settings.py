"""The indexer's settings: what gets indexed, where indexes live, and how retrieval searches them.

``rest_lsp``'s configuration holds these two sections as they are (``[index]`` and
``[retrieval]``); their defaults live only here.  The indexer takes them as values and never
reads a configuration file itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
