"""The verification-cost benchmark: c(k) of each forward (packed, transformers) on model shapes.

``rest-lsp bench cost`` prints, for k = 1 .. 64 rows, the milliseconds of one verification
forward through the engine's real path (tree mask, position ids, KV cache of ``context_len``
tokens) and the ratio to k = 1, for the embedded model and random-weight models of common shapes.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from rest_lsp.engine.cost import measure_cost

SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)

#: random-weight shapes: name -> (config class, model class, config fields)
SHAPES: dict[str, tuple[str, str, dict]] = {
    # the embedded model's shape (training/train_embedded.py)
    "embedded-shape": ("LlamaConfig", "LlamaForCausalLM", dict(
        vocab_size=16384, hidden_size=256, intermediate_size=704, num_hidden_layers=8, num_attention_heads=8,
        num_key_value_heads=4, tie_word_embeddings=True)),
    # Qwen2.5-0.5B's shape: 24 layers, 896 wide, GQA 14/2, q/k/v biases, 151,936 tokens
    "0.5b-shape": ("Qwen2Config", "Qwen2ForCausalLM", dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, tie_word_embeddings=True)),
}


def random_model(shape: str, dtype: Any = None) -> Any:
    """A random-weight model of a named shape, in eval mode (float32 unless ``dtype``)."""
    import torch
    import transformers

    config_name, model_name, fields = SHAPES[shape]
    config = getattr(transformers, config_name)(max_position_embeddings=4096, bos_token_id=None, eos_token_id=0,
                                                pad_token_id=None, **fields)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = getattr(transformers, model_name)(config)
    return model.to(dtype or torch.float32).eval()


def forwards_of(model: Any, which: Sequence[str]) -> dict[str, Any]:
    """The runners to measure: name -> model-like object ("packed", "unpacked", "static",
    "transformers")."""
    from rest_lsp.engine.packed_llama import PackedLlama, supports
    from rest_lsp.engine.static_forward import StaticLlama

    out: dict[str, Any] = {}
    for name in which:
        if name == "transformers":
            out[name] = model
        elif name == "static" and supports(model)[0]:
            out[name] = StaticLlama(model)
        elif supports(model)[0]:
            out[name] = PackedLlama(model, pack=(name == "packed"))
    return out


def cost_rows(runner: Any, context_len: int, repeats: int, sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    """{"ms": {k: ms}, "relative": {k: c(k)/c(1)}} for one runner."""
    cost = measure_cost(runner, sizes=sizes, context_len=context_len, repeats=repeats)
    return {
        "ms": {k: round(s * 1e3, 3) for k, s in zip(cost.sizes, cost.seconds)},
        "relative": {k: round(r, 3) for k, r in cost.relative().items()},
    }


def run(models: dict[str, Callable[[], Any]], forwards: Sequence[str], context_len: int, repeats: int,
        say: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every forward of every model; ``models`` maps a name to a loader."""
    results: dict[str, Any] = {}
    for model_name, load in models.items():
        t0 = time.perf_counter()
        model = load()
        params = sum(p.numel() for p in model.parameters())
        say(f"{model_name}: {params / 1e6:.1f} M parameters, loaded in {time.perf_counter() - t0:.1f} s")
        results[model_name] = {"parameters": params, "forwards": {}}
        for fwd_name, runner in forwards_of(model, forwards).items():
            rows = cost_rows(runner, context_len, repeats)
            results[model_name]["forwards"][fwd_name] = rows
            say(f"  {fwd_name:>12}: " + "  ".join(
                f"k={k} {ms:.2f} ms ({rows['relative'][k]:.2f}x)" for k, ms in rows["ms"].items()))
        del model
    return results


def table(results: dict[str, Any]) -> str:
    """A markdown table: one row per model and forward, c(1) in ms then c(k)/c(1)."""
    lines = ["| model | forward | c(1) ms | " + " | ".join(f"c({k})" for k in SIZES[1:]) + " |",
             "|---|---|---|" + "---|" * (len(SIZES) - 1)]
    for model_name, r in results.items():
        for fwd_name, rows in r["forwards"].items():
            # a bucketed forward is measured at its buckets only: other sizes show "-"
            rel = rows["relative"]
            first = min(rows["ms"])
            label = fwd_name if first == 1 else f"{fwd_name} (c({first}) as c(1))"
            lines.append(f"| {model_name} | {label} | {rows['ms'][first]:.2f} | "
                         + " | ".join(f"{rel[k]:.2f}" if k in rel else "-" for k in SIZES[1:]) + " |")
    return "\n".join(lines)
