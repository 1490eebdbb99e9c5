"""Dense drafts (DReSD): the model's hidden states as retrieval keys, and the dense drafter.

The torch side of the dense tier (``indexer.search.dense`` stores and searches, torch-free):
``hidden_states_of`` embeds token sequences with the model's own final-norm hidden states,
``build_dense_index`` fits the projection and builds the index, and ``DenseDrafter`` turns the
verification pass's hidden state of the last accepted position (free: the forward computed it)
into draft chains, keeping only neighbours whose next stored token is the token just generated.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rest_lsp.engine.drafter import Candidate, Drafter

#: hidden states sampled to fit the projection
FIT_SAMPLE = 50_000
#: values of each tensor a model without weight files is named by (``tensors_identity``)
IDENTITY_SAMPLE = 1024
#: the remembered digests of model folders' weight files, in the models cache
IDENTITIES_FILE = "weight-identities.json"


def model_identity(model: Any, source: str | Path | None = None, cache: Path | None = None) -> str:
    """sha256 naming the weights: of the safetensors files in the folder ``source`` (read once,
    then remembered in ``cache``), else of the tensors' layout and a sample of their values."""
    files = sorted(Path(source).glob("*.safetensors")) if source and Path(source).is_dir() else []
    if files:
        return weight_files_identity(files, cache)
    return tensors_identity(model)


def weight_files_identity(files: Sequence[Path], cache: Path | None = None) -> str:
    """sha256 of the files' names and bytes, remembered by their folder, names, sizes and times.

    Hashing gigabytes of weights at every workspace open would delay every start; a file rewritten
    changes its size or time, so the remembered digest stays the files' own.
    """
    from rest_lsp.models.resolve import models_cache

    memo_path = (cache or models_cache()) / IDENTITIES_FILE
    folder = str(files[0].parent.resolve())
    stamp = [f"{f.name}|{f.stat().st_size}|{f.stat().st_mtime_ns}" for f in files]
    memo = read_identities(memo_path)
    known = memo.get(folder)
    if isinstance(known, dict) and known.get("files") == stamp:
        return str(known["sha256"])
    digest = hash_weight_files(files)
    # one entry per folder that still exists: temporary model folders do not pile up
    memo = {k: v for k, v in memo.items() if Path(k).is_dir()}
    memo[folder] = {"files": stamp, "sha256": digest}
    write_identities(memo_path, memo)
    return digest


def read_identities(path: Path) -> dict[str, Any]:
    """The remembered weight digests (folder -> {"files", "sha256"}); empty when unreadable."""
    import json

    try:
        memo = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def write_identities(path: Path, memo: dict[str, Any]) -> None:
    """Save the remembered weight digests (atomically; a read-only cache keeps none)."""
    import json
    import os

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # hashed again at the next start: the same digest, only slower


def hash_weight_files(files: Sequence[Path]) -> str:
    """sha256 of each file's name then bytes, in order (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def tensors_identity(model: Any) -> str:
    """sha256 of a model's tensors (names, shapes, dtypes) and of a strided sample of each one's
    values, taken where the tensor is: no host copy of the weights (a hub model's, on a GPU).

    Two models of one architecture with other weights (another training, a fine-tune) differ in
    nearly every value, so their samples differ; the sample's raw bytes are the same on any device.
    """
    h = hashlib.sha256()
    hf = getattr(model, "hf", model)  # a PackedLlama keeps the model it packs
    for name, tensor in sorted(hf.state_dict().items()):
        h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        h.update(value_sample(tensor))
    return h.hexdigest()


def value_sample(tensor: Any) -> bytes:
    """The raw bytes of about ``IDENTITY_SAMPLE`` evenly strided values of ``tensor`` and of its
    last value, gathered on the tensor's device and copied to the host alone."""
    import torch

    flat = tensor.detach().reshape(-1)  # a view: parameters are contiguous
    if flat.numel() == 0:
        return b""
    step = -(-flat.numel() // IDENTITY_SAMPLE)
    picked = torch.cat([flat[::step], flat[-1:]])
    return picked.cpu().view(torch.uint8).numpy().tobytes()


def hidden_states_of(model: Any, token_ids: Sequence[int], guard: Any = None) -> np.ndarray:
    """Final-norm hidden states (n, hidden) float32 of one token sequence (windows of 256)."""
    from rest_lsp.engine.forward import hidden_states

    if not len(token_ids):
        return np.zeros((0, 0), np.float32)
    return hidden_states(model, token_ids, guard=guard).float().cpu().numpy()


def build_dense_index(model: Any, identity: str, docs: Sequence[tuple[str, Sequence[int]]], *,
                      dims: int = 64, span: int = 20,
                      progress: Callable[[int, int], None] | None = None, guard: Any = None) -> Any:
    """Embed every (path, token ids) document and index it; ``progress(tokens_done, docs_done)``.

    ``guard``: a lock held around each 256-token window's forward (the engine's, when a server
    builds while it completes: a completion then waits for one window at most).

    Streaming, so memory stays bounded whatever the workspace's size: the raw states of the
    first documents (up to ``FIT_SAMPLE`` rows) fit the projection, the reduced vectors of the
    first documents (up to what the faiss index trains on) train it, and every later document is
    embedded, reduced and added one at a time.  (So the projection and the lists are fitted on
    the first files in walk order, not on a sample of all: the price of one pass.)
    """
    from indexer.search.dense import DenseIndex, Projection, new_ann, training_rows

    docs = [(path, np.asarray(tokens, dtype=np.int64)) for path, tokens in docs if len(tokens) >= 2]
    if not docs:
        raise ValueError("no document of two tokens or more to embed")
    entries = sum(len(t) - 1 for _, t in docs)
    want = min(training_rows(entries), entries)
    pending: list[tuple[str, np.ndarray, np.ndarray]] = []  # embedded, not yet in the index
    projection, index, done, buffered = None, None, 0, 0
    for i, (path, tokens) in enumerate(docs):
        states = hidden_states_of(model, tokens.tolist(), guard=guard)
        done += len(tokens)
        if index is None:
            pending.append((path, tokens, states))
            buffered += len(states)
            if projection is None and (buffered >= min(FIT_SAMPLE, entries) or i == len(docs) - 1):
                raw = np.concatenate([s for _, _, s in pending])
                projection = Projection.fit(raw[np.random.default_rng(0).permutation(len(raw))[:FIT_SAMPLE]], dims)
                pending = [(p, t, projection.apply(s)) for p, t, s in pending]
            elif projection is not None:
                pending[-1] = (path, tokens, projection.apply(states))
            if projection is not None and (buffered >= want or i == len(docs) - 1):
                sample = np.concatenate([s for _, _, s in pending])
                index = DenseIndex(projection, identity, span, new_ann(sample, entries), np.zeros(0, np.int32))
                for p, t, s in pending:
                    index.add_doc(p, t, s, reduced=True)
                pending = []
        else:
            index.add_doc(path, tokens, states)
        if progress is not None:
            progress(done, i + 1)
    return index


class DenseDrafter(Drafter):
    """Draft chains from the dense index's nearest neighbours of the model's own hidden state.

    The engine hands over (``observe_hidden``) the final-norm hidden state of the last accepted
    position, which predicted the token just generated (now the root).  Neighbours whose next
    stored token is not that root are dropped; the rest give the tokens after it, weighted by
    their similarity.  Nothing is drafted before the first verification of a request.
    """

    wants_hidden = True

    def __init__(self, index: Any, neighbours: int = 50, span: int | None = None,
                 source: str = "dense") -> None:
        self.index = index
        self.neighbours = neighbours
        self.span = span
        self.source = source
        self._query: np.ndarray | None = None
        self._context_len = -1
        self.search_s = 0.0
        self.searches = 0

    def observe_hidden(self, state: Any, context_len: int) -> None:
        self._query = state.float().cpu().numpy()[None] if hasattr(state, "cpu") else np.asarray(state)[None]
        self._context_len = context_len

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        if self._query is None or len(context_ids) != self._context_len:
            return []  # no state for this position (first step of a request)
        t0 = time.perf_counter()
        scores, ids = self.index.search(self._query, self.neighbours)
        self.search_s += time.perf_counter() - t0
        self.searches += 1
        root = int(context_ids[-1])
        span = (self.span or self.index.span) + 1
        ok = ids[0] >= 0
        win, lengths = self.index.windows(ids[0][ok], span)  # (k, span): the stored next tokens
        keep = np.flatnonzero((win[:, 0] == root) & (lengths >= 2))  # DReSD: first token = the root
        found: dict[tuple[int, ...], float] = {}
        for i, score in zip(keep.tolist(), scores[0][ok][keep].tolist()):
            key = tuple(win[i, 1:lengths[i]].tolist())
            found[key] = found.get(key, 0.0) + max(score, 0.0) + 1e-3
        return [Candidate(tokens, weight, self.source, 1) for tokens, weight in found.items()]


# -- the workspace's dense tier ----------------------------------------------------------------

def dense_path(workspace: str | Path, index_config: Any) -> Path:
    """Where a workspace's dense index lives: beside its sparse index directory, in the cache."""
    from indexer.workspace_index import workspace_dir

    d = workspace_dir(workspace, index_config)
    return d.parent / f"{d.name}.dense.msgpack"


def history_path(workspace: str | Path | None, index_config: Any) -> Path:
    """Where the history source of a workspace (or of no workspace) is persisted."""
    from indexer.workspace_index import cache_root, workspace_dir

    if workspace is None and not index_config.index_dir:
        return cache_root() / "no-workspace.history.msgpack"
    d = workspace_dir(workspace or "", index_config)
    return d.parent / f"{d.name}.history.msgpack"


def workspace_documents(workspace: str | Path, config: Any, tokenizer: Any) -> list[tuple[str, list[int]]]:
    """(relative path, token ids) of every file the sparse index takes (the same skip rules:
    no secrets, no ignored, binary or oversized files)."""
    from indexer.building import sources

    root = Path(workspace).resolve()
    rules = sources.Rules.from_config(config.index)
    docs = []
    for f in sources.walk(root, rules):
        try:
            text = Path(f.path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # vanished since the walk: the next refresh sees it
        # verbose=False: a whole file may pass model_max_length; it is embedded in windows, so
        # transformers' "indexing errors" warning would only alarm the user
        ids = tokenizer.encode(text, add_special_tokens=False, verbose=False)
        docs.append((sources.relpath(f.path, str(root)), ids))
    return docs


def build_workspace_dense(workspace: str | Path, config: Any, loaded: Any,
                          progress: Callable[[int, int, str], None] | None = None, guard: Any = None) -> Any:
    """Embed a workspace and save its dense index (atomically) at ``dense_path``; returns it.

    ``guard``: see ``build_dense_index``.
    """
    docs = workspace_documents(workspace, config, loaded.tokenizer)
    total = sum(len(ids) for _, ids in docs)
    t0 = time.perf_counter()

    def step(done: int, files: int) -> None:
        if progress is not None:
            progress(done, total, f"embedding {files}/{len(docs)} files")

    index = build_dense_index(loaded.runner or loaded.model, model_identity(loaded.model, loaded.source), docs,
                              span=config.retrieval.span * 2, progress=step, guard=guard)
    seconds = time.perf_counter() - t0
    index.info = {"build_s": round(seconds, 2), "embed_tokens_per_s": round(total / max(seconds, 1e-9), 1)}
    index.save(dense_path(workspace, config.index))
    return index


def open_workspace_dense(workspace: str | Path, config: Any, loaded: Any) -> tuple[Any, str]:
    """(the workspace's dense index or None, a line saying what was opened or why not)."""
    from indexer.search.dense import DenseIndex
    from rest_lsp.errors import DatastoreError

    path = dense_path(workspace, config.index)
    if config.retrieval.dense == "off":
        return None, "dense drafts off (retrieval.dense)"
    if getattr(loaded.runner, "own_attention", False):
        # dense queries are the model's hidden states, which llama.cpp's forward does not give
        return None, (f"dense drafts off: the {loaded.forward} forward gives no hidden states "
                      "(model.forward = packed brings them back)")
    if not path.exists():
        if config.retrieval.dense == "on":
            return None, f"no dense index yet ({path}): building it in the background"
        return None, f"no dense index ({path}; build one with `rest-lsp index dense`, or set retrieval.dense = \"on\")"
    try:
        index = DenseIndex.open(path, model_identity(loaded.model, loaded.source))
    except DatastoreError as exc:
        return None, f"dense index not used: {exc}"
    return index, f"dense index {path} ({index.entries} entries)"


class DenseRefresher:
    """Re-embeds changed workspace files in the background and swaps their dense entries.

    One daemon thread takes paths from a queue.  The model is used one window (256 tokens, as
    when the index was built) at a time under the engine's lock, so a completion waits for at
    most one such forward (tens of ms for the embedded model), never for a whole file; the entries of a file are
    replaced at once, under the same lock, so the dense drafter (which searches while the engine
    holds it) never sees half a file.  The index is saved (atomically) after each batch.
    """

    def __init__(self, index: Any, model: Any, tokenizer: Any, root: str | Path, lock: Any, save_to: Path | None,
                 log: Callable[[str], None] | None = None) -> None:
        import queue
        import threading

        self.index, self.model, self.tokenizer = index, model, tokenizer
        self.root = Path(root).resolve()
        self.lock = lock
        self.save_to = save_to
        self.log = log or (lambda message: None)
        self.refreshed = 0
        self.idle = threading.Event()
        self.idle.set()
        self._queue: Any = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="rest-lsp-dense-refresh", daemon=True)
        self._thread.start()

    def notify(self, paths: Sequence[str]) -> None:
        """Queue changed (or deleted) files; returns at once."""
        self.idle.clear()
        for p in paths:
            self._queue.put(str(p))

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            if path is None:
                return
            batch = {path}
            while not self._queue.empty():
                more = self._queue.get()
                if more is None:
                    self._queue.put(None)
                    break
                batch.add(more)
            for p in sorted(batch):
                try:
                    self._refresh(Path(p))
                except Exception as exc:  # a refresh must never kill the daemon
                    self.log(f"rest-lsp: dense refresh of {p} failed: {exc}")
            if self.save_to is not None:
                with self.lock:
                    self.index.save(self.save_to)
            if self._queue.empty():
                self.idle.set()

    def _refresh(self, path: Path) -> None:
        rel = str(path.resolve().relative_to(self.root)) if path.is_absolute() else str(path)
        try:
            text = (self.root / rel).read_text(encoding="utf-8", errors="replace")
        except (OSError, ValueError):
            with self.lock:
                self.index.remove_doc(rel)  # deleted (or unreadable): its entries go
            return
        ids = self.tokenizer.encode(text, add_special_tokens=False, verbose=False)  # windowed, as above
        states = hidden_states_of(self.model, ids, guard=self.lock)  # the build's windows
        with self.lock:
            self.index.add_doc(rel, np.asarray(ids), states)
        self.refreshed += 1
