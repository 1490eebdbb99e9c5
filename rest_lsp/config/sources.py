"""Where settings come from: config files (TOML or JSON) and the editor's LSP payloads.

Each source gives raw nested dicts; they are merged (file below client) and validated once by
``Config.from_dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rest_lsp.config.schema import Config
from rest_lsp.errors import ConfigError


def read_file(path: str | Path) -> dict[str, Any]:
    """The raw settings of a TOML or JSON config file (``ConfigError`` when unreadable)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}", path=str(p)) from exc
    try:
        if p.suffix == ".json":
            import json

            return json.loads(text)
        import tomllib

        return tomllib.loads(text)
    except ValueError as exc:
        raise ConfigError(f"cannot parse config file {p}: {exc}", path=str(p)) from exc


def load_file(path: str | Path) -> tuple[Config, list[str]]:
    """Read a TOML or JSON config file; return the config and problems found."""
    return Config.from_dict(read_file(path))


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` merged over ``base``, recursively for nested dicts."""
    out = dict(base)
    for key, value in (top or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def settings_of(payload: Any) -> dict[str, Any]:
    """The rest-lsp settings in an ``initializationOptions`` or ``didChangeConfiguration`` payload."""
    if not isinstance(payload, dict):
        return {}
    for key in ("rest-lsp", "restLsp", "rest_lsp"):
        if isinstance(payload.get(key), dict):
            return payload[key]
    return payload
