"""The head of every benchmark's JSON record: the command, when, how long, on what machine."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any


def run_header(started: float, device: Any) -> dict[str, Any]:
    """``command``, ``date``, ``seconds`` since ``started`` (``time.time()``) and ``machine``."""
    import torch

    return {
        "command": "rest-lsp " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "device": str(device), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
    }
