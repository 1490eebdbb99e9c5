"""The embedded model's files: its special token ids and how a trained model is written as a
Hugging Face model folder.  Shared by ``train_embedded`` (checkpoints) and ``export_embedded``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
EOS_ID, FIM_PREFIX_ID, FIM_MIDDLE_ID, FIM_SUFFIX_ID, PAD_ID = 0, 1, 2, 3, 4


def save_model(model, tokenizer_dir: Path, out: Path, dtype: str = "float32") -> None:
    """Write a Hugging Face model directory (config, safetensors, tokenizer files)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    target = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    state = {k: v.detach().to(target).contiguous() for k, v in model.state_dict().items()}
    state.pop("lm_head.weight", None)  # tied to the embeddings
    from safetensors.torch import save_file

    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)  # save_file creates it owner-only; it ships
    config = model.config.to_dict()
    config["dtype"] = dtype
    config["torch_dtype"] = dtype  # transformers 4.x reads this name
    config["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        src = tokenizer_dir / name
        if src.resolve() != (out / name).resolve():
            shutil.copyfile(src, out / name)
