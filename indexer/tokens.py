"""The tokenizer an index is built with: its identity, its separator and batched encoding.

Identity is the SHA-256 of the tokenizer.json content (of ``Tokenizer.to_str()`` for a tokenizer
object given without a file).  The separator put between documents is ``<|endoftext|>`` when the
vocabulary has it, else the eos token named in ``tokenizer_config.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer.errors import DatastoreError

#: the preferred document separator
SEPARATOR_TOKEN = "<|endoftext|>"
#: files / bytes handed to ``encode_batch`` at once (it spreads one batch over every core and
#: waits for its slowest file, so batches are large)
ENCODE_BATCH_FILES = 2048
ENCODE_BATCH_BYTES = 16_000_000


@dataclass
class IndexTokenizer:
    """A fast tokenizer plus what an index records about it."""

    tokenizer: object  # tokenizers.Tokenizer
    identity: str  # sha256 hex of tokenizer.json
    separator_id: int
    separator: str
    vocab_size: int
    source: str = ""  # path it was loaded from

    @property
    def token_dtype(self) -> np.dtype:
        """Big-endian u16 when every id fits, else big-endian u32 (bytes compare like ids)."""
        return np.dtype(">u2") if self.vocab_size <= 1 << 16 else np.dtype(">u4")

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text, without special tokens; list of (len,) int32 arrays."""
        if not texts:
            return []
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False) \
            if hasattr(self.tokenizer, "encode_batch_fast") \
            else self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (special tokens kept visible)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def portable(self) -> dict:
        """What another process (a Ray worker on another machine) needs to load this tokenizer:
        the tokenizer.json bytes its identity hashes, and the separator (see ``from_portable``)."""
        source = Path(self.source) if self.source and self.source != "<object>" else None
        raw = source.read_bytes() if source is not None and source.is_file() else b""
        if hashlib.sha256(raw).hexdigest() != self.identity:  # loaded from an object, or changed since
            raw = self.tokenizer.to_str().encode("utf-8")
        return {"json": raw, "identity": self.identity, "separator": self.separator, "source": self.source}


def from_portable(spec: dict) -> IndexTokenizer:
    """The tokenizer ``IndexTokenizer.portable`` described; TokenizerMismatchError when its bytes
    are not the tokenizer whose identity the spec names."""
    from tokenizers import Tokenizer

    from indexer.errors import TokenizerMismatchError

    raw = spec["json"]
    identity = hashlib.sha256(raw).hexdigest()
    if identity != spec["identity"]:
        raise TokenizerMismatchError(f"tokenizer bytes hash to {identity[:12]}, not {spec['identity'][:12]}",
                                     found=identity, expected=spec["identity"])
    tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
    return _describe(tokenizer, identity, None, spec.get("source") or "<portable>", spec["separator"] or None)


def load_tokenizer(path: str | os.PathLike | None) -> IndexTokenizer:
    """Load a tokenizer.json, or the one in a model directory (``DatastoreError`` for None: the
    indexer knows no default model)."""
    from tokenizers import Tokenizer

    file = _tokenizer_file(path)
    try:
        raw = file.read_bytes()
        tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
    except (OSError, ValueError, Exception) as exc:  # tokenizers raises plain Exception
        raise DatastoreError(f"cannot load tokenizer {file}: {exc}", path=str(file)) from exc
    identity = hashlib.sha256(raw).hexdigest()
    return _describe(tokenizer, identity, file.parent, str(file))


def from_tokenizer(tokenizer: object, eos_token: str | None = None) -> IndexTokenizer:
    """Wrap an already loaded ``tokenizers.Tokenizer``; identity hashes its serialization."""
    raw = tokenizer.to_str().encode("utf-8")
    info = _describe(tokenizer, hashlib.sha256(raw).hexdigest(), None, "<object>", eos_token)
    return info


def coerce_tokenizer(tokenizer: "IndexTokenizer | str | os.PathLike | object | None") -> IndexTokenizer:
    """An IndexTokenizer from whatever a caller holds (wrapper, path, tokenizers object, None)."""
    if isinstance(tokenizer, IndexTokenizer):
        return tokenizer
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        return load_tokenizer(tokenizer)
    if hasattr(tokenizer, "to_str") and hasattr(tokenizer, "encode_batch"):
        return from_tokenizer(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)  # a transformers fast tokenizer
    source = Path(str(getattr(tokenizer, "name_or_path", "") or "")) / "tokenizer.json"
    if backend is not None and source.is_file():
        return load_tokenizer(source)  # hash the file, as the index build did
    if backend is not None:
        return from_tokenizer(backend, getattr(tokenizer, "eos_token", None))
    raise DatastoreError(f"unsupported tokenizer object {type(tokenizer).__name__}",
                         tokenizer_type=type(tokenizer).__name__)


def _tokenizer_file(path: str | os.PathLike | None) -> Path:
    """The tokenizer.json a path names (the file itself or a model directory holding it)."""
    if path is None:  # the indexer knows no model: the caller names the tokenizer
        raise DatastoreError("no tokenizer given: name a tokenizer.json or a model folder holding one")
    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise DatastoreError(f"no tokenizer.json at {p}", path=str(p))
    return p


def _eos_from_config(model_dir: Path | None) -> str | None:
    """The eos token named in tokenizer_config.json / special_tokens_map.json, if any."""
    if model_dir is None:
        return None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            data = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        eos = data.get("eos_token")
        if isinstance(eos, dict):
            eos = eos.get("content")
        if isinstance(eos, str) and eos:
            return eos
    return None


def _describe(tokenizer, identity: str, model_dir: Path | None, source: str,
              eos_token: str | None = None) -> IndexTokenizer:
    """Find the separator and vocabulary size of a loaded tokenizer."""
    separator = SEPARATOR_TOKEN
    sep_id = tokenizer.token_to_id(separator)
    if sep_id is None:
        separator = eos_token or _eos_from_config(model_dir) or ""
        sep_id = tokenizer.token_to_id(separator) if separator else None
    if sep_id is None:
        raise DatastoreError(
            f"tokenizer {source} has no {SEPARATOR_TOKEN} and no eos token to separate documents",
            source=source)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    return IndexTokenizer(tokenizer, identity, int(sep_id), separator, int(vocab_size), source)
