"""Shared helpers of the engine tests: tiny random models of each supported architecture.

Weights are drawn with a large initializer range so that logits are peaked: a near-tie between
the two best tokens (where fp32 rounding of a batched forward may flip the argmax) is then
practically impossible, and exactness failures mean real bugs.
"""

from __future__ import annotations

import random
from typing import Sequence

import pytest
import torch

from rest_lsp.engine.drafter import Candidate, Drafter

VOCAB = 64


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models run fastest on one thread, and two threads thrash when the cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

#: architecture name -> (config class name, model class name, extra config fields)
ARCHS: dict[str, tuple[str, str, dict]] = {
    # Llama-3 shape: grouped-query attention 4 query heads over 2 KV heads
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    # Qwen2 shape: GQA and biased q/k/v projections
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    # Mistral without a sliding window (a window is refused beyond its length)
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {"head_dim": 16}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
}


def tiny_model(arch: str = "llama", attn: str = "sdpa", seed: int = 0, vocab: int = VOCAB, **overrides):
    """A 2-layer, 64-wide random model of ``arch`` in fp32 eval mode, without end-of-sequence ids."""
    import transformers

    config_name, model_name, extra = ARCHS[arch]
    fields = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.3,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    fields.update(extra)
    fields.update(overrides)
    config = getattr(transformers, config_name)(**fields)
    config._attn_implementation = attn
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    model.generation_config.eos_token_id = None
    return model


def near_copies(seed: int, n: int, length: int, changes: int) -> list[list[int]]:
    """``n`` copies of one random token sequence, each with ``changes`` random tokens replaced:
    documents in which retrieval (exact or dense) has something to find."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(1, VOCAB, size=length).tolist()
    docs = []
    for _ in range(n):
        doc = list(base)
        for j in rng.integers(0, length, size=changes):
            doc[j] = int(rng.integers(1, VOCAB))
        docs.append(doc)
    return docs

def reference_greedy(model, prompt: Sequence[int], n: int) -> list[int]:
    """Plain greedy decoding without any cache: argmax of a full forward per token."""
    from rest_lsp.engine.forward import model_device

    ids = list(prompt)
    device = model_device(model)  # the model may be on a GPU
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1]
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


class ScriptedDrafter(Drafter):
    """Proposes noisy versions of a known continuation (and junk), to exercise acceptance."""

    def __init__(self, prompt_len: int, truth: Sequence[int], seed: int, vocab: int = VOCAB,
                 n: int = 6, span: int = 12, special: Sequence[int] = ()) -> None:
        self.prompt_len = prompt_len
        self.truth = list(truth)
        self.rng = random.Random(seed)
        self.vocab = vocab
        self.n = n
        self.span = span
        self.special = list(special)

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        done = len(context_ids) - self.prompt_len  # truth[done - 1] is the root
        rest = self.truth[done:]
        out = []
        for _ in range(self.n):
            length = self.rng.randint(1, self.span)
            tokens = list(rest[:length]) or [self.rng.randrange(self.vocab)]
            if self.rng.random() < 0.6 and tokens:  # corrupt one position
                tokens[self.rng.randrange(len(tokens))] = self.rng.randrange(self.vocab)
            if self.special and self.rng.random() < 0.3:
                tokens.insert(self.rng.randrange(len(tokens) + 1), self.rng.choice(self.special))
            out.append(Candidate(tuple(tokens), float(self.rng.randint(1, 5)), self.rng.choice(["context", "corpus"]), self.rng.randint(1, 8)))
        return out


class FixedDrafter(Drafter):
    """Always proposes the same candidates (adversarial shapes)."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = list(candidates)

    def draft(self, context_ids: Sequence[int]) -> list[Candidate]:
        return list(self.candidates)


def save_tiny(path, arch="llama", safetensors=True):
    """Save a tiny model with a word-level tokenizer (token "t<i>" is id i, "<eos>" is 0)."""
    import torch

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(64)}
    vocab["<eos>"] = 0
    del vocab["t0"]
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    model = tiny_model(arch, "sdpa", eos_token_id=0)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    if not safetensors:  # a pickled checkpoint only (transformers 5 always writes safetensors)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
        for f in path.glob("*.safetensors"):
            f.unlink()
    return model


def tree_of_parents(tokens=(5, 9, 11, 7), parents=(-1, 0, 0, 1)):
    """``TreeInputs`` of a draft tree given by its tokens and parents (BFS order); the default is
    a root with two children, the first with one child."""
    from rest_lsp.engine.draft_tree import DraftTree
    from rest_lsp.engine.tree_inputs import tree_inputs

    depths: list[int] = []
    for p in parents:
        depths.append(0 if p < 0 else depths[p] + 1)
    n = len(tokens)
    return tree_inputs(DraftTree(tuple(tokens), tuple(parents), tuple(depths), tuple(range(n)), (0.0,) * n))
