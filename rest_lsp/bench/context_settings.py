"""The benchmarks' ``--context`` switch: which context-block settings to run the same positions with.

``bench quality`` and ``bench server`` take ``--context on``, ``off`` or ``on,off`` (both, the
positions interleaved); "on" is ``server.context = "auto"`` (the default), "off" is "off".
"""

from __future__ import annotations

from typing import Any, Sequence

from rest_lsp.errors import ConfigError

#: the settings a run can compare, in the order they are reported
SETTINGS = ("on", "off")


def parse_settings(text: str) -> list[str]:
    """The settings named in a comma-separated ``--context`` value, each once, in their order;
    ``ConfigError`` for an empty or unknown one."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [n for n in names if n not in SETTINGS]
    if bad or not names:
        raise ConfigError(f"--context {text!r}: expected on, off or on,off", context=text)
    return list(dict.fromkeys(names))


def server_value(setting: str) -> str:
    """The ``server.context`` value of a setting."""
    return "auto" if setting == "on" else "off"


def order_at(settings: Sequence[str], index: int) -> list[str]:
    """The settings in the order position ``index`` runs them: alternated, so that a drift of
    the machine (or a cache warmed by the first run) hits both alike."""
    return list(settings) if index % 2 == 0 else list(settings)[::-1]


def ratio(on: Any, off: Any) -> float | None:
    """on / off, rounded; None when off is zero or missing."""
    if not off or on is None:
        return None
    return round(on / off, 3)
