"""``model.name`` resolved to a local model folder, with the reason that model was chosen.

Accepted names: "" (the default: the packaged Qwen2.5-Coder-0.5B when its parts are installed,
else the embedded model), "embedded", a packaged model's name (``catalog.PACKAGED``), a GGUF
file, ``ollama:NAME[:TAG]``, a model folder, or a Hugging Face hub name (left to transformers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rest_lsp.embedded.model import EMBEDDED_DIR
from rest_lsp.errors import ModelError
from rest_lsp.models import catalog, gguf_file, ollama, parts

#: (done, total, message)
Progress = Callable[[int, int, str], None]
#: names the embedded 10 M model
EMBEDDED = "embedded"
#: overrides what an empty model.name means (the test suite sets it to "embedded")
DEFAULT_ENV = "REST_LSP_DEFAULT_MODEL"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's folder is, what it is, and why it is the one in use."""

    #: what transformers loads: a local folder, or a hub name
    folder: str
    #: the model's name as users give it ("qwen2.5-coder-0.5b", "embedded", a path, ...)
    name: str
    #: "embedded", "packaged", "gguf", "ollama", "folder" or "hub"
    kind: str
    #: one sentence: why this model
    why: str
    #: the GGUF file it was converted from, and that file's sha256 ("" when none)
    gguf: str = ""
    sha256: str = ""


def models_cache() -> Path:
    """Where assembled and converted models live (the user cache directory)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("rest-lsp")) / "models"


def default_name() -> tuple[str, str]:
    """(name, why) of the model an empty ``model.name`` means, without loading anything."""
    override = os.environ.get(DEFAULT_ENV, "").strip()
    if override:
        return override, f"model.name is empty and {DEFAULT_ENV}={override}"
    model = catalog.PACKAGED[catalog.DEFAULT_PACKAGED]
    missing = parts.missing_parts(model)
    if not missing:
        return model.name, f"model.name is empty: the default, the packaged {model.name}, is installed"
    return EMBEDDED, (
        f"model.name is empty and the default model {model.name} is not installed "
        f"({len(missing)} of {len(model.distributions)} parts missing), so the embedded 10 M model is "
        f"used, which cannot write real code; install the default with: {model.install_command()}"
    )


def resolve(name: str, progress: Progress | None = None, log: Callable[[str], None] | None = None,
            cache: Path | None = None, weights: bool = True) -> ResolvedModel:
    """The local folder of the model ``name`` (assembling and converting it the first time).

    ``weights=False``: a GGUF model's folder needs only its tokenizer and config (the llama.cpp
    forward reads the file itself), which is written in seconds instead of converting the weights.
    """
    cache = cache or models_cache()

    def folder_of(path: Path, sha256: str) -> Path:
        if weights:
            return gguf_file.convert(path, cache, sha256, progress, log)
        return gguf_file.tokenizer_folder(path, cache, sha256)

    why = ""
    if not name.strip():
        name, why = default_name()
    name = name.strip()
    if name == EMBEDDED:
        return ResolvedModel(str(EMBEDDED_DIR), EMBEDDED, "embedded", why or "model.name = embedded")
    if name in catalog.PACKAGED:
        model = catalog.PACKAGED[name]
        path = parts.assemble(model, cache, progress)
        folder = folder_of(path, model.sha256)
        return ResolvedModel(str(folder), name, "packaged", why or f"model.name = {name} (packaged)",
                             gguf=str(path), sha256=model.sha256)
    if name.startswith(ollama.PREFIX):
        blob = ollama.resolve(name)
        folder = folder_of(blob.path, blob.sha256)
        return ResolvedModel(str(folder), name, "ollama", why or f"model.name = {name} (Ollama store)",
                             gguf=str(blob.path), sha256=blob.sha256)
    path = Path(name).expanduser()
    if path.is_file():
        if not gguf_file.is_gguf(path):
            raise ModelError(f"model.name {name!r} is a file but not a GGUF file; give a GGUF file, a model "
                             "folder, a packaged model name or ollama:NAME", name=name)
        sha256 = gguf_file.file_sha256(path, cache, progress)
        folder = folder_of(path, sha256)
        return ResolvedModel(str(folder), str(path), "gguf", why or f"model.name = {name} (GGUF file)",
                             gguf=str(path.resolve()), sha256=sha256)
    if path.is_dir():
        return ResolvedModel(str(path), name, "folder", why or f"model.name = {name} (model folder)")
    if name.endswith(".gguf"):
        raise ModelError(f"GGUF file {name!r} does not exist", name=name)
    return ResolvedModel(name, name, "hub", why or f"model.name = {name} (Hugging Face hub name)")
