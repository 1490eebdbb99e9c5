"""Train the embedded default model: a small Llama causal LM on permissively licensed Python.

Reproducible: seeded, the corpus recorded (file counts, bytes, a hash of every file and the
held-out list), every setting and every step's loss written to ``<out>/log.jsonl`` and
``<out>/summary.json``.  Training stops by itself after ``--minutes`` of wall clock (or
``--max-steps``) and writes a Hugging Face model directory to ``<out>/final``; ``--export DIR``
also copies it (fp16 weights + tokenizer) to DIR, e.g. ``rest_lsp/embedded``.

Usage (the shipped model):  python -m training.train_embedded --out training/out/run1 --minutes 80
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import corpus
from training.model_files import EOS_ID, FIM_MIDDLE_ID, FIM_PREFIX_ID, FIM_SUFFIX_ID, PAD_ID, TOKENIZER_FILES, save_model  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TOKENIZER_DIR = REPO / "rest_lsp" / "embedded"


@dataclass
class Settings:
    """Every setting of a training run (recorded in summary.json)."""

    out: str
    tokenizer_dir: str = str(DEFAULT_TOKENIZER_DIR)
    minutes: float = 60.0
    max_steps: int = 0  # 0: stop on the clock only
    seed: int = 1234
    threads: int = 2
    adaptive_threads: bool = True  # drop to 1 thread while other jobs use a core
    bf16: bool = True
    # model shape
    hidden: int = 256
    layers: int = 8
    heads: int = 8
    kv_heads: int = 4
    intermediate: int = 704
    max_positions: int = 2048
    rope_theta: float = 10_000.0
    # optimisation
    seq_len: int = 1024
    batch: int = 4
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    fim_rate: float = 0.25
    # bookkeeping
    eval_every_minutes: float = 10.0
    eval_windows: int = 48
    checkpoint_every_minutes: float = 10.0
    log_every: int = 10
    # data (smoke tests shrink it)
    max_files: int = 0
    stdlib_only: bool = False


def parse_args(argv: list[str] | None = None) -> Settings:
    """Settings from the command line; every field of ``Settings`` is a flag."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        elif f.default is dataclasses.MISSING:
            p.add_argument(flag, required=True)
        else:
            p.add_argument(flag, type=type(f.default), default=f.default)
    p.add_argument("--export", type=Path, default=None, help="copy the final model (fp16) here")
    ns = p.parse_args(argv)
    export = ns.__dict__.pop("export")
    settings = Settings(**vars(ns))
    settings.export = export  # type: ignore[attr-defined]
    return settings


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tokenize_corpus(s: Settings) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Training documents (uint16 ids, each ending in EOS), the validation stream and the manifest."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(s.tokenizer_dir) / "tokenizer.json"))
    packages = {} if s.stdlib_only else None
    files = corpus.list_files(packages=packages)
    if s.max_files:
        train = [f for f in files if not f.held_out][: s.max_files]
        val = [f for f in files if f.held_out][: max(1, s.max_files // 10)]
        files = train + val
    man = corpus.manifest(files)

    def encode(fs: list[corpus.SourceFile]) -> list[np.ndarray]:
        encs = tok.encode_batch([corpus.read_text(f) for f in fs], add_special_tokens=False)
        return [np.array(e.ids + [EOS_ID], dtype=np.uint16) for e in encs]

    train_docs = encode([f for f in files if not f.held_out])
    val_docs = encode([f for f in files if f.held_out])
    man["tokens"] = {"train": int(sum(len(d) for d in train_docs)), "val": int(sum(len(d) for d in val_docs))}
    return train_docs, np.concatenate(val_docs), man


def fim_permute(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window rearranged prefix-suffix-middle with sentinels (same length as the window).

    The middle ends with EOS so that the model learns where a filled-in middle stops: where it
    meets the suffix.
    """
    content = window[: len(window) - 4]
    i, j = sorted(rng.integers(0, len(content) + 1, size=2))
    pre, mid, suf = content[:i], content[i:j], content[j:]
    return np.concatenate(
        [[FIM_PREFIX_ID], pre, [FIM_SUFFIX_ID], suf, [FIM_MIDDLE_ID], mid, [EOS_ID]]
    ).astype(np.int64)


def batches(docs: list[np.ndarray], s: Settings, rng: np.random.Generator):
    """Endless (epoch, batch) pairs: documents shuffled each epoch, packed into windows."""
    import torch

    epoch = 0
    while True:
        order = rng.permutation(len(docs))
        stream = np.concatenate([docs[k] for k in order]).astype(np.int64)
        n = len(stream) // s.seq_len
        windows = stream[: n * s.seq_len].reshape(n, s.seq_len)
        windows = windows[rng.permutation(n)]
        for b in range(0, n - s.batch + 1, s.batch):
            rows = [
                fim_permute(w, rng) if rng.random() < s.fim_rate else w for w in windows[b : b + s.batch]
            ]
            yield epoch, torch.from_numpy(np.stack(rows))
        epoch += 1


def build_model(s: Settings):
    """A freshly initialised Llama causal LM of the configured shape."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=16_384,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        max_position_embeddings=s.max_positions,
        rope_theta=s.rope_theta,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    from tokenizers import Tokenizer

    config.vocab_size = Tokenizer.from_file(str(Path(s.tokenizer_dir) / "tokenizer.json")).get_vocab_size()
    model = LlamaForCausalLM(config)
    model.config._attn_implementation = "sdpa"
    return model


def learning_rate(s: Settings, step: int, progress: float) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio`` over the run's progress (0..1)."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * cos)


def evaluate(model, val: np.ndarray, s: Settings, max_windows: int) -> dict:
    """Mean cross-entropy per token (nats) over up to ``max_windows`` validation windows, left to right."""
    import torch

    n = min(max_windows, len(val) // s.seq_len) if max_windows else len(val) // s.seq_len
    windows = torch.from_numpy(val[: n * s.seq_len].astype(np.int64).reshape(n, s.seq_len))
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
        for b in range(0, n, s.batch):
            x = windows[b : b + s.batch]
            logits = model(input_ids=x).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum"
            )
            total += loss.item()
            count += x[:, 1:].numel()
    model.train()
    return {"val_loss": total / max(count, 1), "val_tokens": count}


def hardware() -> dict:
    """A description of the machine the run trains on."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def make_optimizer(model, s: Settings):
    """AdamW with weight decay on matrices only (not on norms)."""
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s.lr, betas=(0.9, 0.95), eps=1e-8,
    )


def train_step(model, opt, x, lr: float, s: Settings) -> tuple[float, float]:
    """One optimiser step on a batch of windows; (loss, gradient norm before clipping)."""
    import torch

    for group in opt.param_groups:
        group["lr"] = lr
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
        loss = model(input_ids=x, labels=x).loss
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip).item()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item(), grad_norm


class ThreadGovernor:
    """Picks 1 or 2 torch threads from how busy the other processes kept the CPU.

    The cores are shared: when another job holds a core, two OpenMP threads wait on each other
    at every barrier and training runs several times slower than with one thread.
    """

    def __init__(self, max_threads: int, busy_cores: float = 0.5) -> None:
        self.max_threads = max_threads
        self.busy_cores = busy_cores
        self.last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        """(wall seconds, all processes' CPU seconds, this process's CPU seconds)."""
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        return time.time(), busy / ticks, sum(os.times()[:2])

    def choose(self) -> int:
        """The thread count for the next interval."""
        now = self._sample()
        wall = now[0] - self.last[0]
        others = ((now[1] - self.last[1]) - (now[2] - self.last[2])) / max(wall, 1e-9)
        self.last = now
        return 1 if others > self.busy_cores else self.max_threads


class Log:
    """Append-only JSON-lines log of the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("a", buffering=1)

    def write(self, **record) -> None:
        self.file.write(json.dumps(record) + "\n")


def train(s: Settings) -> dict:
    """Run training to the step or time budget; return the summary (also written to disk)."""
    import torch

    started = time.time()
    torch.set_num_threads(s.threads)
    seed_everything(s.seed)
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "log.jsonl")
    train_docs, val, man = tokenize_corpus(s)
    (out / "corpus.json").write_text(json.dumps(man, indent=2) + "\n")
    model = build_model(s)
    n_params = sum(p.numel() for p in model.parameters())
    log.write(event="start", settings=dataclasses.asdict(s), params=n_params, corpus_tokens=man["tokens"],
              tokenize_seconds=round(time.time() - started, 1))
    opt = make_optimizer(model, s)
    rng = np.random.default_rng(s.seed)
    budget = s.minutes * 60
    t0 = time.time()
    last_eval = last_ckpt = t0
    step, tokens, epoch = 0, 0, 0
    governor = ThreadGovernor(s.threads) if s.adaptive_threads and os.path.exists("/proc/stat") else None
    threads = s.threads
    model.train()
    for epoch, x in batches(train_docs, s, rng):
        if governor is not None and step % 5 == 0:
            threads = governor.choose()
            torch.set_num_threads(threads)
        elapsed = time.time() - t0
        progress = max(elapsed / budget, step / s.max_steps if s.max_steps else 0.0)
        if progress >= 1.0:
            break
        lr = learning_rate(s, step, progress)
        loss, grad_norm = train_step(model, opt, x, lr, s)
        step += 1
        tokens += x.numel()
        if step % s.log_every == 0 or step == 1:
            now = time.time() - t0
            log.write(event="step", step=step, epoch=epoch, tokens=tokens, seconds=round(now, 2),
                      loss=round(loss, 5), lr=lr, grad_norm=round(grad_norm, 4),
                      tokens_per_s=round(tokens / max(now, 1e-9), 1), threads=threads)
        if time.time() - last_eval >= s.eval_every_minutes * 60:
            log.write(event="eval", step=step, tokens=tokens, seconds=round(time.time() - t0, 2),
                      **evaluate(model, val, s, s.eval_windows))
            last_eval = time.time()
        if time.time() - last_ckpt >= s.checkpoint_every_minutes * 60:
            save_model(model, Path(s.tokenizer_dir), out / "checkpoint")
            log.write(event="checkpoint", step=step, seconds=round(time.time() - t0, 2))
            last_ckpt = time.time()
    train_seconds = time.time() - t0
    final = evaluate(model, val, s, 0)
    log.write(event="final_eval", step=step, tokens=tokens, seconds=round(time.time() - t0, 2), **final)
    save_model(model, Path(s.tokenizer_dir), out / "final")
    summary = {
        "settings": dataclasses.asdict(s),
        "params": n_params,
        "steps": step,
        "epochs": round(tokens / max(man["tokens"]["train"], 1), 3),
        "train_tokens": tokens,
        "train_seconds": round(train_seconds, 1),
        "tokens_per_second": round(tokens / max(train_seconds, 1e-9), 1),
        "final_val_loss": final["val_loss"],
        "val_tokens": final["val_tokens"],
        "val_bytes": man["bytes"]["val"],
        "corpus": {k: v for k, v in man.items() if k != "val_files"},
        "hardware": hardware(),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    s = parse_args(argv)
    summary = train(s)
    if s.export is not None:  # type: ignore[attr-defined]
        from training.export_embedded import export

        export(Path(s.out), s.export)  # type: ignore[attr-defined]
    print(json.dumps({k: v for k, v in summary.items() if k not in ("settings", "corpus")}, indent=2))


if __name__ == "__main__":
    main()
