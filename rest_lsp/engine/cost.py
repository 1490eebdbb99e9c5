"""Measuring c(k), the cost of one verification forward of k tree rows, on this device.

Measured through the real verification path (``verify_tree`` on a prefilled cache, then the rows
dropped again), a few repeats per size, the fastest kept (the least disturbed by anything else
the machine does); a curve with a size dearer than a larger one is measured again and not cached.
Results are cached per model, dtype, device (the accelerator's or CPU's model, not just "cuda:0"), thread count, padded row counts and
library versions, so a server start measures once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any, Sequence

from rest_lsp.engine import kv_cache
from rest_lsp.engine.budget import CostModel
from rest_lsp.engine.draft_tree import DraftTree
from rest_lsp.engine.forward import model_device, prefill, verify_tree
from rest_lsp.engine.tree_inputs import tree_inputs

log = logging.getLogger(__name__)

#: tree sizes measured at start-up (rows, the root included)
STARTUP_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


def chain_of(tokens: Sequence[int]) -> DraftTree:
    """A straight chain of ``tokens``, the first the root."""
    k = len(tokens)
    return DraftTree(tuple(int(t) for t in tokens), (-1,) + tuple(range(k - 1)), tuple(range(k)), tuple(range(k)),
                     (0.0,) * k)


def chain_tree(k: int, vocab_size: int) -> DraftTree:
    """A straight chain of k nodes (cost depends on the row count, not the shape)."""
    return chain_of([(7 * i + 3) % vocab_size for i in range(k)])


def _sync(device: Any) -> None:
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.synchronize(device)


def measure_cost(
    model: Any,
    sizes: Sequence[int] = STARTUP_SIZES,
    context_len: int = 256,
    repeats: int = 3,
) -> CostModel:
    """c(k) for each k in ``sizes``, verifying over a ``context_len``-token cache."""
    vocab = int(model.config.vocab_size)
    device = model_device(model)
    limit = getattr(model, "max_rows", None)  # llama.cpp verifies at most this many rows exactly
    if limit is not None:
        sizes = sorted({k for k in sizes if k <= limit} | {int(limit)})
    buckets = getattr(model, "row_buckets", None)
    if buckets:
        sizes = bucket_sizes(buckets)
    cache = kv_cache.new_cache(model)
    prefill(model, cache, [(11 * i + 5) % vocab for i in range(context_len)])
    verify_tree(model, cache, tree_inputs(chain_tree(min(4, max(sizes)), vocab)))  # warm-up
    kv_cache.crop(cache, context_len)
    seconds = []
    for k in sizes:
        inputs = tree_inputs(chain_tree(k, vocab))
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            logits = verify_tree(model, cache, inputs)
            logits.argmax(-1).cpu()  # the step reads its logits out too: part of c(k)
            _sync(device)  # the copy waits for the forward today; a readout that stays on the device would not
            times.append(time.perf_counter() - t0)
            kv_cache.crop(cache, context_len)
        seconds.append(min(times))  # the least disturbed run: others only add the machine's noise
    return CostModel(sizes=list(sizes), seconds=seconds)


def cpu_model(cpuinfo: str) -> str:
    """The "model name" line's value in the text of /proc/cpuinfo ("" without one)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """This machine's CPU model, e.g. "AMD EPYC 7R13 Processor" (read once)."""
    try:
        name = cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        name = ""
    # platform.processor() is often just the architecture ("x86_64"), yet better than nothing
    return name or platform.processor() or platform.machine()


def device_name(device: Any) -> str:
    """The hardware behind ``device``: the GPU's name and compute capability, else the CPU's model."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} sm_{major}{minor}"
    return cpu_name()


def bucket_sizes(buckets: Sequence[int]) -> list[int]:
    """The sizes that describe a forward padded to ``buckets``: each bucket and the row count just
    above it, so that c(k) interpolated between them is the step function it is (flat up to a
    bucket, a jump after it)."""
    b = sorted(int(x) for x in buckets)
    return sorted(set(b) | {x + 1 for x in b[:-1]})


def cost_key(model: Any, extra: str = "") -> str:
    """A short hash naming a model on a device (for the cost cache file)."""
    import torch
    import transformers

    device = model_device(model)
    p = next(iter(model.parameters()), None)  # a runner of its own may have none
    parts = [
        getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", ""),
        model.config.to_json_string(use_diff=False),
        str(getattr(p, "dtype", "")),
        str(device),
        # "cuda:0" is an A100 on one machine and an H100 on the next: their curves differ
        device_name(device),
        str(torch.get_num_threads()),
        torch.__version__,
        transformers.__version__,
        type(model).__name__,  # the packed forward and transformers' have different curves
        str(getattr(model, "packed", "")),
        # llama.cpp: its file, threads and row limit set the curve
        str(getattr(model, "gguf", "")), str(getattr(model, "threads", "")), str(getattr(model, "max_rows", "")),
        str(getattr(model, "repack", "")),
        # a static (graphed) forward pads verification to these row counts: c(k) moves in steps
        str(getattr(model, "row_buckets", "")),
        extra,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where measured cost curves are kept."""
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("rest-lsp")) / "cost"
    except ImportError:  # platformdirs is a dependency, but the engine must not need it
        return Path.home() / ".cache" / "rest-lsp" / "cost"


#: how far a measured c(k) may exceed a larger size's before the measurement is not believed
PLAUSIBLE_RATIO = 1.5


def plausible(cost: CostModel) -> bool:
    """Whether a measured curve is one a forward could have: no size dearer than ``PLAUSIBLE_RATIO``
    times a larger size (a busy machine makes a few points slow; a cached slow point stays, seen:
    c(1) = 1.70 s, c(2) = 1.26 s beside c(3) = 47 ms)."""
    s = cost.seconds
    return all(s[i] <= PLAUSIBLE_RATIO * min(s[i + 1:]) for i in range(len(s) - 1))


def cached_cost(model: Any, cache_dir: Path | None = None, **measure_kwargs: Any) -> CostModel:
    """c(k) from the cache when this model was measured on this device before, else measured."""
    path = (cache_dir or default_cache_dir()) / f"{cost_key(model)}.json"
    try:
        cached = CostModel.from_dict(json.loads(path.read_text()))
        if plausible(cached):
            return cached
        log.warning("the cached cost curve %s is implausible (%s): measuring again", path, cached.seconds)
    except (OSError, ValueError, KeyError):
        pass
    cost = measure_cost(model, **measure_kwargs)
    if not plausible(cost):  # the machine was busy: one more try before anything is kept
        cost = measure_cost(model, **measure_kwargs)
        if not plausible(cost):
            log.warning("c(k) measured twice, implausible both times (%s): used now, not cached", cost.seconds)
            return cost
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cost.to_dict()))
    except OSError as exc:  # a read-only home is no reason to fail
        log.warning("cannot cache the cost curve in %s: %s", path, exc)
    return cost
