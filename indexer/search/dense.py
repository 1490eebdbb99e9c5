"""The dense tier (DReSD): nearest neighbours of the model's own hidden states, torch-free.

Every token position p of the indexed text stores the model's final-norm hidden state there
(which predicted token p + 1), reduced by a ``Projection`` (z-score per dimension, PCA to
``dims``, L2-normalised), and the tokens that follow it.  A query is the reduced hidden state of
the last accepted position; its neighbours' continuations are drafts.

Storage: an entry's id is its position in one token array (documents separated by ``SEP``), so
the continuation of entry p is ``tokens[p + 1 : p + 1 + span]`` cut at a separator: 2 bytes per
entry for the tokens instead of ``span`` tokens each.  The vectors live in a faiss index: exact
inner product (flat, 8-bit scalar-quantised) below ``IVF_MIN_ENTRIES`` entries, an inverted file
with 8-bit scalar quantisation above (64 bytes of code + the 8-byte id per entry).  Measured
choices are in ``docs/dense.md``.

One file, ``dense.msgpack``, written atomically (temp + fsync + rename): the format version,
the model identity, the projection, the document table, the serialised faiss index (ids = token
positions) and the token array (u16, u32 for vocabularies over 65,535), with a checksum of
each blob.  A reader sees the old file or the new one, never a mix.

Nothing here imports torch: the hidden states come from ``rest_lsp.drafting.dense``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import msgpack
import numpy as np

from indexer.storage import atomic
from indexer.errors import DatastoreError, IndexCorruptError, IndexVersionError, ModelMismatchError

FORMAT_VERSION = 1
FILE = "dense.msgpack"
#: below this many entries the index is flat (exact over 8-bit codes); above, an inverted file
IVF_MIN_ENTRIES = 20_000
#: inverted lists probed per query (recall@50 >= 0.95 at 1 M entries: docs/dense.md)
NPROBE = 16


@dataclass
class Projection:
    """z-score per dimension, then PCA to ``dims``, then L2 normalisation; fitted once per model."""

    mean: np.ndarray  # (hidden,) float32
    std: np.ndarray  # (hidden,) float32
    components: np.ndarray  # (hidden, dims) float32

    @classmethod
    def fit(cls, states: np.ndarray, dims: int = 64) -> "Projection":
        """Fit on a sample of hidden states (rows)."""
        x = np.asarray(states, dtype=np.float64)
        mean = x.mean(axis=0)
        std = x.std(axis=0) + 1e-6
        z = (x - mean) / std
        # principal axes: right singular vectors of the centred, scaled sample
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        dims = min(dims, vt.shape[0])
        return cls(mean.astype(np.float32), std.astype(np.float32), np.ascontiguousarray(vt[:dims].T, dtype=np.float32))

    @property
    def dims(self) -> int:
        return int(self.components.shape[1])

    def apply(self, states: np.ndarray) -> np.ndarray:
        """Reduce hidden states (n, hidden) -> (n, dims) float32, unit rows."""
        z = (np.asarray(states, dtype=np.float32) - self.mean) / self.std
        y = z @ self.components
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return np.ascontiguousarray(y / np.maximum(norms, 1e-12), dtype=np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tobytes(), "std": self.std.tobytes(),
                "components": self.components.tobytes(), "shape": list(self.components.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> "Projection":
        hidden, dims = d["shape"]
        return cls(np.frombuffer(d["mean"], np.float32).copy(), np.frombuffer(d["std"], np.float32).copy(),
                   np.frombuffer(d["components"], np.float32).reshape(hidden, dims).copy())


@dataclass(frozen=True)
class Neighbour:
    """One dense match: its score, the document it is in and the tokens after its position."""

    score: float
    path: str
    tokens: tuple[int, ...]


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # a dependency of the package; say it plainly if it is missing
        raise DatastoreError(f"the dense tier needs faiss-cpu: pip install faiss-cpu ({exc})") from exc
    return faiss


def ivf_lists(entries: int) -> int:
    """Inverted lists for ``entries`` vectors (0: a flat index): 4 sqrt(n), >= 40 points each."""
    if entries < IVF_MIN_ENTRIES:
        return 0
    return max(1, min(int(4 * np.sqrt(entries)), entries // 40))


def training_rows(entries: int) -> int:
    """Reduced vectors ``new_ann`` wants to train an index for ``entries`` entries."""
    return 40 * ivf_lists(entries) if ivf_lists(entries) else min(entries, 10_000)


def new_ann(sample: np.ndarray, entries: int | None = None, nprobe: int = NPROBE):
    """An empty faiss index trained on ``sample`` (unit rows (m, dims)) for about ``entries``
    entries (default: m): exact flat 8-bit below IVF_MIN_ENTRIES, IVF with 8-bit codes above."""
    faiss = _faiss()
    m, dims = sample.shape
    lists = ivf_lists(m if entries is None else entries)
    if not lists or m < lists:
        flat = faiss.IndexScalarQuantizer(dims, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        # the 8-bit range per dimension comes from the sample (unit rows: [-1, 1] without one)
        flat.train(sample if m else np.array([[-1.0] * dims, [1.0] * dims], dtype=np.float32))
        return faiss.IndexIDMap2(flat)
    quantizer = faiss.IndexFlatIP(dims)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dims, lists, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.train(sample[np.random.default_rng(0).permutation(m)[: 40 * lists]])
    index.nprobe = nprobe
    return index


@dataclass
class DenseIndex:
    """A searchable dense tier: faiss index, token array and document table (in memory)."""

    projection: Projection
    model_identity: str
    span: int
    ann: object
    tokens: np.ndarray  # (n,) int32, SEP between documents
    doc_paths: list[str] = field(default_factory=list)
    doc_starts: list[int] = field(default_factory=list)  # first position of each document
    doc_ends: list[int] = field(default_factory=list)  # one past its last token
    dead: set[int] = field(default_factory=set)  # documents replaced or removed
    path: Path | None = None  # the file it was loaded from or saved to
    info: dict = field(default_factory=dict)  # how it was built (tokens, seconds, ...): for stats

    SEP = -1

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def build(cls, docs: Sequence[tuple[str, np.ndarray, np.ndarray]], projection: Projection,
              model_identity: str, span: int = 20) -> "DenseIndex":
        """An index of documents given as (path, tokens (n,), hidden states (n, hidden)), all in
        memory (tests, small inputs; ``rest_lsp.drafting.dense.build_dense_index`` streams)."""
        vectors = [projection.apply(states) for _, _, states in docs if len(states)]
        sample = np.concatenate(vectors) if vectors else np.zeros((0, projection.dims), np.float32)
        index = cls(projection, model_identity, span, new_ann(sample), np.zeros(0, np.int32))
        for path, tokens, states in docs:
            index.add_doc(path, tokens, states)
        return index

    def add_doc(self, path: str, tokens: np.ndarray, states: np.ndarray, reduced: bool = False) -> None:
        """Append a document (replacing an earlier version of the same path); ``states``: its
        hidden states (n, hidden), or (n, dims) already reduced."""
        self.remove_doc(path)
        tokens = np.asarray(tokens, dtype=np.int32)
        start = len(self.tokens)
        self.tokens = np.concatenate([self.tokens, tokens, np.array([self.SEP], np.int32)])
        self.doc_paths.append(path)
        self.doc_starts.append(start)
        self.doc_ends.append(start + len(tokens))
        # the last position's next token is the separator: it has nothing to draft
        usable = max(len(tokens) - 1, 0)
        if usable:
            ids = np.arange(start, start + usable, dtype=np.int64)
            vectors = states[:usable] if reduced else self.projection.apply(states[:usable])
            self.ann.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove_doc(self, path: str) -> bool:
        """Drop every entry of ``path`` (its tokens stay, unreachable, until the next rebuild)."""
        faiss = _faiss()
        found = False
        for i, p in enumerate(self.doc_paths):
            if p == path and i not in self.dead:
                self.ann.remove_ids(faiss.IDSelectorRange(self.doc_starts[i], self.doc_ends[i]))
                self.dead.add(i)
                found = True
        return found

    # -- searching -----------------------------------------------------------------------------

    @property
    def entries(self) -> int:
        return int(self.ann.ntotal)

    def search(self, states: np.ndarray, k: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids (q, k) of the nearest entries of raw hidden states (q, hidden)."""
        return self.search_reduced(self.projection.apply(np.atleast_2d(states)), k)

    def search_reduced(self, queries: np.ndarray, k: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids (q, k) for reduced queries (q, dims); id -1 where fewer were found."""
        if self.entries == 0:
            q = queries.shape[0]
            return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
        return self.ann.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, self.entries))

    def windows(self, positions: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``length`` tokens after each position (k, length) and how many precede a separator (k,)."""
        pos = np.asarray(positions, dtype=np.int64)
        idx = np.minimum(pos[:, None] + 1 + np.arange(length), len(self.tokens) - 1)
        win = self.tokens[idx]
        stop = win < 0
        lengths = np.where(stop.any(axis=1), stop.argmax(axis=1), length)
        return win, lengths

    def path_of(self, position: int) -> str:
        i = int(np.searchsorted(np.asarray(self.doc_starts), position, side="right")) - 1
        return self.doc_paths[i] if i >= 0 else ""

    def neighbours(self, states: np.ndarray, k: int = 50) -> list[Neighbour]:
        """The k nearest entries of one hidden state, with their files and continuations."""
        scores, ids = self.search(states, k)
        found = ids[0] >= 0
        win, lengths = self.windows(ids[0][found], self.span)
        return [Neighbour(float(score), self.path_of(int(pos)), tuple(win[j, :lengths[j]].tolist()))
                for j, (score, pos) in enumerate(zip(scores[0][found], ids[0][found]))]

    # -- disk ----------------------------------------------------------------------------------

    def stats(self) -> dict:
        """Entries, bytes per entry and how it was built (for `index stats` and the status)."""
        live = sum(self.doc_ends[i] - self.doc_starts[i] for i in range(len(self.doc_paths)) if i not in self.dead)
        return {"entries": self.entries, "documents": len(self.doc_paths) - len(self.dead), "tokens": live,
                "bytes_per_entry": round(self.nbytes() / max(self.entries, 1), 1), **self.info}

    def nbytes(self) -> int:
        """Bytes of the serialised index (faiss index + tokens + manifest estimate)."""
        faiss = _faiss()
        return int(faiss.serialize_index(self.ann).nbytes + self._token_bytes().nbytes)

    def _token_bytes(self) -> np.ndarray:
        top = int(self.tokens.max()) if len(self.tokens) else 0
        dtype = np.dtype("<u2") if top < 0xFFFF else np.dtype("<u4")
        sep = np.iinfo(dtype).max
        return np.where(self.tokens < 0, sep, self.tokens).astype(dtype)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically to ``path`` (one file, replacing what is there); returns it."""
        faiss = _faiss()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        blobs = {"ann": faiss.serialize_index(self.ann).tobytes(), "tokens": self._token_bytes().tobytes()}
        body = {
            "format_version": FORMAT_VERSION, "model": self.model_identity, "span": self.span,
            "projection": self.projection.to_dict(), "token_dtype": self._token_bytes().dtype.str,
            "entries": self.entries, "paths": self.doc_paths, "starts": self.doc_starts,
            "ends": self.doc_ends, "dead": sorted(self.dead), "created": time.time(), "info": self.info,
            "checksums": {k: _digest(v) for k, v in blobs.items()}, **blobs,
        }
        atomic.write_file(path, msgpack.packb(body, use_bin_type=True))
        self.path = path
        return path

    @classmethod
    def open(cls, path: str | os.PathLike, model_identity: str | None = None) -> "DenseIndex":
        """Load a saved index; errors for another model, another format or a damaged file."""
        faiss = _faiss()
        path = Path(path)
        try:
            m = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
            blobs = {k: m[k] for k in ("ann", "tokens")}
            sums = m["checksums"]
        except FileNotFoundError as exc:
            raise IndexCorruptError(f"no dense index at {path}", path=str(path)) from exc
        except (OSError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise IndexCorruptError(f"dense index {path} cannot be read: {exc}", path=str(path)) from exc
        if m.get("format_version") != FORMAT_VERSION:
            raise IndexVersionError(f"dense index {path} has format {m.get('format_version')}, "
                                    f"expected {FORMAT_VERSION}", path=str(path),
                                    found=m.get("format_version"), expected=FORMAT_VERSION)
        if model_identity is not None and m["model"] != model_identity:
            raise ModelMismatchError(
                f"dense index {path} was built for model {m['model'][:12]}, not {model_identity[:12]}: "
                "rebuild it with `rest-lsp index dense`", path=str(path),
                found=m["model"], expected=model_identity)
        for k, data in blobs.items():
            if _digest(data) != sums.get(k):
                raise IndexCorruptError(f"dense index {path}: the {k} blob fails its checksum", path=str(path))
        ann = faiss.deserialize_index(np.frombuffer(blobs["ann"], dtype=np.uint8))
        if hasattr(ann, "nprobe"):
            ann.nprobe = NPROBE
        raw = np.frombuffer(blobs["tokens"], dtype=np.dtype(m["token_dtype"]))
        # widen first: NumPy 2 casts a Python -1 to the array's unsigned dtype (0xFFFF) in np.where
        tokens = raw.astype(np.int32)
        tokens[raw == np.iinfo(raw.dtype).max] = cls.SEP
        return cls(Projection.from_dict(m["projection"]), m["model"], int(m["span"]), ann, tokens,
                   list(m["paths"]), list(m["starts"]), list(m["ends"]), set(m["dead"]), path, m.get("info", {}))


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()
