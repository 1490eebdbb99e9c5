"""The benchmarks' shared workloads: a repository split into indexed and held-out files, cursor
positions in the held-out ones and their prompts, and the history warm-up's outputs.

``bench repo``, ``bench drafters``, ``bench replay`` and ``bench compact`` draw their repository
positions from here; ``bench server`` and ``bench quality`` hold files out the same way.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


def held_out_files(files: Sequence[str], count: int, seed: int = 0) -> list[str]:
    """``count`` of the relative paths, chosen by a seeded hash of the path (stable across runs)."""
    def key(path: str) -> str:
        return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()

    return sorted(sorted(files, key=key)[:count])


def cursor_positions(text: str, count: int, rng: random.Random, min_line: int = 5) -> list[int]:
    """``count`` offsets where a completion is asked (``warmup.cursor_offsets``), sampled by ``rng``."""
    from rest_lsp.completion.warmup import cursor_offsets

    offsets = cursor_offsets(text, min_line)
    return sorted(rng.sample(offsets, min(count, len(offsets))))


def copy_without(root: Path, dest: Path, skip: set[str], rel_files: Sequence[str]) -> None:
    """Copy the indexable files of ``root`` to ``dest`` except the ``skip`` ones."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in rel_files:
        if rel in skip:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)


def split_repository(root: Path, config: Any, held_out: int, seed: int) -> tuple[list[str], list[str]]:
    """(every indexable file, the held-out Python files) of a repository, relative paths."""
    from indexer.building import sources
    from rest_lsp.errors import ConfigError

    rules = sources.Rules.from_config(config.index)
    rel_files = [sources.relpath(f.path, str(root)) for f in sources.walk(root, rules)]
    py_files = [f for f in rel_files if f.endswith(".py") and (root / f).stat().st_size > 2000]
    held = held_out_files(py_files, held_out, seed)
    if not held:
        raise ConfigError(f"no Python files over 2 kB under {root} to hold out", workspace=str(root))
    return rel_files, held


def completion_prompts(root: Path, held: Sequence[str], tokenizer: Any, max_prompt_tokens: int,
                       positions_per_file: int, seed: int) -> tuple[list[list[int]], list[str]]:
    """Prompt ids at cursor positions of the held-out files (the server's prefix cut), and where."""
    from rest_lsp.completion.prompt import fit_prefix

    rng = random.Random(seed)
    prompts, where = [], []
    for rel in held:
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        for offset in cursor_positions(text, positions_per_file, rng):
            _, ids = fit_prefix(text[:offset], lambda s: tokenizer.encode(s, add_special_tokens=False),
                                max_prompt_tokens)
            if len(ids) >= 8:
                prompts.append(list(ids))
                where.append(f"{rel}:{text.count(chr(10), 0, offset) + 1}")
    return prompts, where


@dataclass
class RepositoryWorkload:
    """Cursor positions in held-out files of a repository, indexed without them (a copy)."""

    root: Path
    held: list[str]
    #: the repository's other indexable files, relative paths
    rel_files: list[str]
    #: the copy without the held-out files, and its index
    copy: Path
    store: Any

    def prompts(self, tokenizer: Any, config: Any, args: Any) -> list[list[int]]:
        """The completion prompts at ``args.positions_per_file`` cursor positions per held-out file."""
        return completion_prompts(self.root, self.held, tokenizer, config.server.max_prompt_tokens,
                                       args.positions_per_file, args.seed)[0]

    def warmup_prompts(self, tokenizer: Any, config: Any, count: int) -> list[list[int]]:
        """The history warm-up's prompts: ``count`` cursor positions over the indexed (not
        held-out) files, picked as the daemon picks them, cut as the workload's prompts are."""
        from rest_lsp.completion.prompt import fit_prefix
        from rest_lsp.completion.warmup import read_text, warmup_positions

        indexed = [rel for rel in self.rel_files if rel not in set(self.held) and (self.copy / rel).is_file()]
        prompts = []
        for rel, offset in warmup_positions(indexed, lambda rel: read_text(self.copy, rel), count):
            _, ids = fit_prefix(read_text(self.copy, rel)[:offset], lambda s: tokenizer.encode(s, add_special_tokens=False),
                                config.server.max_prompt_tokens)
            prompts.append(list(ids) or list(tokenizer.encode("\n", add_special_tokens=False)))
        return prompts

    def documents(self, tokenizer: Any) -> list[tuple[str, list[int]]]:
        """(path, token ids) of the indexed Python files: what the dense index embeds."""
        held = set(self.held)
        return [(rel, tokenizer.encode((self.copy / rel).read_text(errors="replace"), add_special_tokens=False))
                for rel in self.rel_files if rel not in held and rel.endswith(".py")]


def repository_workload(loaded: Any, config: Any, args: Any, out: Path, reuse: bool = False) -> RepositoryWorkload:
    """``args.workspace`` split as ``bench repo`` does, copied without its held-out files to ``out``
    (kept as it is with ``reuse``) and indexed there (``config.index.index_dir`` is set to it)."""
    from indexer import workspace_index
    from indexer.tokens import coerce_tokenizer
    root = Path(args.workspace).resolve()
    rel_files, held = split_repository(root, config, args.held_out, args.seed)
    copy = out / "workspace"
    if not (reuse and copy.exists()):
        copy_without(root, copy, set(held), rel_files)
    config.index.index_dir = str(out / "index")
    store = workspace_index.open_or_build(copy, config, coerce_tokenizer(str(loaded.source)))
    return RepositoryWorkload(root, held, rel_files, copy, store)


def warmup_outputs(loaded: Any, config: Any, store: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                   say: Any = print) -> tuple[list[list[int]], dict[str, Any]]:
    """The model's outputs at the warm-up prompts, decoded as the daemon's warm-up decodes them
    (its default drafting over ``store``, whose output is greedy's), and the figures of that work."""
    from rest_lsp.drafting.datastore import datastore_drafter
    from rest_lsp.engine.drafter import ContextSuffixDrafter, MergedDrafter, RecyclingDrafter
    from rest_lsp.engine.engine import Engine

    r = config.retrieval
    engine = Engine.from_loaded(loaded, config.decoding, MergedDrafter([
        ContextSuffixDrafter(span=r.span, max_suffix=r.max_suffix),
        RecyclingDrafter(int(loaded.model.config.vocab_size)), datastore_drafter(store, r)]))
    outs, t0 = [], time.perf_counter()
    for i, ids in enumerate(prompts):
        engine.reset()
        outs.append(list(engine.complete(list(ids), max_new_tokens).tokens))
        if (i + 1) % 100 == 0:
            say(f"  history warm-up: {i + 1}/{len(prompts)} completions")
    seconds = time.perf_counter() - t0
    tokens = sum(map(len, outs))
    info = {"positions": len(prompts), "tokens": tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}
    say(f"history warm-up: {info}")
    return outs, info
