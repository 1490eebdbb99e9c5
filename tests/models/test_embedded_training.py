"""The training script: corpus split, FIM windows, schedule, and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training import corpus, train_embedded
from training.train_embedded import EOS_ID, FIM_MIDDLE_ID, FIM_PREFIX_ID, FIM_SUFFIX_ID, Settings


def test_split_is_stable_and_about_five_percent():
    names = [f"pkg/mod{i}.py" for i in range(4000)]
    held = [corpus.is_held_out("stdlib", n) for n in names]
    assert held == [corpus.is_held_out("stdlib", n) for n in names]
    assert 0.03 < sum(held) / len(held) < 0.07


def test_corpus_excludes_tests_and_idle():
    files = corpus.list_files(packages={})
    rels = [f.relpath for f in files]
    assert "argparse.py" in rels
    assert not any(r.startswith(("test/", "idlelib/")) or "/tests/" in r for r in rels)


def test_fim_permute_keeps_length_and_tokens():
    rng = np.random.default_rng(0)
    window = np.arange(10, 74, dtype=np.int64)
    out = train_embedded.fim_permute(window, rng).tolist()
    assert len(out) == len(window)
    assert out[0] == FIM_PREFIX_ID and out[-1] == EOS_ID
    assert {FIM_SUFFIX_ID, FIM_MIDDLE_ID} <= set(out)
    assert sorted(t for t in out if t >= 10) == list(range(10, 70))


def test_learning_rate_warms_up_then_decays():
    s = Settings(out="x", lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert train_embedded.learning_rate(s, 0, 0.0) == pytest.approx(1e-4)
    assert train_embedded.learning_rate(s, 10, 0.0) == pytest.approx(1e-3)
    assert train_embedded.learning_rate(s, 500, 1.0) == pytest.approx(1e-4)


@pytest.mark.slow
def test_tiny_run_trains_saves_and_exports(tmp_path):
    from transformers import AutoModelForCausalLM

    from training.export_embedded import export

    out = tmp_path / "run"
    argv = ["--out", str(out), "--max-steps", "3", "--max-files", "6", "--hidden", "32", "--layers", "1",
            "--heads", "2", "--kv-heads", "1", "--intermediate", "64", "--seq-len", "64", "--batch", "2",
            "--warmup-steps", "1", "--log-every", "1", "--threads", "1"]
    summary = train_embedded.train(train_embedded.parse_args(argv))
    assert summary["steps"] == 3 and summary["train_tokens"] == 3 * 2 * 64
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["event"] == "step"] == [1, 2, 3]
    export(out, tmp_path / "pkg")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "pkg"))
    assert model.config.hidden_size == 32
    record = json.loads((tmp_path / "pkg" / "training.json").read_text())
    assert record["val_files"] and record["steps"] == 3


def test_model_card_is_written_from_records(tmp_path):
    from training import model_card

    run = tmp_path / "run"
    run.mkdir()
    settings = vars(train_embedded.parse_args(["--out", str(run)]))
    settings.pop("export")
    log = [{"event": "start"}] + [
        {"event": "step", "step": i, "tokens": 4096 * i, "loss": 9.0 - i / 10} for i in range(1, 30)
    ] + [{"event": "final_eval", "tokens": 4096 * 29, "val_loss": 6.5}]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    summary = {"settings": settings, "params": 10, "steps": 29, "epochs": 0.5, "train_tokens": 4096 * 29,
               "train_seconds": 60.0, "tokens_per_second": 2000.0, "final_val_loss": 6.5,
               "hardware": {"cpu_count": 2, "processor": "x86_64", "threads": 2, "torch": "2"}}
    corpus_record = {"python": "3.11.7", "sources": {"stdlib": "PSF-2.0"}, "files": {"train": 9, "val": 1},
                     "bytes": {"train": 9000, "val": 1000}, "tokens": {"train": 2000, "val": 200}, "sha256": "ab"}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "corpus.json").write_text(json.dumps(corpus_record))
    result = {"model": {"device": "cpu", "dtype": "float32"}, "threads": 2,
              "held_out": {"nats_per_token": 1.5, "nats_per_byte": 0.4, "bits_per_byte": 0.58,
                           "tokens_scored": 200, "files": 1, "window": 1024},
              "speed": [{"prompt_tokens": 128, "decode_tokens_per_s": 50.0, "prefill_seconds": 0.01}]}
    (tmp_path / "eval.json").write_text(json.dumps(result))
    dest = tmp_path / "pkg"
    dest.mkdir()
    model_card.main([str(run), str(tmp_path / "eval.json"), str(dest), "--eval-command", "rest-lsp model eval"])
    card = (dest / "MODEL_CARD.md").read_text()
    assert "1.5000 nats/token" in card and "`rest-lsp model eval`" in card and "PSF-2.0" in card
    assert (dest / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
