"""A fast forward for Llama-family models: packed weights, fused projections, a static KV cache.

Why: on a CPU the ``transformers`` forward of a small model spends more time in Python, dispatch
and per-call weight re-layout than in arithmetic, and its cost grows steeply with the number of
rows (verifying 8 draft tokens cost 2x one token).  This module computes the same function from
the same weights with fewer, larger operations:

- q/k/v and gate/up projections fused into one matrix each (one GEMM instead of three or two);
- on CPU, every matrix pre-packed once into oneDNN's blocked layout (``mkldnn._linear_pointwise``,
  the op ``torch.compile``'s freezing pass emits), without the compile: in float32, 3-5x faster
  than ``F.linear`` for the 1-16 rows of a decode or verification step on this machine kind;
- a preallocated K/V cache of all layers in two tensors [layers, kv_heads, capacity, head_dim]:
  appending is a copy into place, cropping is a length change, keeping accepted rows is one gather;
- ``F.rms_norm`` and ``F.scaled_dot_product_attention`` (grouped-query heads expanded by sdpa);
- no logits at all for prefill, the last row only where asked.

Greedy decoding and tree verification both run through ``forward``, so the engine's exactness
(speculative output == greedy output) holds within this numerics path.  It is not bit-identical
to the ``transformers`` forward (fused GEMMs sum in another order); the engine tests compare it
with a ``transformers`` reference on peaked random models, like the ``transformers`` path.

Supported: Llama, Mistral (without a sliding window), Qwen2 (q/k/v bias), Qwen3 (q/k norms), with
SiLU MLPs; anything else is refused by ``supports`` and runs on the ``transformers`` forward.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

#: model types this forward reproduces
SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def supports(model: Any) -> tuple[bool, str]:
    """Whether ``model`` can run on this forward; (False, why) otherwise."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_TYPES:
        return False, f"model type {model_type!r} is not one of {SUPPORTED_TYPES}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return False, f"hidden_act {config.hidden_act!r} is not silu"
    if getattr(config, "mlp_bias", False):
        return False, "MLP biases are not supported"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return False, "not a *ForCausalLM with model.layers and lm_head"
    attn = inner.layers[0].self_attn
    if model_type in ("llama", "mistral", "qwen2") and (hasattr(attn, "q_norm") or hasattr(attn, "k_norm")):
        return False, "unexpected q/k norms"
    return True, ""


#: the row count oneDNN lays the packed weights out for (measured: any hint from 4 to 64 serves
#: 1-64 rows alike; a hint of 1 is 2-4x slower from 2 rows up)
PACK_ROWS_HINT = 16


class Linear:
    """One weight matrix ready for the device's fastest small-batch GEMM: y = x @ W.T + b."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pack: bool) -> None:
        self.weight = weight.contiguous()  # [out, in]
        self.bias = None if bias is None else bias.contiguous()
        self.packed = None
        if pack:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, PACK_ROWS_HINT)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[n, in] -> [n, out]."""
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def can_pack(weight: torch.Tensor) -> bool:
    """oneDNN packed GEMM: float32 CPU tensors in a torch built with oneDNN (mkldnn)."""
    return (weight.device.type == "cpu" and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available())


class Layer:
    """The weights of one decoder layer, fused."""

    def __init__(self, hf_layer: Any, pack: bool) -> None:
        attn, mlp = hf_layer.self_attn, hf_layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        weight = torch.cat([p.weight.detach() for p in projections])
        biases = [p.bias for p in projections]
        bias = torch.cat([b.detach() for b in biases]) if all(b is not None for b in biases) else None
        pack = pack and can_pack(weight)
        self.qkv = Linear(weight, bias, pack)
        self.o = Linear(attn.o_proj.weight.detach(), _detached(attn.o_proj.bias), pack)
        self.gate_up = Linear(torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()]), None, pack)
        self.down = Linear(mlp.down_proj.weight.detach(), None, pack)
        self.norm_in = hf_layer.input_layernorm.weight.detach()
        self.norm_post = hf_layer.post_attention_layernorm.weight.detach()
        self.q_norm = _detached(getattr(getattr(attn, "q_norm", None), "weight", None))
        self.k_norm = _detached(getattr(getattr(attn, "k_norm", None), "weight", None))
        self.eps_in = _eps(hf_layer.input_layernorm)
        self.eps_post = _eps(hf_layer.post_attention_layernorm)
        self.eps_qk = _eps(attn.q_norm) if self.q_norm is not None else 0.0


def _detached(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach()


def _eps(norm: Any) -> float:
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))


#: cache dtypes numpy can view (bfloat16 has no numpy dtype)
_NUMPY_DTYPES = (torch.float32, torch.float16, torch.float64)


class StaticCache:
    """Preallocated K/V rows of every layer: ``keys``/``values`` [layers, kv_heads, capacity, head_dim].

    Both are views of one tensor ``kv`` [2, layers, kv_heads, capacity, head_dim], so keeping the
    accepted rows after a step moves each row once for every layer.  ``length`` rows are valid; the
    capacity doubles when a forward needs more.
    """

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: Any,
                 capacity: int = 1024) -> None:
        # uninitialised: a row is always written before any query attends to it
        self._use(torch.empty((2, layers, kv_heads, capacity, head_dim), dtype=dtype, device=device))
        self.length = 0

    def _use(self, kv: torch.Tensor) -> None:
        self.kv = kv
        self.keys, self.values = kv[0], kv[1]
        # a numpy view of CPU rows (same memory): ``keep_rows`` moves a few rows a step, and
        # numpy's per-call cost is a fraction of torch's (~35 vs ~125 us a step in the decoding loop)
        self._kv_np = kv.numpy() if kv.device.type == "cpu" and kv.dtype in _NUMPY_DTYPES else None

    @property
    def capacity(self) -> int:
        """Rows the cache holds without growing."""
        return self.kv.shape[3]

    @torch.inference_mode()
    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` rows in total (doubling, so appends stay amortised O(1))."""
        if rows <= self.capacity:
            return
        old = self.kv
        new = old.new_empty(old.shape[:3] + (max(rows, 2 * self.capacity), old.shape[4]))
        new[:, :, :, : self.length] = old[:, :, :, : self.length]
        self._use(new)

    def crop(self, length: int) -> None:
        """Keep the first ``length`` rows."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot crop a cache of {self.length} tokens to {length}")
        self.length = length

    def keep_rows(self, start: int, rows: Sequence[int]) -> None:
        """Keep rows ``start + rows[i]`` at ``start + i`` and drop everything after them."""
        rows = list(rows)
        first = next((i for i, r in enumerate(rows) if r != i), len(rows))  # rows before it stay put
        if first < len(rows):
            if self._kv_np is not None and all(a < b for a, b in zip(rows, rows[1:])):
                self._move_rows(start, rows, first)
            else:
                self._gather_rows(start, rows, first)
        self.crop(start + len(rows))

    def _move_rows(self, start: int, rows: list[int], first: int) -> None:
        """``keep_rows`` of increasing ``rows`` on the CPU: one row at a time, in place.

        Increasing rows from 0 have ``rows[i] >= i``: no row is read after it was overwritten.
        """
        kv = self._kv_np
        for i in range(first, len(rows)):
            kv[:, :, :, start + i] = kv[:, :, :, start + rows[i]]

    @torch.inference_mode()  # the rows may be inference tensors (grown inside a forward)
    def _gather_rows(self, start: int, rows: list[int], first: int) -> None:
        """``keep_rows`` in one gather and one copy (any device, any row order)."""
        index = torch.as_tensor([start + r for r in rows[first:]], dtype=torch.long)
        if self.kv.device.type == "cuda":  # from pinned memory: the copy does not wait for the host
            index = index.pin_memory().to(self.kv.device, non_blocking=True)
        # index_select copies first, so overlapping source and target rows are safe
        self.kv[:, :, :, start + first : start + len(rows)] = self.kv.index_select(3, index)


class PackedLlama:
    """A Llama-family causal LM's forward over packed weights and a ``StaticCache``.

    Holds references to the ``transformers`` model's tensors (fused copies for q/k/v and gate/up);
    ``config``, ``generation_config`` and ``parameters()`` are the wrapped model's, so code that
    inspects a model keeps working.
    """

    def __init__(self, hf_model: Any, pack: bool = True) -> None:
        ok, why = supports(hf_model)
        if not ok:
            raise ValueError(why)
        self.hf = hf_model
        self.config = hf_model.config
        self.generation_config = getattr(hf_model, "generation_config", None)
        inner = hf_model.model
        with torch.no_grad():
            self.layers = [Layer(layer, pack) for layer in inner.layers]
            self.embed = inner.embed_tokens.weight.detach()  # [vocab, hidden]
            self.norm = inner.norm.weight.detach()
            self.norm_eps = _eps(inner.norm)
            lm = hf_model.lm_head.weight.detach()
            self.lm_head = Linear(lm, _detached(hf_model.lm_head.bias), pack and can_pack(lm))
        self.rotary = inner.rotary_emb
        attn = inner.layers[0].self_attn
        self.head_dim = int(attn.head_dim)
        self.heads = int(self.config.num_attention_heads)
        self.kv_heads = int(self.config.num_key_value_heads)
        self.scaling = float(attn.scaling)
        self.packed = self.layers[0].qkv.packed is not None

    # the model-like surface the engine reads ------------------------------------------------

    def parameters(self):
        """The wrapped model's parameters (dtype and device come from them)."""
        return self.hf.parameters()

    def new_cache(self, capacity: int = 1024) -> StaticCache:
        """An empty cache for this model."""
        return StaticCache(len(self.layers), self.kv_heads, self.head_dim, self.embed.dtype, self.embed.device,
                           capacity)

    # the forward ---------------------------------------------------------------------------

    def rotation(self, h: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin [n, 1, head_dim] of ``positions`` [n] (``h`` [n, hidden] gives
        the dtype and device)."""
        cos, sin = self.rotary(h[None], positions[None])  # [1, n, head_dim] each
        # rotate_half(x) * sin == roll(x, half) * (sin with its first half negated): 3 ops fewer
        half = self.head_dim // 2
        sin = torch.cat((-sin[0][:, None, :half], sin[0][:, None, half:]), dim=-1)
        return cos[0][:, None], sin

    def attention_inputs(self, layer: Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [n, hq, d], k [n, hk, d] (normed where the model norms them, rotated) and v [n, hk, d]
        of one layer over the residual stream ``h`` [n, hidden]."""
        n, hq, hk, d = h.shape[0], self.heads, self.kv_heads, self.head_dim
        x = F.rms_norm(h, (h.shape[-1],), layer.norm_in, layer.eps_in)
        qkv = layer.qkv(x)  # [n, (hq + 2 hk) d]
        qk = qkv[:, : (hq + hk) * d].view(n, hq + hk, d)
        v = qkv[:, (hq + hk) * d :].view(n, hk, d)
        if layer.q_norm is not None:
            qk = torch.cat((F.rms_norm(qk[:, :hq], (d,), layer.q_norm, layer.eps_qk),
                            F.rms_norm(qk[:, hq:], (d,), layer.k_norm, layer.eps_qk)), dim=1)
        qk = qk * cos + qk.roll(d // 2, dims=-1) * sin  # [n, hq + hk, d]: q and k rotated at once
        return qk[:, :hq], qk[:, hq:], v

    @staticmethod
    def mlp_block(layer: Layer, h: torch.Tensor) -> torch.Tensor:
        """The residual stream [n, hidden] after one layer's MLP (``h`` has its attention added)."""
        x = F.rms_norm(h, (h.shape[-1],), layer.norm_post, layer.eps_post)
        gate, up = layer.gate_up(x).chunk(2, dim=-1)  # [n, intermediate] each
        return h + layer.down(F.silu(gate) * up)

    @torch.inference_mode()
    def forward(self, cache: StaticCache, tokens: torch.Tensor, positions: torch.Tensor,
                allowed: torch.Tensor, logits: str = "all") -> torch.Tensor | None:
        """Append ``tokens`` [n] at ``positions`` [n] to ``cache``; logits [n or 1, vocab] or None.

        ``allowed`` [n, cache.length + n] bool: which cached and new rows each new row attends to.
        ``logits``: "all" rows, the "last" row, "none" (prefill), "hidden": the final-norm
        hidden states [n, hidden] (what the LM head reads) instead of logits, or "both": the
        logits and those states.
        """
        n = tokens.shape[0]
        past = cache.length
        cache.reserve(past + n)
        h = F.embedding(tokens, self.embed)  # [n, hidden]
        cos, sin = self.rotation(h, positions)
        mask = allowed[None]  # [1, n, past + n]
        hq, hk, d = self.heads, self.kv_heads, self.head_dim
        for i, layer in enumerate(self.layers):
            q, k, v = self.attention_inputs(layer, h, cos, sin)
            cache.keys[i, :, past : past + n] = k.transpose(0, 1)
            cache.values[i, :, past : past + n] = v.transpose(0, 1)
            keys = cache.keys[i, :, : past + n]  # [hk, past + n, d]
            values = cache.values[i, :, : past + n]
            o = F.scaled_dot_product_attention(
                q.transpose(0, 1), keys, values, attn_mask=mask, scale=self.scaling, enable_gqa=hq != hk
            )  # [hq, n, d]
            h = self.mlp_block(layer, h + layer.o(o.transpose(0, 1).reshape(n, hq * d)))
        cache.length = past + n
        if logits == "none":
            return None
        if logits == "last":
            h = h[-1:]
        h = F.rms_norm(h, (h.shape[-1],), self.norm, self.norm_eps)
        if logits == "hidden":
            return h  # [n, hidden]
        if logits == "both":
            return self.lm_head(h), h  # [n, vocab], [n, hidden]
        return self.lm_head(h)  # [n or 1, vocab]

