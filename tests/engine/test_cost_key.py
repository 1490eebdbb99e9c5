"""The cost cache key names the hardware, not just "cuda:0", and the padded row counts."""

from __future__ import annotations

import torch

from rest_lsp.engine import cost as cost_module
from rest_lsp.engine.cost import cost_key, cpu_model, cpu_name, device_name


class FakeConfig:
    _name_or_path = "fake/model"

    def to_json_string(self, use_diff: bool = False) -> str:
        return '{"vocab_size": 64}'


class FakeRunner:
    """A runner doing its own attention, with no torch parameters (llama.cpp's shape)."""

    own_attention = True

    def __init__(self, device: str = "cpu", **attributes) -> None:
        self.device = torch.device(device)
        self.config = FakeConfig()
        self.gguf, self.threads, self.max_rows = "model.gguf", 2, 3
        self.__dict__.update(attributes)

    def parameters(self):
        return iter(())


def test_the_key_names_the_device_model(monkeypatch):
    monkeypatch.setattr(cost_module, "device_name", lambda device: "Chip A")
    a, a_again = cost_key(FakeRunner()), cost_key(FakeRunner())
    monkeypatch.setattr(cost_module, "device_name", lambda device: "Chip B")
    b = cost_key(FakeRunner())
    assert a == a_again and a != b


def test_two_gpus_behind_cuda_0_get_two_keys(monkeypatch):
    asked = []

    def gpu(name, capability):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: asked.append(device) or name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    a100 = cost_key(FakeRunner("cuda:0"))
    assert device_name(torch.device("cuda:0")) == "NVIDIA A100-SXM4-80GB sm_80"
    gpu("NVIDIA H100 80GB HBM3", (9, 0))
    h100 = cost_key(FakeRunner("cuda:0"))
    assert device_name(torch.device("cuda:0")) == "NVIDIA H100 80GB HBM3 sm_90"
    assert a100 != h100 and a100 != cost_key(FakeRunner("cpu"))
    assert asked and all(d == torch.device("cuda:0") for d in asked)


def test_the_key_names_the_row_buckets():
    plain = cost_key(FakeRunner())
    padded = cost_key(FakeRunner(row_buckets=(1, 8, 64)))
    assert plain != padded != cost_key(FakeRunner(row_buckets=(1, 16, 64)))
    assert padded == cost_key(FakeRunner(row_buckets=(1, 8, 64)))


def test_cpu_model_is_read_from_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7R13 Processor\nmodel\t\t: 1\n"
    assert cpu_model(text) == "AMD EPYC 7R13 Processor"
    assert cpu_model("processor\t: 0\nCPU part\t: 0xd0c\n") == ""  # an Arm board: the fallback
    assert cpu_name() and cpu_name() is cpu_name()  # read once
    assert device_name(torch.device("cpu")) == cpu_name()


def test_an_implausible_curve_is_measured_again_and_never_cached(tmp_path, monkeypatch):
    """A busy machine once cached c(1) = 1.70 s and c(2) = 1.26 s beside c(3) = 47 ms, and every
    later start believed it."""
    import json

    from rest_lsp.engine import cost as cost_mod
    from rest_lsp.engine.budget import CostModel

    monkeypatch.setattr(cost_mod, "cost_key", lambda model: "k")
    busy = CostModel([1, 2, 3], [1.70, 1.26, 0.047])
    calm = CostModel([1, 2, 3], [0.020, 0.037, 0.047])
    assert not cost_mod.plausible(busy) and cost_mod.plausible(calm)
    assert cost_mod.plausible(CostModel([1, 2, 4], [0.105, 0.122, 0.089]))  # within 1.5x: oneDNN's real dip

    measured = [busy, busy]
    monkeypatch.setattr(cost_mod, "measure_cost", lambda model, **kw: measured.pop(0))
    assert cost_mod.cached_cost(object(), cache_dir=tmp_path).seconds == busy.seconds
    assert not (tmp_path / "k.json").exists()  # twice implausible: used, not kept

    measured[:] = [busy, calm]
    assert cost_mod.cached_cost(object(), cache_dir=tmp_path).seconds == calm.seconds
    assert json.loads((tmp_path / "k.json").read_text())["seconds"] == calm.seconds

    (tmp_path / "k.json").write_text(json.dumps(busy.to_dict()))  # a bad curve cached by an older version
    measured[:] = [calm]
    assert cost_mod.cached_cost(object(), cache_dir=tmp_path).seconds == calm.seconds
