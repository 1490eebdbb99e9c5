"""Unit tests of the server's protocol-side helpers (no subprocess, no model)."""

from __future__ import annotations

import pytest

from rest_lsp.commands.complete import offset_of
from rest_lsp.commands.serve import parse_tcp
from rest_lsp.completion.figures import Outcome
from rest_lsp.completion.items import candidates_of, first_line_of
from rest_lsp.config.schema import Config
from rest_lsp.errors import ConfigError
from rest_lsp.completion.scheduler import Scheduler
from rest_lsp.config.sources import deep_merge, settings_of
from rest_lsp.lsp.server import _first_string


def test_newer_request_cancels_the_one_in_flight():
    scheduler = Scheduler()
    first = scheduler.claim("file:///a.py")
    second = scheduler.claim("file:///b.py")
    assert first.cancelled.is_set() and not second.cancelled.is_set()
    scheduler.release(first)  # a stale release does not forget the newest
    third = scheduler.claim("file:///a.py")
    assert second.cancelled.is_set() and third.request_id > second.request_id


def test_settings_are_merged_over_the_file_and_unwrapped():
    merged = deep_merge({"decoding": {"max_new_tokens": 10, "draft_budget": 4}}, {"decoding": {"draft_budget": 8}})
    assert merged == {"decoding": {"max_new_tokens": 10, "draft_budget": 8}}
    assert settings_of({"rest-lsp": {"server": {"debounce_ms": 5}}}) == {"server": {"debounce_ms": 5}}
    assert settings_of(None) == {}


def test_invalid_options_are_reported_and_defaulted():
    config, problems = Config.from_dict(
        {"decoding": {"max_new_tokens": "lots", "top_p": 3.0}, "bogus": {}, "model": {"device": "tpu"}}
    )
    assert config.decoding.max_new_tokens == Config().decoding.max_new_tokens
    assert config.decoding.top_p == 1.0 and config.model.device == "auto"
    assert len(problems) == 4
    with pytest.raises(ConfigError):
        Config.strict({"server": {"debounce_ms": -1}})


def test_tcp_binds_loopback_unless_allowed():
    assert parse_tcp("127.0.0.1:2087", False) == ("127.0.0.1", 2087)
    assert parse_tcp("[::1]:2087", False) == ("::1", 2087)
    with pytest.raises(ConfigError, match="loopback"):
        parse_tcp("0.0.0.0:2087", False)
    assert parse_tcp("0.0.0.0:2087", True) == ("0.0.0.0", 2087)
    with pytest.raises(ConfigError):
        parse_tcp("localhost:99999", False)


def test_cli_positions_are_one_based_and_clamped():
    text = "ab\ncdef\n"
    assert offset_of(text, 1, 1) == 0
    assert offset_of(text, 2, 3) == 5
    assert offset_of(text, 2, 99) == 7  # past the end of the line: its end
    with pytest.raises(ConfigError):
        offset_of(text, 9, 1)


def test_items_for_cycling():
    full = "\n        x = 1\n        return x"
    assert candidates_of(full, invoked=False, max_items=3) == [full]
    assert candidates_of(full, invoked=True, max_items=3) == [full, "\n        x = 1"]
    assert candidates_of("   ", invoked=True, max_items=3) == []
    assert first_line_of("a\nb") == "a"


def test_a_shared_result_offers_the_items_of_the_sharing_request():
    # an explicit request at the spot of an automatic one shares its run, which kept one item
    full = "\n        x = 1\n        return x"
    automatic = Outcome(7, [full], {}, 0.01, 10, False)
    assert automatic.for_trigger(True, max_items=3).items == [full, "\n        x = 1"]
    invoked = Outcome(8, [full, "\n        x = 1"], {}, 0.01, 10, False)
    assert invoked.for_trigger(False, max_items=3).items == [full]
    assert invoked.for_trigger(True, max_items=1).items == [full]
    assert Outcome(9, [], {}, 0.01, 10, False).for_trigger(True, max_items=3).items == []


def test_command_arguments_in_any_nesting():
    assert _first_string(("text",)) == "text"
    assert _first_string(([["nested"]],)) == "nested"
    assert _first_string(({"text": "t"},)) == "t"
    assert _first_string((42,)) is None


def test_corpus_tier_options_are_checked():
    from rest_lsp.config.schema import Config

    config, problems = Config.from_dict({"index": {"corpus_tier": "tiny"}, "model": {"forward": "fast"}})
    assert config.index.corpus_tier == "full" and config.model.forward == "auto"
    assert any("corpus_tier" in p for p in problems) and any("model.forward" in p for p in problems)
    config, problems = Config.from_dict({"index": {"corpus_tier": "compact"}})
    assert config.index.corpus_tier == "full" and any("corpus_compact_dir" in p for p in problems)
    config, problems = Config.from_dict({"index": {"corpus_tier": "compact", "corpus_compact_dir": "/x"}})
    assert config.index.corpus_tier == "compact" and not problems


def test_depth_decay_is_checked():
    from rest_lsp.config.schema import Config, DecodingConfig

    for bad in (0.0, 1.5, -0.2):
        config, problems = Config.from_dict({"decoding": {"depth_decay": bad}})
        assert config.decoding.depth_decay == DecodingConfig.depth_decay
        assert any("depth_decay" in p and str(bad) in p for p in problems)
    config, problems = Config.from_dict({"decoding": {"depth_decay": 0.5}})
    assert config.decoding.depth_decay == 0.5 and not problems
