"""Shared pytest fixtures.  Each area keeps its fixtures in its own module, imported here."""

import os

from gpu_marker import skip_gpu_tests_without_cuda


def pytest_configure(config):
    """An empty model.name means the embedded 10 M model in the suite (fast, deterministic tests);
    the tests of the real default model name it ("qwen2.5-coder-0.5b") and are marked slow."""
    os.environ.setdefault("REST_LSP_DEFAULT_MODEL", "embedded")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip, saying why, where CUDA is not available (``gpu_marker``)."""
    skip_gpu_tests_without_cuda(items)


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
