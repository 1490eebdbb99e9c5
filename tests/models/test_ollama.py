"""Ollama models (``rest_lsp.models.ollama``): a name resolved through a fake local store's manifest
to its GGUF blob, and the clear errors when it cannot be."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rest_lsp.errors import ModelError
from rest_lsp.models import gguf_file, ollama, resolve


# ----- ollama ---------------------------------------------------------------------------------
def make_store(root: Path, name: str = "library/qwen2.5-coder", tag: str = "0.5b",
               blob: bytes | None = b"GGUF fake weights", with_model_layer: bool = True) -> tuple[Path, str]:
    """A fake Ollama store holding one model; returns (store, the weights blob's sha256)."""
    data = blob if blob is not None else b"GGUF absent"
    sha = hashlib.sha256(data).hexdigest()
    layers = [{"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64, "size": 10}]
    if with_model_layer:
        layers.append({"mediaType": ollama.MODEL_LAYER, "digest": f"sha256:{sha}", "size": len(data)})
    layers.append({"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:" + "2" * 64, "size": 5})
    manifest = root / "manifests" / ollama.DEFAULT_REGISTRY / name / tag
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": layers}))
    (root / "blobs").mkdir(exist_ok=True)
    if blob is not None:
        (root / "blobs" / f"sha256-{sha}").write_bytes(data)
    return root, sha


def test_ollama_resolves_the_weights_blob(tmp_path):
    store, sha = make_store(tmp_path / "store")
    blob = ollama.resolve("ollama:qwen2.5-coder:0.5b", stores=[tmp_path / "elsewhere", store])
    assert blob.path == store / "blobs" / f"sha256-{sha}"
    assert blob.sha256 == sha
    assert blob.name == "qwen2.5-coder:0.5b"
    assert ollama.resolve("qwen2.5-coder:0.5b", stores=[store]).sha256 == sha  # prefix optional


def test_ollama_bare_name_means_latest(tmp_path):
    store, sha = make_store(tmp_path / "store", tag="latest")
    assert ollama.manifest_path(store, "qwen2.5-coder") == \
        store / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5-coder" / "latest"
    assert ollama.resolve("ollama:qwen2.5-coder", stores=[store]).sha256 == sha
    with pytest.raises(ModelError):
        ollama.resolve("ollama:qwen2.5-coder:0.5b", stores=[store])  # only "latest" is there


def test_ollama_namespaced_name(tmp_path):
    store, sha = make_store(tmp_path / "store", name="someone/coder", tag="q4")
    blob = ollama.resolve("ollama:someone/coder:q4", stores=[store])
    assert blob.sha256 == sha
    assert ollama.manifest_path(store, "host.example:5000/team/m") == \
        store / "manifests" / "host.example:5000" / "team" / "m" / "latest"


def test_ollama_models_env_is_the_store(tmp_path, monkeypatch):
    store, sha = make_store(tmp_path / "store")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    assert ollama.store_dirs() == [store]
    assert ollama.resolve("ollama:qwen2.5-coder:0.5b").sha256 == sha
    monkeypatch.delenv("OLLAMA_MODELS")
    assert ollama.store_dirs()[0] == Path.home() / ".ollama" / "models"


def test_ollama_missing_model_says_pull(tmp_path):
    store, _ = make_store(tmp_path / "store")
    with pytest.raises(ModelError) as info:
        ollama.resolve("ollama:qwen2.5-coder:7b", stores=[store])
    assert "ollama pull qwen2.5-coder:7b" in str(info.value)
    assert str(store / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5-coder" / "7b") in str(info.value)
    with pytest.raises(ModelError):
        ollama.resolve("ollama:", stores=[store])


def test_ollama_manifest_without_model_layer(tmp_path):
    store, _ = make_store(tmp_path / "store", with_model_layer=False)
    with pytest.raises(ModelError) as info:
        ollama.resolve("ollama:qwen2.5-coder:0.5b", stores=[store])
    assert ollama.MODEL_LAYER in str(info.value)


def test_ollama_missing_blob(tmp_path):
    store, sha = make_store(tmp_path / "store", blob=None)
    with pytest.raises(ModelError) as info:
        ollama.resolve("ollama:qwen2.5-coder:0.5b", stores=[store])
    assert f"sha256-{sha}" in str(info.value)


def test_resolve_ollama_reuses_a_converted_folder(tmp_path, monkeypatch):
    store, sha = make_store(tmp_path / "store")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    cache = tmp_path / "cache"
    folder = gguf_file.converted_dir(cache, sha)
    folder.mkdir(parents=True)
    (folder / gguf_file.COMPLETE).write_text("{}")
    resolved = resolve.resolve("ollama:qwen2.5-coder:0.5b", cache=cache)
    assert (resolved.kind, resolved.folder, resolved.sha256) == ("ollama", str(folder), sha)
    assert resolved.gguf == str(store / "blobs" / f"sha256-{sha}")
