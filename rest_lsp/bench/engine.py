"""The engine benchmark harness: c(k), tokens per step, speed and overhead of decoding methods.

Pure harness: it takes a model, prompts and drafters and returns figures; the CLI
(``rest-lsp bench engine``) loads the model, the HumanEval prompts and the datastore.  Every
method decodes the same prompts with a cold cache (no KV reuse between prompts), and its outputs
are compared with our plain greedy loop's, so exactness is checked on the real model too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from rest_lsp.engine.cost import measure_cost
from rest_lsp.engine.drafter import Drafter
from rest_lsp.engine.engine import Engine

#: tree sizes of the cost table
COST_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class MethodResult:
    """Figures of one decoding method over a set of prompts."""

    name: str
    prompts: int = 0
    new_tokens: int = 0
    steps: int = 0
    #: end-to-end seconds, prefill included (comparable with transformers' generate)
    wall_s: float = 0.0
    #: CPU seconds of this process over the same span: with one torch thread, a measure that a
    #: busy shared machine disturbs far less than wall time
    cpu_s: float = 0.0
    decode_s: float = 0.0
    forward_s: float = 0.0
    draft_s: float = 0.0
    tree_s: float = 0.0
    other_s: float = 0.0
    budgets: list[int] = field(default_factory=list)
    outputs: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def tokens_per_step(self) -> float:
        return self.new_tokens / self.steps if self.steps else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s else 0.0

    @property
    def overhead_share(self) -> float:
        """Share of decoding time outside the model forward (drafting, tree, bookkeeping)."""
        return 1.0 - self.forward_s / self.decode_s if self.decode_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prompts": self.prompts,
            "new_tokens": self.new_tokens,
            "steps": self.steps,
            "tokens_per_step": round(self.tokens_per_step, 4),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "tokens_per_cpu_s": round(self.new_tokens / self.cpu_s, 2) if self.cpu_s else 0.0,
            "decode_s": round(self.decode_s, 3),
            "forward_s": round(self.forward_s, 3),
            "retrieval_s": round(self.draft_s, 3),
            "tree_s": round(self.tree_s, 3),
            "other_s": round(self.other_s, 3),
            "overhead_share": round(self.overhead_share, 4),
            "mean_budget": round(sum(self.budgets) / len(self.budgets), 2) if self.budgets else 0.0,
        }


def cost_table(model: Any, sizes: Sequence[int] = COST_SIZES, context_len: int = 512, repeats: int = 5) -> dict:
    """c(k) in ms and relative to c(1), through the real verification forward."""
    cost = measure_cost(model, sizes=sizes, context_len=context_len, repeats=repeats)
    return {
        "context_len": context_len,
        "ms": {k: round(s * 1e3, 3) for k, s in zip(cost.sizes, cost.seconds)},
        "relative": {k: round(r, 3) for k, r in cost.relative().items()},
        "cost": cost,
    }


def run_engine(
    engine: Engine,
    name: str,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    mode: str = "rest",
    drafter: Drafter | None = None,
    budget: int | None = None,
) -> MethodResult:
    """Decode every prompt with the engine (cold cache each) and sum the figures."""
    result = MethodResult(name)
    for ids in prompts:
        engine.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        gen = engine.complete(ids, max_new_tokens, mode=mode, drafter=drafter, budget=budget)
        result.wall_s += time.perf_counter() - t0
        result.cpu_s += time.process_time() - c0
        s = gen.stats
        result.prompts += 1
        result.new_tokens += s.new_tokens
        result.steps += s.steps
        result.decode_s += s.decode_s
        result.forward_s += s.forward_s
        result.draft_s += s.draft_s
        result.tree_s += s.tree_s
        result.other_s += s.other_s
        result.budgets.extend(s.budgets)
        result.outputs.append(gen.tokens)
    return result


def transformers_generate(model: Any, ids: Sequence[int], eos_ids: Sequence[int], max_new_tokens: int,
                          prompt_lookup_num_tokens: int | None) -> tuple[tuple[int, ...], float]:
    """One ``transformers`` ``generate`` call (greedy, optionally prompt lookup): (new tokens, seconds)."""
    import torch

    eos = sorted(eos_ids)
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=False,
                                  eos_token_id=eos or None, pad_token_id=eos[0] if eos else None)
    if prompt_lookup_num_tokens:
        kwargs["prompt_lookup_num_tokens"] = prompt_lookup_num_tokens
    x = torch.tensor([list(ids)], device=next(model.parameters()).device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), **kwargs)
    seconds = time.perf_counter() - t0
    new = [int(t) for t in out[0, x.shape[1]:]]
    cut = next((i for i, t in enumerate(new) if t in eos), len(new))
    return tuple(new[:cut]), seconds


def run_transformers(
    model: Any,
    name: str,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos_ids: Sequence[int],
    prompt_lookup_num_tokens: int | None = 10,
) -> MethodResult:
    """transformers' own ``generate`` (greedy, optionally with prompt lookup) as a baseline."""
    result = MethodResult(name)
    for ids in prompts:
        c0 = time.process_time()
        new, seconds = transformers_generate(model, ids, eos_ids, max_new_tokens, prompt_lookup_num_tokens)
        result.wall_s += seconds
        result.cpu_s += time.process_time() - c0
        result.prompts += 1
        result.new_tokens += len(new)
        result.outputs.append(new)
    return result


def agreement(result: MethodResult, reference: MethodResult) -> float:
    """Share of prompts whose output equals the reference's token for token."""
    same = sum(a == b for a, b in zip(result.outputs, reference.outputs))
    return same / len(reference.outputs) if reference.outputs else 0.0
