"""The dense index's model key: the weight files' sha256 read once per version of the files, else
a sample of the tensors taken where they are; different weights, different key."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from engine_testing import tiny_model
from rest_lsp.drafting import dense
from rest_lsp.drafting.dense import model_identity


def saved_model(folder, seed: int):
    """A tiny model's folder (config and model.safetensors)."""
    tiny_model(seed=seed).save_pretrained(folder, safe_serialization=True)
    return folder


def files_sha256(folder) -> str:
    """The key dense indexes were built with: sha256 of each safetensors file's name then bytes."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_tensor_identity_is_stable_and_follows_the_weights():
    model = tiny_model(seed=0)
    first = model_identity(model)
    assert first == model_identity(model) == model_identity(tiny_model(seed=0))
    assert first != model_identity(tiny_model(seed=1))


def test_a_changed_value_or_dtype_changes_the_tensor_identity():
    model = tiny_model(seed=0)
    before = model_identity(model)
    with torch.no_grad():
        model.lm_head.weight.view(-1)[-1] += 1.0  # every tensor's last value is in its sample
    changed = model_identity(model)
    assert changed != before
    assert model_identity(model.to(torch.bfloat16)) != changed


def test_tensor_identity_copies_only_samples_to_the_host(monkeypatch):
    model = tiny_model(seed=0)
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    sample_bytes = (dense.IDENTITY_SAMPLE + 1) * 4  # fp32 values
    assert largest > 4 * sample_bytes  # else the test would not tell a sample from a tensor
    copied: list[int] = []

    def recording(method):
        original = getattr(torch.Tensor, method)

        def record(self, *args, **kwargs):
            copied.append(self.numel() * self.element_size())
            return original(self, *args, **kwargs)

        return record

    for method in ("cpu", "float", "to", "numpy"):
        monkeypatch.setattr(torch.Tensor, method, recording(method))
    model_identity(model)
    assert copied and max(copied) <= sample_bytes


@pytest.mark.gpu
def test_tensor_identity_is_the_same_on_the_gpu():
    model = tiny_model(seed=0)
    on_cpu = model_identity(model)
    assert model_identity(model.to("cuda")) == on_cpu


def test_weight_files_identity_keeps_its_meaning_and_follows_the_files(tmp_path):
    one, two = saved_model(tmp_path / "one", 0), saved_model(tmp_path / "two", 1)
    cache = tmp_path / "cache"
    first = model_identity(None, one, cache=cache)
    assert first == files_sha256(one)  # indexes built before stay valid
    assert model_identity(None, two, cache=cache) == files_sha256(two) != first


def test_weight_files_are_read_once_then_remembered(tmp_path):
    folder, cache = saved_model(tmp_path / "model", 0), tmp_path / "cache"
    first = model_identity(None, folder, cache=cache)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # other bytes, same size and time: a remembered digest does not read them
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert model_identity(None, folder, cache=cache) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rewritten: read again
    assert model_identity(None, folder, cache=cache) == files_sha256(folder) != first


def test_an_unwritable_cache_still_gives_the_identity(tmp_path):
    folder = saved_model(tmp_path / "model", 0)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    assert model_identity(None, folder, cache=blocked / "cache") == files_sha256(folder)
