"""The benchmarks' ``--context`` switch: which context-block settings to run the same positions with.

``bench quality`` and ``bench server`` take ``--context on``, ``off``, ``on:N`` or several,
comma-separated (the positions interleaved): "on" is ``server.context = "auto"`` (the default)
with the run's ``server.context_tokens``, "on:N" the same with a block of at most N tokens (to
choose the budget by measurement), "off" is "off".
"""

from __future__ import annotations

from typing import Any, Sequence

from rest_lsp.errors import ConfigError

#: the settings a run can compare besides "on:N"
SETTINGS = ("on", "off")


def parse_settings(text: str) -> list[str]:
    """The settings named in a comma-separated ``--context`` value, each once, in their order;
    ``ConfigError`` for an empty or unknown one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in SETTINGS and _tokens(n) is None]
    if bad or not names:
        raise ConfigError(f"--context {text!r}: expected on, off, on:N (N tokens) or several of them", context=text)
    return list(dict.fromkeys(names))


def server_value(setting: str) -> str:
    """The ``server.context`` value of a setting."""
    return "off" if setting == "off" else "auto"


def context_tokens_of(setting: str, default: int) -> int:
    """The ``server.context_tokens`` of a setting: N for "on:N", else ``default``."""
    tokens = _tokens(setting)
    return default if tokens is None else tokens


def with_context(settings: Sequence[str]) -> list[str]:
    """The settings that put a block in the prompt (compared with "off")."""
    return [s for s in settings if s != "off"]


def order_at(settings: Sequence[str], index: int) -> list[str]:
    """The settings in the order position ``index`` runs them: rotated (two alternate), so that
    a drift of the machine (or a cache warmed by the first run) hits each alike."""
    shift = index % len(settings) if settings else 0
    return list(settings[shift:]) + list(settings[:shift])


def _tokens(setting: str) -> int | None:
    """N of "on:N" (N >= 0), else None."""
    head, _, tail = setting.partition(":")
    return int(tail) if head == "on" and tail.isdigit() else None


def ratio(on: Any, off: Any) -> float | None:
    """on / off, rounded; None when off is zero or missing."""
    if not off or on is None:
        return None
    return round(on / off, 3)
