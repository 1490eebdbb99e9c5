"""The editors' settings defaults are the server's defaults: one source of truth.

VS Code: every ``rest-lsp.<section>.<camelName>`` property of editors/vscode/package.json is the
server option ``<section>.<snake_name>`` with the same default (and a matching JSON type).
Neovim: editors/nvim/lua/rest_lsp/defaults.lua ``settings`` mirrors the same options.  Both
editors expose the same set of options.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from rest_lsp.config.schema import Config

REPO = Path(__file__).resolve().parents[2]
PACKAGE_JSON = REPO / "editors" / "vscode" / "package.json"
NVIM_DEFAULTS = REPO / "editors" / "nvim" / "lua" / "rest_lsp" / "defaults.lua"
SECTIONS = {f.name for f in dataclasses.fields(Config)}
CLIENT_ONLY = {"rest-lsp.serverPath"}


def snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name)


def server_default(section: str, option: str) -> Any:
    return getattr(getattr(Config(), section), option)


def server_hint(section: str, option: str) -> Any:
    cls = type(getattr(Config(), section))
    return typing.get_type_hints(cls)[option]


def vscode_options() -> dict[tuple[str, str], dict[str, Any]]:
    properties = json.loads(PACKAGE_JSON.read_text())["contributes"]["configuration"]["properties"]
    out = {}
    for key, prop in properties.items():
        assert key.startswith("rest-lsp."), key
        if key in CLIENT_ONLY:
            continue
        section, _, name = key[len("rest-lsp."):].partition(".")
        out[(section, snake(name))] = prop
    return out


# --- a reader for the data-only Lua table of defaults.lua ------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:(--[^\n]*)|("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(-?\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(\S))"""
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        comment, string, number, name, punct = m.groups()
        if comment:
            continue
        if string:
            out.append(("value", re.sub(r"\\(.)", r"\1", string[1:-1])))  # no escapes beyond \x -> x
        elif number:
            out.append(("value", float(number) if "." in number else int(number)))
        elif name in ("true", "false"):
            out.append(("value", name == "true"))
        elif name == "nil":
            out.append(("value", None))
        elif name:
            out.append(("name", name))
        elif punct:
            out.append(("punct", punct))
    return out


def read_lua_table(text: str) -> Any:
    """Parse ``return { ... }`` made of strings, numbers, booleans, nil and nested tables."""
    tokens = _tokens(text)
    assert tokens[0] == ("name", "return"), tokens[:3]
    pos = 1

    def value() -> Any:
        nonlocal pos
        kind, tok = tokens[pos]
        if (kind, tok) == ("punct", "{"):
            return table()
        assert kind == "value", f"unexpected {tok!r}"
        pos += 1
        return tok

    def table() -> Any:
        nonlocal pos
        pos += 1  # {
        fields: dict[str, Any] = {}
        items: list[Any] = []
        while tokens[pos] != ("punct", "}"):
            if tokens[pos][0] == "name" and tokens[pos + 1] == ("punct", "="):
                key = tokens[pos][1]
                pos += 2
                fields[key] = value()
            else:
                items.append(value())
            if tokens[pos] in (("punct", ","), ("punct", ";")):
                pos += 1
        pos += 1  # }
        assert not (fields and items), "mixed tables are not used in defaults.lua"
        return items if items or not fields else fields

    return value()


def nvim_settings() -> dict[str, dict[str, Any]]:
    return read_lua_table(NVIM_DEFAULTS.read_text())["settings"]


# --- the tests ------------------------------------------------------------------------------
def test_lua_reader_reads_what_it_should():
    assert read_lua_table("return { a = 1, b = { 'x', \"y\" }, c = { d = false }, e = {} } -- done") == {
        "a": 1, "b": ["x", "y"], "c": {"d": False}, "e": [],
    }


@pytest.mark.parametrize("key", sorted(vscode_options()), ids=lambda k: ".".join(k))
def test_vscode_setting_defaults_match_the_server(key):
    section, option = key
    prop = vscode_options()[key]
    assert section in SECTIONS, f"rest-lsp.{section}.* is no server section"
    assert hasattr(getattr(Config(), section), option), f"{section}.{option} is no server option"
    default = server_default(section, option)
    assert prop["default"] == default, f"{section}.{option}: package.json {prop['default']!r} != server {default!r}"
    hint = server_hint(section, option)
    json_type = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, "array")
    assert prop["type"] == json_type, f"{section}.{option}: type {prop['type']} != {json_type}"
    if "enum" in prop:
        assert default in prop["enum"]


@pytest.mark.parametrize(
    "section,option",
    sorted((s, o) for s, opts in nvim_settings().items() for o in opts),
)
def test_nvim_setting_defaults_match_the_server(section, option):
    value = nvim_settings()[section][option]
    assert section in SECTIONS and hasattr(getattr(Config(), section), option), f"{section}.{option}"
    assert value == server_default(section, option), f"{section}.{option}: defaults.lua {value!r} != server"


def test_both_editors_expose_the_same_options():
    nvim = {(s, o) for s, opts in nvim_settings().items() for o in opts}
    assert nvim == set(vscode_options())


def test_the_documented_options_are_there():
    """The issues' lists: model, device, max tokens, corpus roots, excludes, debounce, draft budget,
    per-language enable; and the options users change (issue 28): the model, the FIM template,
    stop strings, remote datastores (and how long a step waits for them)."""
    wanted = {
        ("model", "name"), ("model", "device"), ("decoding", "max_new_tokens"), ("index", "corpus_roots"),
        ("index", "exclude_globs"), ("server", "debounce_ms"), ("decoding", "draft_budget"),
        ("server", "disabled_languages"),
        ("server", "fim_template"), ("decoding", "stop"), ("index", "remote_datastores"), ("index", "remote_budget_ms"),
    }
    assert wanted <= set(vscode_options())


def test_vscode_choices_are_the_servers():
    """A setting with a fixed set of values offers exactly the values the server accepts
    (``rest_lsp.config.checks``), e.g. every FIM template the server knows; and every such server
    option that VS Code exposes is offered as a choice."""
    from rest_lsp.config.checks import _CHOICES

    choices = {(section, name): values for section, name, values in _CHOICES}
    options = vscode_options()
    for key, prop in options.items():
        if "enum" in prop:
            assert key in choices, f"{'.'.join(key)}: an enum in package.json, free text for the server"
            assert prop["enum"] == list(choices[key]), f"{'.'.join(key)}: {prop['enum']} != server {list(choices[key])}"
    for key in choices.keys() & options.keys():
        assert "enum" in options[key], f"{'.'.join(key)}: the server takes only {choices[key]}; offer them"
    assert options[("server", "fim_template")]["enum"][0] == "auto"


def test_every_vscode_setting_is_documented_in_the_readme():
    readme = (REPO / "editors" / "vscode" / "README.md").read_text()
    properties = json.loads(PACKAGE_JSON.read_text())["contributes"]["configuration"]["properties"]
    missing = [key for key in properties if f"`{key}`" not in readme]
    assert not missing, f"editors/vscode/README.md does not describe {missing}"


def test_a_missing_editor_skips_here_and_fails_where_required(monkeypatch):
    from editors_testing import needs_editor

    def probe():
        return "ran"

    assert needs_editor(None)(probe) is probe
    monkeypatch.delenv("REST_LSP_REQUIRE_EDITORS", raising=False)
    mark = needs_editor("nvim is not installed")
    assert mark.mark.name == "skip" and "nvim is not installed" in mark.mark.kwargs["reason"]
    monkeypatch.setenv("REST_LSP_REQUIRE_EDITORS", "1")
    with pytest.raises(pytest.fail.Exception, match="required here.*nvim is not installed"):
        needs_editor("nvim is not installed")(probe)()
