"""Shared pytest fixtures.  Each area keeps its fixtures in its own module, imported here."""

import os


def pytest_configure(config):
    """An empty model.name means the embedded 10 M model in the suite (fast, deterministic tests);
    the tests of the real default model name it ("qwen2.5-coder-0.5b") and are marked slow."""
    os.environ.setdefault("REST_LSP_DEFAULT_MODEL", "embedded")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip, saying why, where CUDA is not available (CI, most laptops);
    scripts/gpu-check.sh runs them on a lent GPU (docs/gpu.md)."""
    import pytest

    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return  # torch is imported only when a gpu test was collected: a plain run stays light
    try:
        import torch
    except ImportError as exc:
        reason = f"needs CUDA: torch is not importable ({exc})"
    else:
        if torch.cuda.is_available():
            return
        reason = f"needs CUDA: torch.cuda.is_available() is False (torch {torch.__version__})"
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=reason))

# --- indexer fixtures (issue 2: the datastore) -------------------------------------------
from indexer_fixtures import (  # noqa: F401
    index_env,
    tiny_tokenizer,
    tiny_tokenizer_path,
)
# --- end of indexer fixtures -----------------------------------------------------------------

# --- editor fixtures (issue 6: real-editor tests) ----------------------------------------------
from editors_testing import editor_corpus, editor_expected, editor_model_dir  # noqa: F401,E402
# --- end of editor fixtures ------------------------------------------------------------------
