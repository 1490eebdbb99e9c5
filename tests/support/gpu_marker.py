"""The ``gpu`` marker's skip: the collection hook of ``tests/conftest.py``, importable by its tests."""

from __future__ import annotations


def skip_gpu_tests_without_cuda(items) -> None:
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
