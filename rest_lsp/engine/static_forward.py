"""The accelerator forward: every verification at a fixed shape, captured once into a CUDA graph.

Why: a 0.5B model's eager forward on an H100 is ~5-8 ms of kernel launches for ~0.4 ms of GPU
work, and cuBLAS picks its algorithm by row count (a one-row greedy step and an n-row tree step
round differently, so REST could drift from greedy).  Here a verification step is

- padded to a fixed row bucket (``row_buckets``): every row of every step goes through GEMMs of
  the same shape, so its value does not depend on the tree around it;
- attention over the cache's whole capacity, the unused and future columns masked: the key
  length is fixed too;
- fed by one host-to-device copy of one int64 vector (``row_buckets.pack_step``) and read back by
  one device-to-host copy (the readout);
- replayed from a CUDA graph per (cache buffer, bucket) on CUDA; run eagerly elsewhere (the same
  function, so the CPU tests check the arithmetic the graph replays);
- the LM head in float32 (an fp32 copy of its weight): argmax over bf16 logits would tie often.

Prefill and the dense tier's hidden states run the eager ``PackedLlama.forward`` into the same
``StaticCache``.  Cache buffers are pooled: the engine makes a new cache per unrelated request,
and a new buffer would mean a new capture.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any

import torch
import torch.nn.functional as F

from rest_lsp.engine.packed_llama import PackedLlama, StaticCache
from rest_lsp.engine.row_buckets import bucket_for, pack_step, packed_size
from rest_lsp.engine.tree_inputs import TreeInputs

log = logging.getLogger(__name__)

#: verification row counts (one bucket: every step, greedy included, has the same shape)
DEFAULT_BUCKETS: tuple[int, ...] = (64,)
#: rows a new cache buffer holds (grown by doubling, which re-captures that buffer's graphs)
DEFAULT_CAPACITY = 2048


def buckets_from_env(environ: dict | None = None) -> tuple[int, ...]:
    """``REST_LSP_ROW_BUCKETS`` ("1,2,4,...,64": a measurement knob, docs/gpu.md), else the default."""
    raw = (environ if environ is not None else os.environ).get("REST_LSP_ROW_BUCKETS", "")
    values = tuple(sorted({int(x) for x in raw.replace(" ", "").split(",") if x}))
    return values or DEFAULT_BUCKETS


class PooledCache(StaticCache):
    """A ``StaticCache`` on a buffer from a pool; ``slot[0]`` is its current buffer (a grown
    cache's new one), handed back to the pool when the cache is gone."""

    def __init__(self, buffer: torch.Tensor) -> None:
        self.slot = [buffer]
        self._use(buffer)
        self.length = 0

    def _use(self, kv: torch.Tensor) -> None:
        super()._use(kv)
        self.slot[0] = kv

    @torch.inference_mode()
    def reserve(self, rows: int) -> None:
        """Grow as a ``StaticCache`` does, the new rows zeroed: the static step attends to every
        row of the capacity (masked), and a masked NaN from uninitialised memory still poisons
        the weighted sum (0 * NaN)."""
        before = self.capacity
        super().reserve(rows)
        if self.capacity > before:
            self.kv[:, :, :, before:] = 0


def _release(free: list, slot: list) -> None:
    free.append(slot[0])


class StaticLlama(PackedLlama):
    """A ``PackedLlama`` whose verification steps run at fixed shapes (CUDA graphs on CUDA)."""

    def __init__(self, hf_model: Any, buckets: tuple[int, ...] | None = None, graphs: bool | None = None,
                 capacity: int = DEFAULT_CAPACITY, fp32_head: bool = True) -> None:
        super().__init__(hf_model, pack=False)
        self.row_buckets = tuple(sorted(buckets or buckets_from_env()))
        self.max_rows = self.row_buckets[-1]
        self.device = self.embed.device
        self.graphs = (self.device.type == "cuda") if graphs is None else graphs
        self.capacity = capacity
        lm = self.lm_head.weight
        self.head_weight = lm.float() if fp32_head else lm  # [vocab, hidden]
        self.head_bias = None if self.lm_head.bias is None else self.lm_head.bias.float()
        self._free: list[torch.Tensor] = []  # pooled cache buffers whose caches are gone
        self._inputs: dict[int, torch.Tensor] = {}  # bucket -> device int64 [packed_size]
        self._host: dict[int, torch.Tensor] = {}  # bucket -> host int64 [packed_size] (pinned on CUDA)
        self._copied: dict[int, Any] = {}  # bucket -> CUDA event after its input copy
        self._captured: dict[tuple[int, int], tuple] = {}  # (buffer id, bucket) -> graph, outputs, buffer
        self.captures = 0

    @property
    def max_drafts(self) -> int:
        """The most draft tokens one verification may hold (the largest bucket, less the root)."""
        return self.max_rows - 1

    # caches ---------------------------------------------------------------------------------

    def new_cache(self, capacity: int | None = None) -> StaticCache:
        """An empty cache on a pooled buffer (a dead cache's buffer, whose graphs stay valid)."""
        cap = capacity or self.capacity
        buffer = next((b for b in self._free if b.shape[3] >= cap), None)
        if buffer is not None:
            self._free.remove(buffer)
        else:
            # zeroed, not empty: see ``PooledCache.reserve``
            buffer = torch.zeros((2, len(self.layers), self.kv_heads, cap, self.head_dim),
                                 dtype=self.embed.dtype, device=self.device)
        cache = PooledCache(buffer)
        # the finalizer must not hold the cache: it holds the slot, whose buffer it returns
        weakref.finalize(cache, _release, self._free, cache.slot)
        return cache

    # the verification step ---------------------------------------------------------------------

    @torch.inference_mode()
    def verify_tree(self, cache: StaticCache, inputs: TreeInputs, hidden: bool = False
                    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [n, vocab] (float32) of the tree's rows, and their hidden states [n, hidden]
        when ``hidden``; the cache grows by the n rows.  Both are views of the step's static
        outputs: valid until the next step."""
        n = len(inputs)
        bucket = bucket_for(n, self.row_buckets)
        past = cache.length
        cache.reserve(past + bucket)  # padding rows are written past the n kept ones
        host = self._host_buffer(bucket)
        copied = self._copied.get(bucket)
        if copied is not None and not copied.query():  # the last copy out of this pinned buffer
            copied.synchronize()  # must be done (it is after a readout: query() says so, no wait)
        pack_step(inputs, past, bucket, out=host.numpy())
        device_in = self._device_buffer(bucket)
        device_in.copy_(host, non_blocking=True)
        if self.device.type == "cuda":
            self._copied[bucket] = torch.cuda.Event()
            self._copied[bucket].record()
        logits, states = self._run(cache, bucket)
        cache.length = past + n
        if hidden:
            return logits[:n], states[:n]
        return logits[:n]

    def _host_buffer(self, bucket: int) -> torch.Tensor:
        if bucket not in self._host:
            t = torch.zeros(packed_size(bucket), dtype=torch.long)
            self._host[bucket] = t.pin_memory() if self.device.type == "cuda" else t
        return self._host[bucket]

    def _device_buffer(self, bucket: int) -> torch.Tensor:
        if bucket not in self._inputs:
            self._inputs[bucket] = torch.zeros(packed_size(bucket), dtype=torch.long, device=self.device)
        return self._inputs[bucket]

    def _run(self, cache: StaticCache, bucket: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The step on the device buffer's inputs: replayed from a graph, or eagerly."""
        if not self.graphs:
            return self.step(cache.kv, bucket)
        # the entry holds its buffer, so no other live buffer can have that id
        key = (id(cache.kv), bucket)
        entry = self._captured.get(key)
        if entry is None:
            try:
                entry = self._capture(cache.kv, bucket)
            except RuntimeError as exc:  # a capture refused by this driver or torch: go on eagerly
                log.warning("cannot capture the verification step into a CUDA graph (%s): "
                            "running it eagerly", exc)
                self.graphs = False
                return self.step(cache.kv, bucket)
            self._captured[key] = entry
        graph, outputs, _ = entry
        graph.replay()
        return outputs

    def _capture(self, kv: torch.Tensor, bucket: int) -> tuple[Any, tuple, torch.Tensor]:
        """Record ``step`` on ``kv`` at ``bucket`` rows into a CUDA graph (after two warm-ups
        on a side stream, as torch's graph docs ask; they compute the step the graph replays)."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.step(kv, bucket)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.step(kv, bucket)
        self.captures += 1
        log.info("captured the verification step: %d rows over %d cache rows (capture %d)",
                 bucket, kv.shape[3], self.captures)
        # the entry holds the buffer: an id is reused only after its buffer is gone
        return graph, outputs, kv

    def step(self, kv: torch.Tensor, bucket: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One padded verification at fixed shapes; no host synchronisation (graph-capturable).

        Reads the device input buffer of ``bucket``; writes the bucket's K/V rows at ``past``
        onward into ``kv`` [2, layers, kv_heads, capacity, head_dim]; returns float32 logits
        [B, vocab] and final-norm hidden states [B, hidden].
        """
        b = bucket
        buf = self._inputs[b]
        tokens, positions, past = buf[:b], buf[b : 2 * b], buf[2 * b]
        ancestors = buf[2 * b + 1 :].view(b, b).bool()  # [B, B]
        capacity = kv.shape[3]
        rows = torch.arange(b, device=kv.device)
        write = past + rows  # [B] cache rows of this step
        columns = torch.arange(capacity, device=kv.device)
        allowed = (columns < past)[None].expand(b, capacity).clone()  # [B, capacity]: the context
        allowed.scatter_(1, write[None].expand(b, b), ancestors)  # the tree's own rows
        hq, hk, d = self.heads, self.kv_heads, self.head_dim
        group = hq // hk
        # queries grouped by their K/V head: [hk, group * B, d] attends to [hk, capacity, d]
        # without expanding K/V; the mask repeats once per query head of a group
        bias = torch.zeros((group * b, capacity), dtype=kv.dtype, device=kv.device)
        bias.masked_fill_(~allowed.repeat(group, 1), float("-inf"))
        bias = bias[None, None]  # [1, 1, group * B, capacity]: the fused kernels take 4D only
        h = F.embedding(tokens, self.embed)  # [B, hidden]
        cos, sin = self.rotation(h, positions)  # [B, 1, d] each
        keys, values = kv[0], kv[1]  # [layers, hk, capacity, d]
        for i, layer in enumerate(self.layers):
            q, k, v = self.attention_inputs(layer, h, cos, sin)  # [B, hq | hk, d]
            keys[i].index_copy_(1, write, k.transpose(0, 1))  # [hk, B, d] into [hk, capacity, d]
            values[i].index_copy_(1, write, v.transpose(0, 1))
            q = q.transpose(0, 1).reshape(1, hk, group * b, d)  # head j*group + g -> K/V head j
            o = F.scaled_dot_product_attention(q, keys[i][None], values[i][None], attn_mask=bias,
                                               scale=self.scaling)  # [1, hk, group * B, d]
            o = o.view(hq, b, d).transpose(0, 1).reshape(b, hq * d)  # [B, hq * d]
            h = self.mlp_block(layer, h + layer.o(o))
        states = F.rms_norm(h, (h.shape[-1],), self.norm, self.norm_eps)  # [B, hidden]
        logits = F.linear(states.to(self.head_weight.dtype), self.head_weight, self.head_bias)  # [B, vocab]
        return logits, states

