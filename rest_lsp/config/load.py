"""Loading a configuration from nested dicts: each value type-checked against its field's hint,
every problem reported (and the field left at its default) instead of raising on the first."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any


def apply_sections(config: Any, data: dict[str, Any]) -> list[str]:
    """Set the sections of ``config`` (a dataclass of section dataclasses) from ``data``; the problems."""
    problems: list[str] = []
    sections = {f.name for f in dataclasses.fields(config)}
    for name, value in data.items():
        if name not in sections:
            problems.append(f"unknown section {name!r}")
            continue
        if not isinstance(value, dict):
            problems.append(f"section {name!r} must be an object, got {type(value).__name__}")
            continue
        problems.extend(_apply(getattr(config, name), value, prefix=name))
    return problems


def _apply(section: object, values: dict[str, Any], prefix: str) -> list[str]:
    """Set the fields of ``section`` from ``values``, type-checked; return problems."""
    problems: list[str] = []
    hints = typing.get_type_hints(type(section))
    names = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in names:
            problems.append(f"unknown option {prefix}.{key}")
            continue
        converted, ok = _convert(value, hints[key])
        if not ok:
            problems.append(
                f"{prefix}.{key}={value!r} must be {_type_name(hints[key])}, using default"
            )
            continue
        setattr(section, key, converted)
    return problems


def _convert(value: Any, hint: Any) -> tuple[Any, bool]:
    """Convert a JSON value to the hinted type; (value, ok)."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return value, isinstance(value, bool)
    if hint is int:
        return value, isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (float(value) if ok else value), ok
    if hint is str:
        return value, isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            return value, False
        out = []
        for v in value:
            c, ok = _convert(v, item)
            if not ok:
                return value, False
            out.append(c)
        return out, True
    return value, False


def _type_name(hint: Any) -> str:
    """A readable name of a type hint."""
    origin = typing.get_origin(hint)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))
