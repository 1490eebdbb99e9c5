"""Copy a training run's final model into the package: fp16 weights, tokenizer, training record.

Usage:  python -m training.export_embedded training/out/run1 rest_lsp/embedded [--from checkpoint]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.model_files import save_model

#: the file the package reads the training record from (see rest_lsp.embedded.model)
RECORD_NAME = "training.json"


def training_record(run_dir: Path) -> dict:
    """The run's summary plus its held-out file list (what ``model eval`` scores)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    corpus = json.loads((run_dir / "corpus.json").read_text())
    summary["val_files"] = corpus["val_files"]
    return summary


def export(run_dir: Path, dest: Path, source: str = "final", dtype: str = "float16") -> None:
    """Write ``run_dir/source`` to ``dest`` with weights cast to ``dtype``; check it loads."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(run_dir / source), dtype=torch.float32)
    save_model(model, run_dir / source, dest, dtype=dtype)
    (dest / RECORD_NAME).write_text(json.dumps(training_record(run_dir), indent=2) + "\n")
    reloaded = AutoModelForCausalLM.from_pretrained(str(dest), dtype=torch.float32)
    x = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        diff = (reloaded(input_ids=x).logits - model(input_ids=x).logits).abs().max().item()
    print(json.dumps({"exported": str(dest), "dtype": dtype, "max_logit_change": diff}))


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--from", dest="source", default="final", help="final or checkpoint")
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    args = p.parse_args(argv)
    export(args.run_dir, args.dest, args.source, args.dtype)


if __name__ == "__main__":
    main()
