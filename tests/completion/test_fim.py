"""Unit tests of the FIM templates, the prompt layouts they give, and the stops (pure, no model)."""

from __future__ import annotations

import pytest

from rest_lsp.completion import fim
from rest_lsp.completion.prompt import HEADER_SHARE, build_prompt
from rest_lsp.completion.uris import repo_and_path
from rest_lsp.completion.stops import cursor_of, cut, cut_at_strings, finish
from rest_lsp.config.schema import Config
from rest_lsp.embedded.model import SPECIAL_TOKENS
from rest_lsp.errors import ConfigError


def vocab_of(*names: str) -> dict[str, int]:
    """A synthetic vocabulary: a few plain tokens, then ``names`` as special tokens from id 1000."""
    vocab = {"a": 0, "b": 1, "def": 2}
    vocab.update({name: 1000 + i for i, name in enumerate(names)})
    return vocab


#: each family's vocabulary as its tokenizer names the special tokens
FAMILIES = {
    "qwen": vocab_of("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>",
                     "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"),
    "starcoder": vocab_of("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                          "<repo_name>", "<file_sep>"),
    "deepseek": vocab_of("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>",
                         "<｜fim▁begin｜>", "<｜fim▁end｜>", "<|EOT|>"),
    "codellama": vocab_of("<unk>", "<s>", "</s>", "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"),
    "codestral": vocab_of("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]"),
}


def toy_vocab() -> dict[str, int]:
    """The embedded model's special tokens plus a few plain ones."""
    return {**SPECIAL_TOKENS, "a": 5, "b": 6}


def encode_chars(text: str) -> list[int]:
    """A toy tokenizer: one token per character."""
    return [ord(c) for c in text]


# --- detection and resolution ------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_is_detected_and_only_it_matches(family):
    vocab = FAMILIES[family]
    assert [t.name for t in fim.matching(vocab)] == [family]
    assert fim.detect(vocab).name == family


def test_a_vocabulary_without_fim_tokens_has_no_template():
    assert fim.detect(vocab_of("<|endoftext|>", "<s>", "</s>")) is None
    assert fim.choose(vocab_of("<|endoftext|>")) is None


def test_detection_order_puts_qwen_first_when_two_families_fit():
    both = {**FAMILIES["starcoder"], **FAMILIES["qwen"]}
    assert [t.name for t in fim.matching(both)][:2] == ["qwen", "starcoder"]
    assert fim.detect(both).name == "qwen"


def test_the_embedded_model_is_qwen_style_without_the_optional_tokens():
    tokens = fim.choose(toy_vocab())
    assert tokens.name == "qwen"
    assert (tokens.prefix, tokens.suffix, tokens.middle) == (1, 3, 2)
    assert tokens.stop_ids == {0, 1, 2, 3}  # <|endoftext|> and its own FIM tokens; <|pad|> is no stop
    assert tokens.header == "" and tokens.headers("repo", "a.py") == ("", "")  # no <|repo_name|>


def test_qwen_resolves_every_end_token_as_a_stop():
    vocab = FAMILIES["qwen"]
    tokens = fim.resolve(fim.QWEN, vocab)
    names = ["<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>",
             "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]
    assert tokens.stop_ids == {vocab[n] for n in names}
    assert vocab["<|im_start|>"] not in tokens.stop_ids


def test_deepseek_orders_begin_hole_end():
    vocab = FAMILIES["deepseek"]
    tokens = fim.resolve(fim.DEEPSEEK, vocab)
    assert (tokens.prefix, tokens.suffix, tokens.middle) == (
        vocab["<｜fim▁begin｜>"], vocab["<｜fim▁hole｜>"], vocab["<｜fim▁end｜>"])
    assert {vocab["<|EOT|>"], vocab["<｜end▁of▁sentence｜>"]} <= tokens.stop_ids


def test_codestral_is_suffix_first_without_a_middle_token():
    vocab = FAMILIES["codestral"]
    tokens = fim.resolve(fim.CODESTRAL, vocab)
    assert tokens.suffix_first and tokens.middle is None
    assert vocab["</s>"] in tokens.stop_ids


def test_a_named_template_the_vocabulary_lacks_is_refused_with_its_missing_tokens():
    with pytest.raises(ConfigError) as info:
        fim.choose(FAMILIES["qwen"], "deepseek")
    assert info.value.template == "deepseek"
    assert info.value.missing == ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"]
    assert "<｜fim▁begin｜>" in str(info.value)


def test_an_unknown_template_name_is_refused():
    with pytest.raises(ConfigError, match="server.fim_template='gpt'"):
        fim.choose(FAMILIES["qwen"], "gpt")


def test_a_named_template_overrides_detection():
    both = {**FAMILIES["starcoder"], **FAMILIES["qwen"]}
    assert fim.choose(both, "starcoder").prefix == both["<fim_prefix>"]


# --- prompt layouts ----------------------------------------------------------------------------
def test_prefix_first_layout():
    tokens = fim.FimTokens(prefix=1, suffix=2, middle=3)
    prompt = build_prompt("a = ", "\nb = 2\n", encode_chars, 100, tokens)
    assert prompt.ids == [1, *encode_chars("a = "), 2, *encode_chars("\nb = 2\n"), 3]
    assert prompt.fim and prompt.header_tokens == 0


def test_suffix_first_layout_has_no_middle_token():
    tokens = fim.resolve(fim.CODESTRAL, {"[PREFIX]": 1, "[SUFFIX]": 2, "</s>": 9})
    prompt = build_prompt("a = ", "\nb = 2\n", encode_chars, 100, tokens)
    assert prompt.ids == [2, *encode_chars("\nb = 2\n"), 1, *encode_chars("a = ")]


def test_a_blank_suffix_gives_a_prefix_prompt_in_every_family():
    for family, vocab in FAMILIES.items():
        prompt = build_prompt("x = ", "\n\n", encode_chars, 100, fim.choose(vocab))
        assert prompt.ids == encode_chars("x = ") and not prompt.fim, family


def test_suffix_first_prompt_stays_within_budget():
    tokens = fim.FimTokens(prefix=1, suffix=2, middle=None, suffix_first=True)
    prompt = build_prompt("x\n" * 500, "y\n" * 500, encode_chars, 64, tokens)
    assert len(prompt.ids) <= 64 and prompt.ids[0] == 2


def test_the_suffix_is_cut_to_its_own_limit_and_the_prefix_gets_the_rest():
    tokens = fim.FimTokens(prefix=1, suffix=2, middle=3)
    wide = build_prompt("x\n" * 500, "y\n" * 500, encode_chars, 400, tokens)
    narrow = build_prompt("x\n" * 500, "y\n" * 500, encode_chars, 400, tokens, max_suffix=10)
    assert len(encode_chars(wide.suffix_text)) > 10
    assert narrow.suffix_text == "y\n" * 5  # whole lines only, within 10 tokens
    assert len(narrow.ids) <= 400 and len(encode_chars(narrow.prefix_text)) > len(encode_chars(wide.prefix_text))
    assert build_prompt("a\n", "b\n", encode_chars, 400, tokens, max_suffix=0).suffix_text == ""


# --- repository header -------------------------------------------------------------------------
def test_qwen_header_comes_first_then_fim():
    vocab = FAMILIES["qwen"]
    tokens = fim.choose(vocab)
    header, file_header = tokens.headers("proj", "pkg/mod.py")
    assert (header, file_header) == ("<|repo_name|>proj\n<|file_sep|>pkg/mod.py\n", "")
    prompt = build_prompt("a = ", "\nb\n", encode_chars, 200, tokens, header=header, file_header=file_header)
    head = encode_chars(header)
    assert prompt.ids[: len(head)] == head
    assert prompt.ids[len(head)] == tokens.prefix and prompt.header_tokens == len(head)


def test_starcoder2_puts_the_path_after_the_prefix_token():
    vocab = FAMILIES["starcoder"]
    tokens = fim.choose(vocab)
    header, file_header = tokens.headers("proj", "mod.py")
    assert (header, file_header) == ("<repo_name>proj<file_sep>", "mod.py\n")
    fim_prompt = build_prompt("a = ", "\nb\n", encode_chars, 200, tokens, header=header, file_header=file_header)
    head, lead = encode_chars(header), encode_chars(file_header)
    assert fim_prompt.ids[: len(head) + 1 + len(lead)] == [*head, tokens.prefix, *lead]
    # without a suffix: <repo_name>proj<file_sep>mod.py\n then the code, as in StarCoder2's training
    plain = build_prompt("a = ", "", encode_chars, 200, tokens, header=header, file_header=file_header)
    assert plain.ids == encode_chars("<repo_name>proj<file_sep>mod.py\na = ")


def test_starcoder1_without_repo_tokens_has_no_header():
    vocab = vocab_of("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<reponame>", "<filename>")
    assert fim.choose(vocab).headers("proj", "mod.py") == ("", "")


def test_the_header_counts_in_the_budget():
    header = "<|repo_name|>p\n<|file_sep|>m.py\n"  # 32 characters: under a quarter of 200
    prompt = build_prompt("x\n" * 500, "y\n" * 500, encode_chars, 200, fim.FimTokens(1, 2, 3), header=header)
    assert prompt.header_tokens == len(header) and len(prompt.ids) <= 200


def test_a_header_too_long_for_its_share_is_left_out_whole():
    header = "h" * int(100 * HEADER_SHARE + 1)
    prompt = build_prompt("x = ", "", encode_chars, 100, header=header)
    assert prompt.ids == encode_chars("x = ") and prompt.header_tokens == 0


def test_repo_and_path_of_a_document(tmp_path):
    folder = str(tmp_path / "proj")
    assert repo_and_path((tmp_path / "proj" / "pkg" / "m.py").as_uri(), [folder]) == ("proj", "pkg/m.py")
    assert repo_and_path((tmp_path / "other.py").as_uri(), [folder]) == ("", "")
    assert repo_and_path("untitled:Untitled-1", [folder]) == ("", "")


# --- stop strings ------------------------------------------------------------------------------
def test_stop_strings_cut_before_the_earliest():
    assert cut_at_strings("a = 1\n# end\nb = 2", ["b =", "# end"]) == ("a = 1\n", True)
    assert cut_at_strings("a = 1", ["zz", ""]) == ("a = 1", False)


def test_cursor_stop_strings_end_the_completion():
    cursor = cursor_of("def f():\n    ", "\n", stop_strings=["\n\n", ""])
    assert cursor.stop_strings == ("\n\n",)
    text, stop = cut("return 1\n\n    x = 2", cursor)
    assert (text, stop) == ("return 1", True)
    assert finish("return 1\n    y = 2\n\nz", cursor) == "return 1\n    y = 2"
    assert cut("return 1\n", cursor_of("def f():\n    ", "\n"))[1] is False  # no stop strings


def test_stop_option_and_template_choices_are_checked():
    config, problems = Config.from_dict({"decoding": {"stop": ["", "###"]},
                                         "server": {"fim_template": "gpt", "repo_header": "on", "fim": "yes"}})
    assert config.decoding.stop == ["###"]
    assert (config.server.fim_template, config.server.repo_header, config.server.fim) == ("auto", "auto", "auto")
    assert len(problems) == 4
    ok, none = Config.from_dict({"server": {"fim_template": "codestral"}})
    assert ok.server.fim_template == "codestral" and not none


# --- the service's wiring ----------------------------------------------------------------------
def fake_model(vocab: dict[str, int], eos: set[int]):
    """What ``CompletionService._use_template`` reads of a loaded model, and an engine to set."""
    from types import SimpleNamespace

    loaded = SimpleNamespace(tokenizer=SimpleNamespace(get_vocab=lambda: vocab), eos_token_ids=frozenset(eos))
    return loaded, SimpleNamespace(eos_ids=frozenset(eos))


def test_the_service_ends_generations_at_the_template_stop_tokens():
    from rest_lsp.completion.service import CompletionService

    vocab = FAMILIES["qwen"]
    lines: list[str] = []
    service = CompletionService(Config(), [], log=lines.append)
    loaded, engine = fake_model(vocab, {vocab["<|endoftext|>"]})
    service._use_template(loaded, engine)
    assert engine.eos_ids == fim.choose(vocab).stop_ids and vocab["<|im_end|>"] in engine.eos_ids
    assert service.fim is service.template and service.template.name == "qwen"
    assert "prompt template qwen (detected)" in lines[-1]

    off, _ = Config.from_dict({"server": {"fim": "off"}})
    service.apply_config(off)
    service._use_template(loaded, engine)
    assert service.fim is None and service.template.name == "qwen"  # stops stay without FIM prompts
    assert vocab["<|file_sep|>"] in engine.eos_ids


def test_the_service_goes_on_without_a_named_template_the_model_lacks():
    from rest_lsp.completion.service import CompletionService

    lines: list[str] = []
    config, _ = Config.from_dict({"server": {"fim_template": "codellama"}})
    service = CompletionService(config, [], log=lines.append)
    loaded, engine = fake_model(FAMILIES["qwen"], {1000})
    service._use_template(loaded, engine)
    assert service.template is None and service.fim is None and engine.eos_ids == {1000}
    assert "codellama" in lines[0] and "▁<PRE>" in lines[0]
