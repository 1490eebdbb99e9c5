"""The typed configuration of rest-lsp: one dataclass per section, one source of defaults.

Defaults live only here.  The CLI, the server (``initializationOptions``), the config file and
the editors' settings are all checked against these dataclasses.  ``Config.from_dict`` validates
and reports every invalid option instead of raising on the first one, so that the server can
show them and carry on with defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from indexer.settings import DEFAULT_IGNORE_GLOBS, DEFAULT_SECRET_GLOBS, IndexConfig, RetrievalConfig  # noqa: F401
from rest_lsp.config.checks import check
from rest_lsp.config.load import apply_sections
from rest_lsp.errors import ConfigError

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
    #: the llama.cpp forward's weights: "auto" repacks them for the CPU where the llama.cpp build
    #: can (not with AMX kernels built in: they crash, docs/cpu.md); "on"; "off" keeps the file's
    #: layout, which lets a verification batch hold 7 rows instead of 3 and stay exact
    repack: str = "auto"
    #: the llama.cpp forward's K/V cache: "auto" keeps the cache whose tree rows equal one-row
    #: steps (f16 keys, q8_0 values) and takes llama.cpp's own faster f16/f16 one, which drafting
    #: cannot use, where the measured c(k) says drafting cannot pay (docs/cpu.md); "exact" keeps
    #: the first always (drafting is then still possible at a fixed budget)
    kv_cache: str = "auto"


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
    #: always keeps half of it; 0: no block); 128 by measurement: on the 0.5B model a block of 384
    #: completed no better and cost more prefill (BENCHMARKS.md, session 12)
    context_tokens: int = 128
    #: "auto": a function body begun after its docstring is asked of an instruct
    #: model in its chat form (completion/instruct.py; on the 0.5B model HumanEval pass@1 rose by
    #: measurement, BENCHMARKS.md); "on" for any model with a chat template; "off"
    instruct: str = "auto"
    #: "auto": one statement (its line, its bracketed continuation, or the block it opens)
    #: everywhere but at the start of an empty block; the body of a header the user wrote and a
    #: blank line beginning a block with nothing of it written (a new function body after its
    #: docstring included) get as many lines as the model writes, as Cody and Copilot do
    #: (completion/stops.py).  "always": every place gets as many lines as the model writes
    multiline: str = "auto"
    #: a keystroke that types the beginning of the completion on show is answered with its rest,
    #: without decoding (completion/type_through.py): the rest of what the user reads, at once;
    #: false decodes every request
    type_through: bool = True
    #: prefill the prompt of a document's next completion while the daemon is idle (after an
    #: edit, an open or a completion), so that a request anywhere in the prompt's window reuses
    #: the K/V up to its cursor; the context block is then kept per document and chosen afresh
    #: by this warm-up (docs/server.md).  On a CPU it turns a new position's multi-second
    #: prefill into the suffix's
    warm_documents: bool = True
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
        config = cls()
        if not data:
            return config, []
        if not isinstance(data, dict):
            return config, [f"configuration must be an object, got {type(data).__name__}"]
        problems = apply_sections(config, data)
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
        return check(self)
