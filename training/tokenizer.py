"""Train the embedded model's byte-level BPE tokenizer and save it in Hugging Face format."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterable

from training.corpus import list_files, read_text

#: special tokens at fixed ids 0..4 (the datastore relies on these ids)
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|pad|>",
)
DEFAULT_VOCAB_SIZE = 16_384


def train_bpe(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on texts, specials at ids 0..4."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if not len(SPECIAL_TOKENS) + 256 <= vocab_size <= 65_536:
        raise ValueError(f"vocab_size={vocab_size} must be in [{len(SPECIAL_TOKENS) + 256}, 65536]")
    tok = Tokenizer(models.BPE())
    # No normalizer: source text must round-trip byte for byte, whitespace included.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_hf(tok, out_dir: Path, model_max_length: int) -> dict[str, int]:
    """Save a trained tokenizer so ``AutoTokenizer.from_pretrained(out_dir)`` loads it."""
    from transformers import PreTrainedTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|endoftext|>",
        unk_token=None,
        pad_token="<|pad|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:4]),
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    fast.save_pretrained(str(out_dir))
    _portable_class(out_dir / "tokenizer_config.json")
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "eos_token": "<|endoftext|>",
                "pad_token": "<|pad|>",
                "additional_special_tokens": list(SPECIAL_TOKENS[1:4]),
            },
            indent=2,
        )
        + "\n"
    )
    return ids


def _portable_class(config_path: Path) -> None:
    """Name the tokenizer class that transformers 4.x and 5.x both resolve."""
    config = json.loads(config_path.read_text())
    # transformers 5 writes "TokenizersBackend", which 4.x cannot load
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: train on the corpus's training split and save to --out."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    p.add_argument("--model-max-length", type=int, default=2048)
    args = p.parse_args(argv)
    files = [f for f in list_files() if not f.held_out]
    tok = train_bpe((read_text(f) for f in files), args.vocab_size)
    ids = save_hf(tok, args.out, args.model_max_length)
    print(json.dumps({"vocab_size": tok.get_vocab_size(), "special_ids": ids}))


if __name__ == "__main__":
    main()
