"""An Ollama model (``ollama:qwen2.5-coder:0.5b``) found in the local Ollama store as a GGUF blob.

No Ollama server is asked or needed: the model's manifest is read from the store on disk and its
weights layer names the blob.  rest-lsp runs the weights itself (tree verification needs its own
forward), so the blob is then converted like any GGUF file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rest_lsp.errors import ModelError

#: the prefix that marks an Ollama model name in ``model.name``
PREFIX = "ollama:"
#: the media type of a manifest's weights layer
MODEL_LAYER = "application/vnd.ollama.image.model"
#: the registry a bare model name belongs to
DEFAULT_REGISTRY = "registry.ollama.ai"


@dataclass(frozen=True)
class OllamaBlob:
    """The GGUF blob of an Ollama model and its sha256 (from the manifest's digest)."""

    name: str
    path: Path
    sha256: str


def store_dirs() -> list[Path]:
    """Where Ollama keeps models: ``$OLLAMA_MODELS``, else the user's and the system service's."""
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    return [Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]


def manifest_path(store: Path, name: str) -> Path:
    """The manifest file of ``name`` ("model", "model:tag", "ns/model:tag", "host/ns/model:tag")."""
    model, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
    parts = model.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return store.joinpath("manifests", *parts, tag or "latest")


def resolve(name: str, stores: list[Path] | None = None) -> OllamaBlob:
    """The GGUF blob of the Ollama model ``name`` (with or without the ``ollama:`` prefix)."""
    bare = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if not bare:
        raise ModelError("an Ollama model name is needed after 'ollama:' (e.g. ollama:qwen2.5-coder:0.5b)",
                         name=name)
    stores = stores if stores is not None else store_dirs()
    tried = []
    for store in stores:
        manifest = manifest_path(store, bare)
        tried.append(str(manifest))
        if manifest.is_file():
            return _blob_of(bare, store, manifest)
    raise ModelError(
        f"Ollama model {bare!r} is not in the local Ollama store (looked for {', '.join(tried)}); "
        f"pull it with `ollama pull {bare}` or set OLLAMA_MODELS to the store's folder",
        name=bare, tried=tried,
    )


def _blob_of(name: str, store: Path, manifest: Path) -> OllamaBlob:
    """The weights blob a manifest names."""
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"cannot read Ollama manifest {manifest}: {exc}", path=str(manifest)) from exc
    digests = [layer.get("digest", "") for layer in layers if isinstance(layer, dict)
               and layer.get("mediaType") == MODEL_LAYER]
    if not digests or not digests[0].startswith("sha256:"):
        raise ModelError(f"Ollama manifest {manifest} names no GGUF weights layer ({MODEL_LAYER})",
                         path=str(manifest))
    sha256 = digests[0].split(":", 1)[1]
    blob = store / "blobs" / f"sha256-{sha256}"
    if not blob.is_file():
        raise ModelError(f"Ollama model {name!r}: its weights blob {blob} is missing; pull it again",
                         name=name, path=str(blob))
    return OllamaBlob(name=name, path=blob, sha256=sha256)
