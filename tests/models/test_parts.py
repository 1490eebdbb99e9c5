"""Packaged models' parts (``rest_lsp.models.parts``): found without importing them, assembled in
order into the cache, checked by sha256, refused when corrupt or missing.  Fake distributions in
``tmp_path``; no model is loaded (no torch)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from rest_lsp.errors import ModelError
from rest_lsp.models import parts
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
