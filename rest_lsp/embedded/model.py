"""The embedded default model shipped in ``rest_lsp/embedded``: where it lives and what it is.

Only the standard library is imported here (reading JSON and safetensors headers), so that the
CLI, the indexer and tests can describe the model without loading torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from rest_lsp.errors import ModelError

#: the directory holding the embedded model (Hugging Face format) and its model card
EMBEDDED_DIR = Path(__file__).resolve().parent
#: what the training script records about the shipped weights (corpus, settings, held-out files)
TRAINING_RECORD = "training.json"
#: the special tokens of the embedded tokenizer, at these ids
SPECIAL_TOKENS: dict[str, int] = {
    "<|endoftext|>": 0,
    "<|fim_prefix|>": 1,
    "<|fim_middle|>": 2,
    "<|fim_suffix|>": 3,
    "<|pad|>": 4,
}


def tokenizer_path() -> Path:
    """The embedded tokenizer's ``tokenizer.json``."""
    return EMBEDDED_DIR / "tokenizer.json"


def has_weights(directory: Path = EMBEDDED_DIR) -> bool:
    """Whether a model directory holds safetensors weights."""
    return any(directory.glob("*.safetensors"))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's object; ``ModelError`` naming the file when missing or invalid."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}", path=str(path)) from exc


def training_record(directory: Path = EMBEDDED_DIR) -> dict[str, Any]:
    """The training record shipped with a model directory (empty when there is none)."""
    path = directory / TRAINING_RECORD
    return read_json(path) if path.is_file() else {}


def safetensors_summary(path: Path) -> dict[str, Any]:
    """Parameter count and dtypes of a safetensors file, read from its header only."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelError(f"cannot read safetensors header of {path}: {exc}", path=str(path)) from exc
    count, dtypes = 0, set()
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in entry["shape"]:
            n *= dim
        count += n
        dtypes.add(entry["dtype"])
    return {"parameters": count, "stored_dtypes": sorted(dtypes), "file_bytes": path.stat().st_size}


def directory_bytes(directory: Path) -> int:
    """Total size of the files directly in a directory."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def describe_embedded(directory: Path = EMBEDDED_DIR) -> dict[str, Any]:
    """What the embedded model is, from its files alone (no torch): shape, size, provenance."""
    if not has_weights(directory):
        raise ModelError(f"no embedded model weights in {directory}", path=str(directory))
    config = read_json(directory / "config.json")
    record = training_record(directory)
    weights = safetensors_summary(directory / "model.safetensors")
    return {
        "architecture": (config.get("architectures") or ["?"])[0],
        "layers": config.get("num_hidden_layers"),
        "hidden_size": config.get("hidden_size"),
        "attention_heads": config.get("num_attention_heads"),
        "kv_heads": config.get("num_key_value_heads"),
        "vocab_size": config.get("vocab_size"),
        "context": record.get("settings", {}).get("seq_len"),
        "max_position_embeddings": config.get("max_position_embeddings"),
        **weights,
        "directory_bytes": directory_bytes(directory),
        "trained_on": record.get("corpus", {}).get("sources"),
        "train_tokens": record.get("train_tokens"),
        "train_seconds": record.get("train_seconds"),
        "held_out_loss": record.get("final_val_loss"),
        "model_card": str(directory / "MODEL_CARD.md"),
    }
