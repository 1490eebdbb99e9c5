"""A GGUF file turned into a Hugging Face model folder once, then loaded from the user cache.

The torch forwards verify draft trees over the weights themselves, so for them a quantized GGUF
file is dequantized (by transformers' GGUF reader) to float32 safetensors.  The llama.cpp forward
reads the file itself and needs only the tokenizer and the config: its folder holds those alone
(``weights=False``: seconds and a few MB instead of a minute and 2.5 GB for the 0.5B).  Folders
are keyed by the file's sha256: the second start loads in seconds, and another file never
reuses one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from rest_lsp.errors import ModelError

#: (done, total, message)
Progress = Callable[[int, int, str], None]
#: written last into a converted folder: a folder without it is an interrupted conversion
COMPLETE = "rest-lsp-converted.json"
#: the first bytes of every GGUF file
MAGIC = b"GGUF"


def is_gguf(path: Path) -> bool:
    """Whether ``path`` is a file that starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def converted_dir(cache: Path, sha256: str, weights: bool = True) -> Path:
    """The folder the GGUF file with this sha256 converts to (with its weights, or without)."""
    return cache / (f"gguf-{sha256[:32]}" if weights else f"gguf-{sha256[:32]}-tokenizer")


def is_converted(folder: Path) -> bool:
    """Whether a conversion into ``folder`` finished."""
    return (folder / COMPLETE).is_file()


def tokenizer_folder(path: Path, cache: Path, sha256: str) -> Path:
    """A folder with the tokenizer and config of a GGUF file (no weights): the full conversion's
    when it exists, else one written once from the file's metadata."""
    full = converted_dir(cache, sha256)
    if is_converted(full):
        return full
    folder = converted_dir(cache, sha256, weights=False)
    if is_converted(folder):
        return folder
    if not is_gguf(path):
        raise ModelError(f"{path} is not a GGUF file (no GGUF magic bytes)", path=str(path))
    started = time.perf_counter()

    def write(partial: Path) -> dict[str, Any]:
        _save_tokenizer(path, partial)
        return {"gguf": str(path), "sha256": sha256, "weights": False,
                "seconds": round(time.perf_counter() - started, 1)}

    _write_once(folder, cache, write)
    return folder


def _write_once(folder: Path, cache: Path, write: Callable[[Path], dict[str, Any]]) -> None:
    """Fill ``folder`` through a temporary sibling renamed when done (``write`` fills the
    temporary folder and returns the record written last as ``COMPLETE``), so an interrupted
    write leaves no half folder behind."""
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{folder.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        record = write(partial)
        (partial / COMPLETE).write_text(json.dumps(record, indent=2) + "\n")
        if not is_converted(folder):  # another process may have finished the same file meanwhile: keep its
            if folder.exists():  # an interrupted write's leftovers
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn transformers' failures to read a GGUF file into ``ModelError``."""
    try:
        yield
    except ImportError as exc:  # gguf or accelerate missing
        raise ModelError(f"cannot read GGUF files: {exc}; install them with: pip install gguf accelerate",
                         path=str(path)) from exc
    except Exception as exc:  # transformers raises ValueError, KeyError, RuntimeError, ...
        raise ModelError(f"cannot read GGUF file {path}: {exc}", path=str(path)) from exc


def _save_tokenizer(path: Path, folder: Path) -> None:
    """Write the tokenizer, config and generation config that transformers reads from a GGUF file."""
    with _reading(path):
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(str(folder))
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(str(folder))
        GenerationConfig.from_model_config(config).save_pretrained(str(folder))


def file_sha256(path: Path, cache: Path, progress: Progress | None = None) -> str:
    """The sha256 of a GGUF file, remembered by path, size and mtime so that it is read once."""
    from rest_lsp.models.parts import sha256_of

    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_path = cache / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    digest = sha256_of(path, progress, f"hashing {path.name}")
    memo[key] = digest
    cache.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_name(f"hashes.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo, indent=1))
    os.replace(tmp, memo_path)
    return digest


def convert(path: Path, cache: Path, sha256: str, progress: Progress | None = None,
            log: Callable[[str], None] | None = None) -> Path:
    """The model folder of the GGUF file ``path`` (whose sha256 is given), converting it once.

    Conversion writes into a temporary folder and renames it, so an interrupted one leaves no
    half folder behind; ``ModelError`` when transformers cannot read the file.
    """
    folder = converted_dir(cache, sha256)
    if is_converted(folder):
        return folder
    if not is_gguf(path):
        raise ModelError(f"{path} is not a GGUF file (no GGUF magic bytes)", path=str(path))
    say = log or (lambda message: None)
    say(f"rest-lsp: converting {path.name} to float32 weights in {folder} (once; about a minute "
        "for a 0.5B model on 2 cores)")
    if progress is not None:
        progress(0, 0, f"converting {path.name} (once)")
    started = time.perf_counter()

    def write(partial: Path) -> dict[str, Any]:
        model, tokenizer = _read_gguf(path)
        _save(model, tokenizer, partial)
        return {"gguf": str(path), "sha256": sha256, "seconds": round(time.perf_counter() - started, 1),
                "parameters": sum(p.numel() for p in model.parameters())}

    _write_once(folder, cache, write)
    say(f"rest-lsp: converted {path.name} in {time.perf_counter() - started:.0f} s")
    return folder


def _read_gguf(path: Path) -> tuple[Any, Any]:
    """(model in float32, tokenizer) read from a GGUF file by transformers."""
    import torch

    with _reading(path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model, tokenizer


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save a dequantized model as an ordinary safetensors model folder."""
    # transformers marks a model read from GGUF as quantized and refuses to save it; its
    # weights are plain float32 tensors now, so the marks go
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
