"""Helpers of the LSP end-to-end tests: a tiny model directory, a server subprocess, waits."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from lsprotocol import types as lsp

REPO = Path(__file__).resolve().parents[2]
EMBEDDED = REPO / "rest_lsp" / "embedded"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def embedded_tokenizer_in(path: Path) -> tuple[Any, int]:
    """Copy the embedded model's tokenizer files into ``path`` (created); (that tokenizer, its
    end-of-text id): the start of every tiny test model the server can load."""
    import shutil

    import transformers

    path.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (EMBEDDED / name).exists():
            shutil.copy(EMBEDDED / name, path / name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return tokenizer, tokenizer.convert_tokens_to_ids("<|endoftext|>")


def make_tiny_model_dir(path: Path, seed: int = 0, steer: tuple[str, str] | None = None) -> Path:
    """A random 2-layer Llama over the embedded tokenizer, saved as an HF model directory.

    ``steer=(a, b)``: the LM head sees one hidden dimension only and maps its sign to token ``a``
    or ``b`` (every other token scores 0), so greedy output is a string of those two tokens
    whatever the prompt: a random model's first token may be a bracket or a newline that the
    stop rules cut (an empty completion), which tests of editors cannot compare.
    """
    import torch
    import transformers

    tokenizer, eos = embedded_tokenizer_in(path)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=eos,
        tie_word_embeddings=steer is None,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    if steer is not None:
        ids = [tokenizer.encode(text, add_special_tokens=False) for text in steer]
        assert all(len(i) == 1 for i in ids), f"{steer} must be single tokens, got {ids}"
        with torch.no_grad():
            model.model.norm.weight.zero_()
            model.model.norm.weight[0] = 1.0
            model.lm_head.weight.zero_()
            model.lm_head.weight[ids[0][0], 0] = 100.0
            model.lm_head.weight[ids[1][0], 0] = -100.0
    model.save_pretrained(path, safe_serialization=True)
    return path


def server_env(home: Path) -> dict[str, str]:
    """The environment of a server under test: caches and config under ``home``, one thread."""
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "config"),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def server_command() -> list[str]:
    """The command an editor would run."""
    return [sys.executable, "-m", "rest_lsp.cli", "serve", "--stdio"]


def init_options(model_dir: Path, corpus: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """``initializationOptions`` for a test server: tiny model, tiny corpus, no debounce."""
    options: dict[str, Any] = {
        "model": {"name": str(model_dir), "threads": 1},
        "index": {"corpus_roots": [str(corpus)]},
        "decoding": {"max_new_tokens": 16},
        "server": {"debounce_ms": 0},
    }
    for name, values in sections.items():
        options.setdefault(name, {}).update(values)
    return options


def capabilities(inline: bool = True) -> lsp.ClientCapabilities:
    """Client capabilities with or without inline completion; work-done progress on."""
    return lsp.ClientCapabilities(
        text_document=lsp.TextDocumentClientCapabilities(
            inline_completion=lsp.InlineCompletionClientCapabilities() if inline else None,
            completion=lsp.CompletionClientCapabilities(),
            synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=True),
        ),
        window=lsp.WindowClientCapabilities(work_done_progress=True),
        workspace=lsp.WorkspaceClientCapabilities(did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities()),
    )


async def wait_for_progress_end(client: Any, timeout: float = 120.0) -> Any:
    """Wait (on notifications) for a ``$/progress`` end: the background work after "ready" (the
    history warm-up) ends the start-up progress later than the ready line."""
    deadline = time.monotonic() + timeout
    while True:
        ends = [r for rs in client.progress_reports.values() for r in rs if isinstance(r, lsp.WorkDoneProgressEnd)]
        if ends:
            return ends[-1]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no $/progress end")
        try:
            await asyncio.wait_for(client.wait_for_notification(lsp.PROGRESS), remaining)
        except asyncio.TimeoutError:
            pass


async def wait_for_log(client: Any, predicate: Callable[[str], bool], timeout: float = 120.0) -> str:
    """Wait (on notifications, not by sleeping) for a ``window/logMessage`` matching ``predicate``."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        for message in client.log_messages[seen:]:
            if predicate(message.message):
                return message.message
        seen = len(client.log_messages)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no matching log message; got {[m.message for m in client.log_messages]}")
        try:
            await asyncio.wait_for(client.wait_for_notification(lsp.WINDOW_LOG_MESSAGE), remaining)
        except asyncio.TimeoutError:
            pass


def ready(message: str) -> bool:
    """True for the log line the server writes once it can complete."""
    return message.startswith("rest-lsp ready") or "indexing failed" in message
