"""The llama.cpp forward: a GGUF file run by llama.cpp's CPU kernels, a draft tree verified in one batch.

Why: on a CPU, a 4-bit GGUF model read by llama.cpp decodes one token several times faster than
the dequantized float32 weights in torch (docs/cpu.md has the measurements).  The engine keeps its
loop, drafting and acceptance; this module is the forward and the KV cache behind them:

- a draft tree is one ``llama_decode`` batch in which every leaf is a sequence and every node
  belongs to the sequences of the leaves below it (``branches.branch_sequences``): llama.cpp's
  mask "same sequence, earlier or same position" is then exactly the tree mask;
- after acceptance the rejected branches are dropped from the cache (``llama_memory_seq_keep`` /
  ``seq_rm``); the accepted nodes that do not already lie in position order right after the
  context are written again at the start of the next batch (``LlamaCppCache.pending``), so that
  the cache always holds the sequence in order, as plain decoding would;
- exactness: a row's result must not depend on the other rows of its batch, or REST's output
  would drift from greedy's.  Measured (docs/cpu.md): flash attention over f16 keys and q8_0
  values takes one code path for any number of rows and skips masked cells rather than summing
  them (with K and V of one f16 type, a single row takes a split-K/V path and 64+ rows a tiled
  one; an f32 half turns flash attention off).  q8_0 keys are exact too, and prefill ~15%
  faster, but they change real answers: a fill-in-the-middle body became calls of the function
  in 5 of 6 workspace names tried, where f16 keys and the float32 model wrote the body.  Weights repacked for the CPU
  (llama.cpp's default; a step ~25% faster here) take one kernel for 1-3 rows and another from
  4 rows up; without repacking, ggml's tiled K-quant matmul takes over from 8 rows.  So a
  verification batch holds at most 3 rows (``max_rows``: the root and two drafts) with repacked
  weights, 7 without, and 64 without either (``repack=False`` and ``GGML_CPU_TILED_MM=0`` in the
  environment, which makes prefill ~13% slower here): on a 2-core CPU wider trees do not pay
  anyway (c(4)/c(1) ~ 2.8).  ``tests/engine/test_llama_cpp_runner.py`` checks that the logits of tree
  rows equal those of one-token steps bit for bit.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rest_lsp.engine.branches import branch_sequences, leading_chain
from rest_lsp.engine.llama_cpp_build import (CACHE_TYPES, GGML_TYPE_F16, GGML_TYPE_Q8_0, available,
                                             max_verification_rows, repack_choice)
from rest_lsp.engine.tree_inputs import TreeInputs
from rest_lsp.errors import DecodingError, ModelError

#: most sequences (tree leaves) in one verification batch; wider trees are refused.  A tree has no
#: more leaves than rows, so a context keeps ``min(MAX_BRANCHES, max_rows)`` sequences (each costs
#: a row of logits in its output buffer: 0.6 MB for Qwen's vocabulary)
MAX_BRANCHES = 64
#: tokens per llama_decode call while prefilling
PREFILL_CHUNK = 512
#: context length of the cache: the prompt (server.max_prompt_tokens, 1,024 by default) and the
#: completion fit with room to spare; each 1,024 more cost ~10 MB of K/V for the 0.5B
DEFAULT_CONTEXT = 4096
#: the K/V cache types trees are verified on: f16 keys and q8_0 values keep flash attention on one
#: code path for any row count (K and V of different types rule out its split and tiled variants)
EXACT_CACHE = (GGML_TYPE_F16, GGML_TYPE_Q8_0)


class LlamaCppCache:
    """The engine's view of the llama.cpp context's KV cache: committed tokens plus pending ones.

    ``tokens`` lie in the cache at positions 0..len-1 (sequence 0); ``pending`` are accepted
    tokens not yet written (or written out of order and removed), put first in the next batch.
    The cache also remembers its tokens so that it can be rebuilt if another cache used the
    context in between (the cost measurement does).
    """

    def __init__(self, runner: "LlamaCppRunner") -> None:
        self.runner = runner
        self.tokens: list[int] = []
        self.pending: list[int] = []
        #: the tree verified last (its flat tokens), until ``keep_rows`` settles it
        self.tree_tokens: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Tokens the cache stands for (written or pending)."""
        return len(self.tokens) + len(self.pending)

    def crop(self, length: int) -> None:
        """Keep only the first ``length`` tokens."""
        if length > self.length or length < 0:
            raise ValueError(f"cannot crop a cache of {self.length} tokens to {length}")
        if self.tree_tokens is not None and self.runner.owner is self:
            self.runner.keep_first_branch(len(self.tokens))  # an unsettled tree's rows go
        self.tree_tokens = None
        if length >= len(self.tokens):
            self.pending = self.pending[: length - len(self.tokens)]
            return
        if self.runner.owner is self:
            self.runner.remove_from(length)
        self.tokens = self.tokens[:length]
        self.pending = []

    def keep_rows(self, start: int, rows: Sequence[int]) -> None:
        """Settle the last verified tree: keep its accepted nodes ``rows`` (root first) after ``start``."""
        if start != len(self.tokens) or self.tree_tokens is None:
            raise ValueError(f"keep_rows({start}) without a tree verified at {len(self.tokens)}")
        rows = list(rows)
        tree = self.tree_tokens
        self.tree_tokens = None
        in_order = leading_chain(rows)
        self.runner.keep_first_branch(start + in_order)
        self.tokens.extend(int(tree[r]) for r in rows[:in_order])
        self.pending = [int(tree[r]) for r in rows[in_order:]]


class LlamaCppRunner:
    """A GGUF model in a llama.cpp context: the engine's forward and KV cache for it."""

    #: the engine skips the torch-model checks for runners that do their own attention
    own_attention = True

    def __init__(self, gguf: str | Path, config: Any, generation_config: Any = None, *,
                 threads: int = 0, context: int = DEFAULT_CONTEXT, name_or_path: str = "",
                 type_k: int = EXACT_CACHE[0], type_v: int = EXACT_CACHE[1], flash_attention: bool = True,
                 repack: bool | None = None, one_row_allowed: bool = True) -> None:
        ok, why = available()
        if not ok:
            raise ModelError(why, forward="llama.cpp")
        import llama_cpp as L

        safe, why = repack_choice(L.llama_print_system_info().decode("utf-8", "replace"))
        if repack and not safe:
            raise ModelError(why, forward="llama.cpp", gguf=str(gguf))
        #: whether the weights were repacked (llama.cpp's extra buffer types): by default where
        #: this build can repack safely
        self.repack = safe if repack is None else repack
        self.repack_reason = "weights not repacked (asked)" if repack is False else why

        self._L = L
        self.gguf = str(gguf)
        self.config = config
        self.generation_config = generation_config
        self.name_or_path = name_or_path or self.gguf
        self.device = torch.device("cpu")
        self.threads = threads if threads > 0 else (os.cpu_count() or 1)
        self.context = int(context)
        #: rows one verification batch may hold (see the module docstring)
        self.max_rows = max_verification_rows(self.repack)
        #: sequences of the context: one per leaf of the widest tree allowed
        self.branches = min(MAX_BRANCHES, self.max_rows)
        L.llama_backend_init()
        L.llama_log_set(_quiet_callback(), ctypes.c_void_p())
        mp = L.llama_model_default_params()
        mp.use_extra_bufts = self.repack  # see the module docstring: it sets how many rows stay exact
        self._model = L.llama_model_load_from_file(self.gguf.encode(), mp)
        if not self._model:
            raise ModelError(f"llama.cpp cannot load {self.gguf}", gguf=self.gguf)
        self.flash_attention = flash_attention
        #: whether ``one_row_cache`` may be taken (model.kv_cache = "auto")
        self.one_row_allowed = one_row_allowed
        self.cache_types = (type_k, type_v)
        self._ctx = self._new_context(type_k, type_v)
        self._mem = L.llama_get_memory(self._ctx)
        self._batch = L.llama_batch_init(PREFILL_CHUNK, 0, self.branches)
        self.n_vocab = int(L.llama_vocab_n_tokens(L.llama_model_get_vocab(self._model)))
        self.n_params = int(L.llama_model_n_params(self._model))
        self.weight_bytes = int(L.llama_model_size(self._model))
        #: the cache whose tokens the context holds now
        self.owner: LlamaCppCache | None = None

    def _new_context(self, type_k: int, type_v: int) -> Any:
        """A llama.cpp context over the model with K/V cache types ``type_k`` and ``type_v``."""
        L = self._L
        cp = L.llama_context_default_params()
        cp.n_ctx = self.context
        cp.n_batch = PREFILL_CHUNK
        cp.n_ubatch = PREFILL_CHUNK
        cp.n_seq_max = self.branches
        cp.n_threads = self.threads
        cp.n_threads_batch = self.threads
        cp.flash_attn_type = (L.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attention
                              else L.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cp.type_k = type_k
        cp.type_v = type_v
        cp.kv_unified = True
        cp.no_perf = True
        ctx = L.llama_init_from_model(self._model, cp)
        if not ctx:
            raise ModelError(f"llama.cpp cannot create a context for {self.gguf}", gguf=self.gguf,
                             type_k=type_k, type_v=type_v)
        return ctx

    def one_row_cache(self) -> bool:
        """Switch to llama.cpp's own K/V cache (f16 keys and values) for one-row steps only.

        Why: where drafting cannot pay (the budget's ``ceiling``: the 2-core EPYC, c(3) ~ 2.9
        c(1)), decoding is one row a step anyway, and that cache prefills about a third faster
        and steps ~4 % faster than the exact one (``rest-lsp bench llama``); but a one-row batch
        takes flash attention's split path there, so a tree's rows would differ from one-row
        steps: ``max_rows`` becomes 1 and the engine drafts no more.  Every cache is rebuilt on
        its next use.  False (nothing changes) where ``model.kv_cache = "exact"``.
        """
        if not self.one_row_allowed:
            return False
        if self.cache_types != (GGML_TYPE_F16, GGML_TYPE_F16):
            ctx = self._new_context(GGML_TYPE_F16, GGML_TYPE_F16)
            self._L.llama_free(self._ctx)
            self._ctx = ctx
            self._mem = self._L.llama_get_memory(ctx)
            self.cache_types = (GGML_TYPE_F16, GGML_TYPE_F16)
            self.owner = None  # every cache prefills its tokens again in the new context
        self.max_rows = 1  # made with f16/f16 or switched to it: trees would not be exact
        return True

    @property
    def cache_description(self) -> str:
        """The K/V cache in words (``rest-lsp model info``)."""
        names = {ggml: name for name, ggml in CACHE_TYPES.items()}
        k, v = (names.get(t, str(t)) for t in self.cache_types)
        if self.max_rows == 1:
            return f"K/V cache {k}/{v} (one-row steps only)"
        later = "; f16/f16 and one-row steps where drafting cannot pay" if self.one_row_allowed else ""
        return f"K/V cache {k}/{v} (trees of up to {self.max_rows} rows exact{later})"

    @property
    def max_drafts(self) -> int:
        """The most draft tokens one tree may hold (the root takes a row): the engine cuts its budget to it."""
        return self.max_rows - 1

    def __repr__(self) -> str:
        return f"LlamaCppRunner({Path(self.gguf).name}, threads={self.threads})"

    def close(self) -> None:
        """Free the llama.cpp context and model."""
        L = self._L
        if getattr(self, "_ctx", None):
            L.llama_batch_free(self._batch)
            L.llama_free(self._ctx)
            L.llama_model_free(self._model)
            self._ctx = None

    def __del__(self) -> None:  # the context holds the K/V buffers and the mapped file
        try:
            self.close()
        except Exception:
            pass

    # -- the engine's cache operations ----------------------------------------------------

    def new_cache(self) -> LlamaCppCache:
        """An empty cache (the context is cleared when it is first used)."""
        return LlamaCppCache(self)

    def parameters(self):  # the engine asks a model for its device and dtype through these
        yield torch.zeros(0)

    def remove_from(self, position: int) -> None:
        """Drop every cached token at ``position`` or later, of every sequence."""
        self._L.llama_memory_seq_rm(self._mem, -1, position, -1)

    def keep_first_branch(self, end: int) -> None:
        """Keep only sequence 0 (the context and the first-child branch) up to position ``end``."""
        self._L.llama_memory_seq_keep(self._mem, 0)
        self._L.llama_memory_seq_rm(self._mem, 0, end, -1)

    def _activate(self, cache: LlamaCppCache) -> None:
        """Make the context hold ``cache``'s tokens (rebuilt when another cache used it)."""
        if self.owner is cache:
            return
        self._L.llama_memory_clear(self._mem, True)
        self.owner = cache
        tokens = cache.tokens
        cache.tokens = []
        if tokens:
            self._decode_chain(cache, tokens)

    # -- forwards -------------------------------------------------------------------------

    def prefill(self, cache: LlamaCppCache, token_ids: Sequence[int]) -> None:
        """Append ``token_ids`` (after any pending tokens) to the cache; no logits."""
        self._activate(cache)
        ids = cache.pending + [int(t) for t in token_ids]
        cache.pending = []
        self._decode_chain(cache, ids)

    def _decode_chain(self, cache: LlamaCppCache, ids: list[int]) -> None:
        for start in range(0, len(ids), PREFILL_CHUNK):
            part = ids[start:start + PREFILL_CHUNK]
            base = len(cache.tokens)
            self._check_room(base + len(part))
            self._fill(part, [base + i for i in range(len(part))], [(0,)] * len(part), [False] * len(part))
            self._decode(len(part))
            cache.tokens.extend(part)

    def verify_tree(self, cache: LlamaCppCache, inputs: TreeInputs) -> torch.Tensor:
        """Logits [n, vocab] of every tree node, the pending tokens written first, in one batch.

        The logits are a view of llama.cpp's output buffer, valid until the next forward.
        """
        self._activate(cache)
        if len(inputs) > self.max_rows:
            raise DecodingError(f"a draft tree of {len(inputs)} nodes exceeds the {self.max_rows} rows "
                                "that keep verification exact", nodes=len(inputs), max_rows=self.max_rows)
        seqs = branch_sequences(inputs.parents)
        n_seq = 1 + max(s for node in seqs for s in node)  # <= len(inputs) <= branches
        if cache.pending and len(cache.pending) + len(inputs) > self.max_rows:
            self._decode_chain(cache, cache.pending)  # written alone: the batch stays small enough
            cache.pending = []
        pending = cache.pending
        n = len(pending) + len(inputs)
        base = len(cache.tokens)
        root = base + len(pending)
        self._check_room(root + int(inputs.depths.max()) + 1)
        everyone = tuple(range(n_seq))
        for s in range(1, n_seq):
            self._L.llama_memory_seq_cp(self._mem, 0, s, -1, -1)
        self._fill(
            pending + [int(t) for t in inputs.tokens],
            [base + i for i in range(len(pending))] + [root + int(d) for d in inputs.depths],
            [everyone] * len(pending) + [tuple(s) for s in seqs],
            [False] * len(pending) + [True] * len(inputs),
        )
        self._decode(n)
        cache.tokens.extend(pending)
        cache.pending = []
        cache.tree_tokens = inputs.tokens
        out = self._L.llama_get_logits(self._ctx)
        return torch.from_numpy(np.ctypeslib.as_array(out, shape=(len(inputs), self.n_vocab)))  # [n, vocab]

    def _check_room(self, length: int) -> None:
        if length > self.context:
            raise DecodingError(f"sequence of {length} tokens exceeds the llama.cpp context of {self.context}",
                                tokens=length, context=self.context)

    def _fill(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[Sequence[int]],
              logits: Sequence[bool]) -> None:
        b = self._batch
        for i, (token, pos, ids, out) in enumerate(zip(tokens, positions, seqs, logits)):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = len(ids)
            row = b.seq_id[i]
            for j, s in enumerate(ids):
                row[j] = s
            b.logits[i] = out
        b.n_tokens = len(tokens)

    def _decode(self, n: int) -> None:
        rc = self._L.llama_decode(self._ctx, self._batch)
        if rc != 0:
            self.owner = None  # the context's state is unknown now: rebuild on the next use
            raise DecodingError(f"llama_decode failed with code {rc} on a batch of {n} tokens", code=rc, tokens=n)


def _quiet_log(level: int, text: bytes, user_data: Any) -> None:
    """llama.cpp's log callback: silent (it would write every load and decode detail to stderr)."""


_QUIET: list[Any] = []


def _quiet_callback() -> Any:
    """The ctypes callback object for ``_quiet_log``, made once and kept alive for llama.cpp."""
    if not _QUIET:
        import llama_cpp as L

        _QUIET.append(L.llama_log_callback(_quiet_log))
    return _QUIET[0]
