"""scripts/gpu-check.sh and its helpers (issue 30; docs/gpu.md): the gpu marker's skip, the report,
staging a model in chunks, and the script itself on a machine without CUDA."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rest_lsp.bench import gpu_check
from rest_lsp.bench import gpu_stage
from rest_lsp.bench.humaneval import Run, summarize

REPO = Path(__file__).resolve().parents[2]
CUDA_STEPS = ("stage", "model_05b", "gpu_tests", "index_05b", "agreement_05b", "speed_05b", "model_15b",
              "index_15b", "speed_15b")


# --- the gpu marker ------------------------------------------------------------------------------

class FakeItem:
    """What the collection hook touches of a pytest item."""

    def __init__(self, *markers: str):
        self.markers = set(markers)
        self.added: list = []

    def get_closest_marker(self, name):
        return pytest.mark.skip.mark if name in self.markers else None

    def add_marker(self, marker):
        self.added.append(marker)


def test_gpu_tests_are_skipped_with_the_reason_when_cuda_is_missing(monkeypatch):
    from gpu_marker import skip_gpu_tests_without_cuda
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gpu, plain = FakeItem("gpu"), FakeItem("slow")
    skip_gpu_tests_without_cuda([gpu, plain])
    assert plain.added == []
    [marker] = gpu.added
    assert marker.mark.name == "skip"
    assert marker.mark.kwargs["reason"].startswith("needs CUDA: torch.cuda.is_available() is False")


def test_gpu_tests_run_where_cuda_is_available(monkeypatch):
    from gpu_marker import skip_gpu_tests_without_cuda
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = FakeItem("gpu")
    skip_gpu_tests_without_cuda([gpu])
    assert gpu.added == []


def test_the_hook_says_so_when_torch_cannot_be_imported(monkeypatch):
    from gpu_marker import skip_gpu_tests_without_cuda

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    plain = FakeItem()
    skip_gpu_tests_without_cuda([plain])  # no gpu test: torch is not even asked for
    assert plain.added == []
    gpu = FakeItem("gpu")
    skip_gpu_tests_without_cuda([gpu])
    assert gpu.added[0].mark.kwargs["reason"].startswith("needs CUDA: torch is not importable")


# --- the report ----------------------------------------------------------------------------------

def fake_bench(directory: Path, walls: dict[str, list[float]], same: dict[str, list[bool]] | None = None) -> Path:
    """A bench humaneval JSON record as `bench humaneval` writes it, from fake runs: each prompt
    yields 3 tokens in one step; ``same[method][i]`` False makes prompt i differ from greedy."""
    runs = {}
    for method, times in walls.items():
        runs[method] = []
        for i, wall in enumerate(times):
            differs = same is not None and not same.get(method, [True] * len(times))[i]
            tokens = (1, 2, 4) if differs else (1, 2, 3)
            runs[method].append(Run(method, i, tokens, steps=0 if method.startswith("hf_") else 1, wall_s=wall,
                                    forward_s=wall * 0.9, other_s=wall * 0.1))
    prompts = len(next(iter(walls.values())))
    record = {"command": "rest-lsp bench humaneval", "date": "2026-12-07 00:00:00 UTC", "seconds": 1.0,
              "machine": {"device": "cuda"}, "model": {"name": "qwen2.5-coder-0.5b", "dtype": "torch.bfloat16"},
              "datastore": "datastore X", "corpus_tokens": 100, "max_new_tokens": 128, "prompts": prompts,
              "methods": [s.to_dict() for s in summarize(runs)]}
    directory.mkdir(parents=True)
    (directory / "humaneval.json").write_text(json.dumps(record))
    return directory


def test_the_report_tabulates_each_run_and_checks_the_targets(tmp_path):
    speed = fake_bench(tmp_path / "speed", {"greedy": [1.0, 1.0], "hf_prompt_lookup": [0.5, 0.5],
                                            "default": [0.25, 0.25]})
    agreement = fake_bench(tmp_path / "agreement", {"greedy": [1.0] * 164, "default": [0.5] * 164},
                           same={"default": [True] * 163 + [False]})
    steps_file = tmp_path / "steps.jsonl"
    gpu_check.record_step(steps_file, "probe", "ok", rc=0, seconds=2.0, title="environment probe")
    gpu_check.record_step(steps_file, "agreement_05b", "ok", rc=0, seconds=100, bench_dir=str(agreement),
                          title="greedy agreement")
    gpu_check.record_step(steps_file, "speed_05b", "ok", rc=0, seconds=50, bench_dir=str(speed), title="speed")
    gpu_check.record_step(steps_file, "speed_15b", "timeout", rc=124, seconds=180, reason="timed out after 180s",
                          title="speed 1.5B")
    env = {"cuda_available": True, "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130",
           "transformers": "5.17.0", "python": "3.12.3", "memory_gib": 79.2, "capability": "9.0"}
    report = gpu_check.build_report(env, gpu_check.load_steps(steps_file))
    text = gpu_check.markdown(report)

    assert text.startswith("### GPU check: NVIDIA H100 80GB HBM3, torch 2.11.0+cu130, transformers 5.17.0")
    # default: 0.5 s against greedy's 2 s and prompt lookup's 1 s; 6 tokens in 2 steps
    assert "| 0.5B speed (2 prompts) | rest-lsp default | 3.00 | 12.0 | 4.00x / 4.00x | 2.00x | 2/2 | 250 / 250 |" in text
    assert "| 0.5B speed (2 prompts) | transformers prompt lookup (10) | — | 6.0 | 2.00x / 2.00x | 1.00x | 2/2 |" in text
    assert "| 0.5B agreement (164 prompts) | rest-lsp default |" in text and "| 163/164 |" in text
    assert "| REST (rest-lsp default) token-identical to greedy on all 164 HumanEval prompts, 0.5B | 163/164 prompts | **no** |" in text
    assert "| rest-lsp default >= 2.5x our greedy loop, 0.5B | 4.00x | yes |" in text
    assert "| rest-lsp default >= 1.5x transformers prompt lookup, 0.5B | 2.00x | yes |" in text
    assert "| rest-lsp default >= 2.5x our greedy loop, 1.5B | not measured | — |" in text
    # default's host work: 0.1 of 0.25 s in each of its 2 one-step prompts
    assert "| host work per step <= 0.3 ms (rest-lsp default), 0.5B | 25.000 ms | **no** |" in text
    assert "| speed 1.5B | timeout | 180 | timed out after 180s; exit 124 |" in text
    assert report["ok"] is False  # a timed-out step fails the check
    speed_step = report["steps"][2]
    assert speed_step["summary"]["methods"]["default"]["speedup_vs_prompt_lookup"] == 2.0
    assert speed_step["record"]["prompts"] == 2  # the full record travels in the JSON too


def test_agreement_on_a_subset_is_not_claimed_as_the_target(tmp_path):
    agreement = fake_bench(tmp_path / "agreement", {"greedy": [1.0] * 3, "default": [0.5] * 3})
    steps = [{"name": "agreement_05b", "title": "a", "status": "ok", "rc": 0, "seconds": 1.0, "reason": "",
              "bench_dir": str(agreement)}]
    [target] = gpu_check.build_report({}, steps)["targets"]
    assert target["measured"].startswith("3/3 prompts (a subset") and target["met"] is None


def test_a_report_without_any_benchmark_says_so(tmp_path):
    steps_file = tmp_path / "steps.jsonl"
    gpu_check.record_step(steps_file, "gpu_tests", "skipped", reason="no CUDA device: none here", title="tests marked gpu")
    report = gpu_check.build_report({"cuda_available": False}, gpu_check.load_steps(steps_file))
    text = gpu_check.markdown(report)
    assert report["device"] == "no CUDA device" and report["ok"] is True
    assert "No benchmark ran" in text
    assert "| tests marked gpu | skipped | 0 | no CUDA device: none here |" in text


def test_exit_codes_map_to_statuses():
    assert gpu_check.status_of(0) == "ok"
    assert gpu_check.status_of(124) == gpu_check.status_of(137) == "timeout"
    assert gpu_check.status_of(5) == "failed"
    assert gpu_check.status_of(5, skip_rcs=[5]) == "skipped"
    with pytest.raises(ValueError):
        gpu_check.record_step(Path("unused"), "x", "fine")


# --- staging a model in chunks -------------------------------------------------------------------

def fake_model(path: Path, size: int = 5000) -> Path:
    path.write_bytes(bytes((i * 7 + i // 251) % 256 for i in range(size)))
    return path


def test_split_collect_assemble_round_trip(tmp_path):
    source = fake_model(tmp_path / "model.gguf")
    stage, spool = tmp_path / "stage", tmp_path / "spool"
    manifest = gpu_stage.split(source, stage, "m", chunk_bytes=1200)
    assert [c["size"] for c in manifest["chunks"]] == [1200, 1200, 1200, 1200, 200]
    assert manifest["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()

    # the calls come one at a time: only the first two folders were carried so far
    carried = tmp_path / "device-tree"
    (carried / "m").mkdir(parents=True)
    for folder in ("01", "02"):
        (stage / "m" / folder).rename(carried / "m" / folder)
    gpu_stage.collect(carried, spool)
    assert gpu_stage.missing_chunks(spool, "m") == ["m.part03", "m.part04", "m.part05"]
    assert not (carried / "m" / "01" / "m.part01").exists()  # moved out of the working tree
    with pytest.raises(gpu_stage.StageError, match="3 of 5 chunks are missing"):
        gpu_stage.assemble(spool, "m", tmp_path / "models")

    gpu_stage.collect(stage, spool)  # the remaining calls
    joined = gpu_stage.assemble(spool, "m", tmp_path / "models")
    assert joined.read_bytes() == source.read_bytes()
    assert gpu_stage.assembled(spool, "m", tmp_path / "models") == joined


def test_a_corrupted_chunk_is_refused_and_left_in_place(tmp_path):
    source = fake_model(tmp_path / "model.gguf")
    stage, spool = tmp_path / "stage", tmp_path / "spool"
    gpu_stage.split(source, stage, "m", chunk_bytes=2000)
    chunk = stage / "m" / "02" / "m.part02"
    data = bytearray(chunk.read_bytes())
    data[10] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(gpu_stage.StageError, match=r"chunk m\.part02 of model\.gguf is corrupted"):
        gpu_stage.collect(stage, spool)
    assert chunk.is_file()
    assert not (tmp_path / "models" / "model.gguf").exists()


def test_a_corrupted_spool_chunk_fails_the_join(tmp_path):
    source = fake_model(tmp_path / "model.gguf")
    stage, spool = tmp_path / "stage", tmp_path / "spool"
    gpu_stage.split(source, stage, "m", chunk_bytes=2000)
    gpu_stage.collect(stage, spool)
    spooled = spool / "m" / "m.part03"
    spooled.write_bytes(b"x" * spooled.stat().st_size)  # same size, other bytes: only the hash sees it
    with pytest.raises(gpu_stage.StageError, match="corrupted in the spool"):
        gpu_stage.assemble(spool, "m", tmp_path / "models")
    assert list((tmp_path / "models").glob("*")) == []  # no partial file left behind


def test_the_scripts_stage_and_assemble(tmp_path):
    source = fake_model(tmp_path / "model.gguf", 3000)
    env = {**os.environ, "PYTHON": sys.executable, "GPU_STAGE_CHUNK_BYTES": "1000",
           "GPU_STAGE_SPOOL": str(tmp_path / "spool")}
    split = subprocess.run(["bash", "scripts/gpu-stage.sh", str(source), "--stage-dir", str(tmp_path / "stage")],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert split.returncode == 0, split.stderr
    assert "3 chunks of at most 1,000 bytes" in split.stdout and "call 3: carry" in split.stdout
    joined = subprocess.run(["bash", "scripts/gpu-assemble.sh", "--stage-dir", str(tmp_path / "stage"),
                             "--require-complete"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert joined.returncode == 0, joined.stderr
    assert (tmp_path / "spool" / "models" / "model.gguf").read_bytes() == source.read_bytes()
    assert "sha256 verified" in joined.stdout


def test_a_chunk_fits_one_device_call_beside_the_tree():
    wheels = 3 << 20
    chunk = gpu_stage.default_chunk_bytes(REPO, carried_with=wheels)
    assert 0 < chunk <= gpu_stage.MAX_CHUNK_BYTES
    assert gpu_stage.tree_bytes(REPO) + wheels + chunk <= gpu_stage.DEVICE_CALL_BYTES


# --- the script ----------------------------------------------------------------------------------

def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, "OUT_DIR": str(tmp_path / "out"),
            "GPU_CHECK_STAGE_DIR": str(tmp_path / "no-stage"), "GPU_STAGE_SPOOL": str(tmp_path / "spool"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"), **env}
    return subprocess.run(["bash", "scripts/gpu-check.sh"], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=600)


def test_without_cuda_the_script_skips_the_cuda_steps_and_still_reports(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would run its steps")
    done = run_check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no CUDA device: skipping tests marked gpu" in done.stdout
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert report["cuda_available"] is False and report["ok"] is True
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["probe"]["status"] == "ok"
    for name in CUDA_STEPS:
        assert steps[name]["status"] == "skipped", name
        assert steps[name]["reason"].startswith("no CUDA device: "), name
    table = (tmp_path / "out" / "gpu-check.md").read_text()
    assert "| step | status | seconds | note |" in table and "No benchmark ran" in table
    assert (tmp_path / "out" / "gpu-check.log").stat().st_size > 0


@pytest.mark.slow
def test_a_cpu_rehearsal_runs_every_benchmark_step(tmp_path):
    """GPU_CHECK_DEVICE=cpu runs the CUDA steps on the CPU with the embedded model: the commands,
    their arguments and the report's reading of their JSON are what runs on the device."""
    done = run_check(tmp_path, GPU_CHECK_DEVICE="cpu", REST_LSP_GPU_MODEL_05B="embedded", REST_LSP_GPU_MODEL_15B="",
                     GPU_CHECK_AGREEMENT_LIMIT="1", GPU_CHECK_SPEED_LIMIT="1", GPU_CHECK_MAX_NEW_TOKENS="4",
                     GPU_CHECK_BUILD_INDEX="0", GPU_CHECK_SKIP="gpu_tests", GPU_CHECK_THREADS="2")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    for name in ("model_05b", "agreement_05b", "speed_05b"):
        assert steps[name]["status"] == "ok", name
    assert set(steps["speed_05b"]["summary"]["methods"]) == {"greedy", "hf_greedy", "hf_prompt_lookup", "default"}
    assert steps["agreement_05b"]["summary"]["methods"]["default"]["prompts"] == 1
    assert steps["speed_15b"]["status"] == "skipped" and steps["speed_15b"]["reason"].startswith("no 1.5B model")
    assert steps["gpu_tests"]["reason"] == "GPU_CHECK_SKIP names gpu_tests"
    table = (tmp_path / "out" / "gpu-check.md").read_text()
    assert "| 0.5B speed (1 prompts) | rest-lsp default |" in table
