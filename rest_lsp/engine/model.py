"""Loading the causal language model that decodes, and the tokenizer identity check.

``model.name`` is resolved to a local folder by ``rest_lsp.models.resolve`` (packaged models, GGUF
files and Ollama models are converted once into the user cache; an empty name is the packaged
Qwen2.5-Coder-0.5B when installed, else the embedded model).  Weights load from safetensors only
and remote code runs only when the config says so.  CUDA (bf16) when available, else CPU (fp32).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rest_lsp.config.schema import ModelConfig
from rest_lsp.errors import ModelError, TokenizerMismatchError

#: where the embedded default model lives
from rest_lsp.embedded.model import EMBEDDED_DIR  # one definition, torch-free


@dataclass
class LoadedModel:
    """A model ready to decode, with what is needed to describe it."""

    model: Any
    tokenizer: Any
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    #: the path or hub name it was loaded from
    source: str
    #: sha256 of the tokenizer (see ``tokenizer_identity``)
    tokenizer_id: str = ""
    #: what the engine runs: a ``PackedLlama`` over ``model``, or ``model`` itself
    runner: Any = None
    #: "packed" or "transformers" (see ``choose_forward``), and why
    forward: str = "transformers"
    forward_reason: str = ""
    #: what ``model.name`` resolved to, and why that model is in use
    resolved: Any = None  # rest_lsp.models.resolve.ResolvedModel

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Token ids that end a generation."""
        return eos_token_ids(self.model, self.tokenizer)


def resolve_device(name: str) -> Any:
    """The torch device named in the config ("auto": cuda when available, else cpu)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"model.device={name!r} but CUDA is not available", device=name)
    return torch.device(name)


def resolve_dtype(name: str, device: Any) -> Any:
    """The torch dtype named in the config ("auto": bf16 on cuda, fp32 on cpu)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_model(cfg: ModelConfig, attn_implementation: str | None = None,
               progress: Callable[[int, int, str], None] | None = None,
               log: Callable[[str], None] | None = None) -> LoadedModel:
    """Load the model and tokenizer named by ``cfg``; ``ModelError`` when that is impossible.

    ``progress`` and ``log`` hear of the slow first-time work (assembling parts, converting GGUF).
    """
    import torch

    from rest_lsp.models.resolve import resolve

    device = resolve_device(cfg.device)
    use_llama, why = wants_llama_cpp(cfg, device)
    # the llama.cpp forward reads a GGUF file itself: its folder needs no converted weights
    resolved = resolve(cfg.name, progress, log, weights=not use_llama)
    source = resolved.folder
    if resolved.kind == "embedded" and not any(EMBEDDED_DIR.glob("*.safetensors")):
        raise ModelError(
            f"the embedded model has no weights in {EMBEDDED_DIR} (not trained/exported yet?); "
            "set model.name to a local path or hub name",
            source=source,
        )
    if use_llama and resolved.gguf:
        return load_llama_cpp(cfg, resolved, why)
    if cfg.forward == "llama.cpp":
        raise ModelError(f"model.forward = llama.cpp needs a GGUF model; {cfg.name!r} has no GGUF file",
                         forward=cfg.forward, model=cfg.name)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.threads > 0 and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        kwargs: dict[str, Any] = dict(
            dtype=dtype, use_safetensors=True, trust_remote_code=cfg.trust_remote_code
        )
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelError(f"cannot load model {source!r}: {exc}", source=source) from exc
    model.to(device).eval()
    check_supported(model)
    runner, forward, reason = choose_forward(model, cfg.forward)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        source=source,
        tokenizer_id=tokenizer_identity(tokenizer, source),
        runner=runner,
        forward=forward,
        forward_reason=reason,
        resolved=resolved,
    )


def wants_llama_cpp(cfg: ModelConfig, device: Any) -> tuple[bool, str]:
    """Whether a GGUF model would run on the llama.cpp forward, and why (``model.forward``).

    Decided before the model is resolved, so that its folder is written without weights.
    "auto" takes it on the CPU when llama-cpp-python is installed: it decodes the file's own
    low-bit weights several times faster than float32 torch (docs/cpu.md).  "llama.cpp" insists
    (an error off the CPU or without llama-cpp-python; ``load_model`` refuses a model without a
    GGUF file).
    """
    from rest_lsp.engine.llama_cpp_build import available

    if cfg.forward == "llama.cpp":
        if device.type != "cpu":
            raise ModelError(f"model.forward = llama.cpp runs on the CPU, not {device}", forward=cfg.forward)
        ok, why = available()
        if not ok:
            raise ModelError(f"model.forward = llama.cpp, but {why}", forward=cfg.forward)
        return True, "model.forward = llama.cpp"
    if cfg.forward != "auto" or device.type != "cpu":
        return False, ""
    ok, _ = available()
    return ok, "auto: a GGUF model on the CPU and llama-cpp-python installed"


def load_llama_cpp(cfg: ModelConfig, resolved: Any, why: str) -> LoadedModel:
    """The llama.cpp forward over ``resolved.gguf``; tokenizer and config from the converted folder."""
    from rest_lsp.engine.llama_cpp_runner import LlamaCppRunner

    source = resolved.folder
    try:
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.from_pretrained(source)
        try:
            generation = GenerationConfig.from_pretrained(source)
        except OSError:
            generation = None
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelError(f"cannot load the tokenizer of {source!r}: {exc}", source=source) from exc
    repack = {"on": True, "off": False}.get(cfg.repack)  # None: "auto", the runner decides
    runner = LlamaCppRunner(resolved.gguf, config, generation, threads=cfg.threads, name_or_path=source,
                            repack=repack, one_row_allowed=cfg.kv_cache == "auto")
    return LoadedModel(
        model=runner,
        tokenizer=tokenizer,
        device=runner.device,
        dtype=gguf_weight_type(resolved.gguf),
        source=source,
        tokenizer_id=tokenizer_identity(tokenizer, source),
        runner=runner,
        forward="llama.cpp",
        forward_reason=f"{why}; {runner.repack_reason}",
        resolved=resolved,
    )


def gguf_weight_type(path: str) -> str:
    """The weight format a GGUF file names itself by ("Q4_K_M" from "....Q4_K_M.gguf"), else "gguf"."""
    stem = Path(path).stem
    tail = stem.rsplit(".", 1)[-1] if "." in stem else ""
    return tail if tail[:1] in ("Q", "q", "F", "f", "B", "b", "I", "i") and tail else "gguf"


def choose_forward(model: Any, choice: str = "auto") -> tuple[Any, str, str]:
    """(runner, "packed" | "static" | "transformers", why) for ``model`` under ``model.forward``.

    "auto" takes the packed forward where it is measured to win: a supported architecture on
    the CPU in float32 (oneDNN-packed weights); on CUDA, the static forward (fixed shapes, CUDA
    graphs, docs/gpu.md).  "packed" and "static" force theirs (an error when unsupported);
    "transformers" uses neither.
    """
    from rest_lsp.engine.packed_llama import PackedLlama, supports
    from rest_lsp.engine.static_forward import StaticLlama

    if choice == "transformers":
        return model, "transformers", "model.forward = transformers"
    if choice == "llama.cpp":
        raise ModelError("model.forward = llama.cpp needs a GGUF model (a packaged model, a .gguf file "
                         "or ollama:NAME)", forward=choice)
    ok, why = supports(model)
    if choice == "packed":
        if not ok:
            raise ModelError(f"model.forward = packed, but {why}", forward=choice)
        return PackedLlama(model), "packed", "model.forward = packed"
    if choice == "static":
        if not ok:
            raise ModelError(f"model.forward = static, but {why}", forward=choice)
        return StaticLlama(model), "static", "model.forward = static"
    p = next(model.parameters())
    if not ok:
        return model, "transformers", why
    if p.device.type == "cuda":
        return StaticLlama(model), "static", "auto: CUDA, supported architecture (fixed shapes, CUDA graphs)"
    if p.device.type != "cpu" or str(p.dtype) != "torch.float32":
        return model, "transformers", f"auto: packed forward is for float32 on the CPU, not {p.dtype} on {p.device}"
    return PackedLlama(model), "packed", "auto: float32 on the CPU, supported architecture"


#: attention implementations that apply a custom 4D additive mask (checked in tests per architecture)
MASKED_ATTENTION = ("eager", "sdpa")


def check_supported(model: Any) -> None:
    """Refuse models whose attention the engine's full 4D tree mask would silently change."""
    if getattr(model, "own_attention", False):
        return  # a runner that applies the tree mask itself (llama.cpp's sequences)
    attn = getattr(model.config, "_attn_implementation", None) or "eager"
    if attn not in MASKED_ATTENTION:
        raise ModelError(
            f"attention implementation {attn!r} does not take the tree mask; use one of {MASKED_ATTENTION}",
            attn_implementation=attn,
        )
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None) or []
    odd = sorted({t for t in layer_types if t != "full_attention"})
    if odd:
        raise ModelError(
            f"model type {config.model_type!r} has {odd} layers; tree verification needs full "
            "attention in every layer",
            model_type=config.model_type,
            layer_types=odd,
        )


def attention_window(model: Any) -> int | None:
    """The sliding-window length of a model whose every layer uses one (e.g. Mistral), else None.

    The engine's 4D mask is a full mask, so such a model is exact only while the sequence fits
    in the window; the engine refuses longer sequences.
    """
    config = model.config
    window = getattr(config, "sliding_window", None)
    if getattr(config, "use_sliding_window", True) is False:
        return None
    return int(window) if isinstance(window, int) and window > 0 else None


def eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every end-of-sequence id the model's generation config or tokenizer declares."""
    ids: set[int] = set()
    for value in (
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
        getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None,
    ):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return frozenset(ids)


def tokenizer_identity(tokenizer: Any, source: str | Path | None = None) -> str:
    """sha256 (hex) of the tokenizer's ``tokenizer.json`` content.

    The file's bytes when ``source`` (default: the tokenizer's ``name_or_path``) is a directory
    holding it, else the fast tokenizer's JSON serialisation: the same rule as
    ``indexer.tokens.coerce_tokenizer``, so that identities compare across the two.
    """
    if source is None:
        source = str(getattr(tokenizer, "name_or_path", "") or "")
    if source:
        path = Path(source) / "tokenizer.json"
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise ModelError("the tokenizer has no tokenizer.json (not a fast tokenizer)")
    return hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()


def check_tokenizer(model_tokenizer_id: str, index_tokenizer_id: str, index_dir: str = "") -> None:
    """Raise ``TokenizerMismatchError`` when an index was built with another tokenizer."""
    if model_tokenizer_id != index_tokenizer_id:
        raise TokenizerMismatchError(
            f"index {index_dir or '(unnamed)'} was built with tokenizer {index_tokenizer_id[:12]}, "
            f"the model uses {model_tokenizer_id[:12]}: rebuild the index",
            model_tokenizer=model_tokenizer_id,
            index_tokenizer=index_tokenizer_id,
            index_dir=index_dir,
        )


def describe(loaded: LoadedModel) -> dict[str, Any]:
    """A JSON-ready description of a loaded model (for logs and benchmark records)."""
    config = loaded.model.config
    resolved = loaded.resolved
    return {
        "name": resolved.name if resolved else loaded.source,
        "kind": resolved.kind if resolved else "",
        "why": resolved.why if resolved else "",
        "gguf": resolved.gguf if resolved else "",
        "source": loaded.source,
        "model_type": getattr(config, "model_type", "?"),
        "parameters": getattr(loaded.model, "n_params", 0) or sum(p.numel() for p in loaded.model.parameters()),
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "attn_implementation": getattr(config, "_attn_implementation", None),
        "forward": loaded.forward,
        "forward_reason": loaded.forward_reason,
        "kv_cache": getattr(loaded.model, "cache_description", ""),
        "tokenizer_sha256": loaded.tokenizer_id,
    }


__all__ = [
    "EMBEDDED_DIR",
    "LoadedModel",
    "load_model",
    "choose_forward",
    "tokenizer_identity",
    "check_tokenizer",
    "eos_token_ids",
    "describe",
]
