"""Fill-in-the-middle templates: how each model family wants a prompt laid out, and where it ends.

Data plus pure functions over a vocabulary (token name -> id), so they are tested without a model.
A ``FimTemplate`` names a family's special tokens; ``resolve`` turns it into ``FimTokens`` (ids)
against one model's vocabulary; ``detect`` picks the template whose FIM tokens the vocabulary has.
Sources of the formats: Qwen2.5-Coder's README (FIM and repository-level prompts), the StarCoder2
paper (repository context: ``<repo_name>name<file_sep><fim_prefix>path\\nprefix...``), DeepSeek-Coder's
README, transformers' CodeLlama tokenizer and mistral-common (Codestral: suffix first).
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_lsp.errors import ConfigError


@dataclass(frozen=True)
class FimTemplate:
    """One model family's fill-in-the-middle prompt format, by token names."""

    name: str
    prefix: str
    suffix: str
    #: None: the family has no middle token (the prompt ends with the prefix)
    middle: str | None = None
    #: True: ``suffix_tok suffix prefix_tok prefix``; False: ``prefix_tok prefix suffix_tok suffix middle_tok``
    suffix_first: bool = False
    #: more tokens that end a completion when the vocabulary has them (the FIM tokens always do)
    stops: tuple[str, ...] = ()
    #: text before the prompt naming the repository and the file (``{repo}``, ``{path}``); "" none
    header: str = ""
    #: text right after the opening FIM token (``{path}``): where StarCoder2 saw the file's path
    file_header: str = ""
    #: tokens the header needs; without them in the vocabulary the header is left out
    header_tokens: tuple[str, ...] = ()
    #: the start of ``header`` (``{repo}``) after which other files of the repository go, each as
    #: ``context_file`` (``{path}``, ``{content}``): the model's repository format; "" none
    repo_line: str = ""
    context_file: str = ""

    @property
    def required(self) -> tuple[str, ...]:
        """The token names a vocabulary must have for this template to be used."""
        return tuple(t for t in (self.prefix, self.suffix, self.middle) if t is not None)


@dataclass(frozen=True)
class FimTokens:
    """A template resolved against a vocabulary: the ids prompts are built from and stop at."""

    prefix: int
    suffix: int
    middle: int | None
    suffix_first: bool = False
    name: str = ""
    #: ids that end a generation besides the model's own end-of-sequence ids
    stop_ids: frozenset[int] = frozenset()
    #: the template's header formats; "" when it has none or the vocabulary lacks their tokens
    header: str = ""
    file_header: str = ""
    #: the repository format (see ``FimTemplate.repo_line``); "" when the header is left out
    repo_line: str = ""
    context_file: str = ""

    def headers(self, repo: str, path: str) -> tuple[str, str]:
        """The (header, file header) texts of file ``path`` in repository ``repo``."""
        if not self.header:
            return "", ""
        return self.header.format(repo=repo, path=path), self.file_header.format(path=path)

    @property
    def repo_format(self) -> bool:
        """Whether other files of the repository can precede the file, in the model's own format."""
        return bool(self.header and self.repo_line and self.context_file)

    def context_at(self, repo: str) -> int:
        """Where in ``headers(repo, ...)[0]`` the other files go: after the repository line."""
        return len(self.repo_line.format(repo=repo))

    def context_entry(self, path: str, content: str) -> str:
        """One other file (or part of one) in the repository format."""
        return self.context_file.format(path=path, content=content)


QWEN = FimTemplate(
    "qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
    stops=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>"),
    header="<|repo_name|>{repo}\n<|file_sep|>{path}\n",
    header_tokens=("<|repo_name|>", "<|file_sep|>"),
    # Qwen2.5-Coder's repository-level prompt: <|repo_name|>r\n<|file_sep|>a.py\n...\n<|file_sep|>cur.py\n
    repo_line="<|repo_name|>{repo}\n",
    context_file="<|file_sep|>{path}\n{content}\n",
)
STARCODER = FimTemplate(
    "starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>",
    stops=("<|endoftext|>", "<file_sep>"),
    # StarCoder2 only (StarCoder/SantaCoder have no <repo_name>): its training put the FIM
    # file's path after <fim_prefix>; a prefix-only prompt reads <repo_name>r<file_sep>path\ncode
    header="<repo_name>{repo}<file_sep>",
    file_header="{path}\n",
    header_tokens=("<repo_name>", "<file_sep>"),
    # its repository documents: <repo_name>r<file_sep>a.py\ncode<file_sep>b.py\ncode...
    repo_line="<repo_name>{repo}",
    context_file="<file_sep>{path}\n{content}\n",
)
DEEPSEEK = FimTemplate(
    "deepseek", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>",
    stops=("<|EOT|>", "<｜end▁of▁sentence｜>"),
)
CODELLAMA = FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", stops=("▁<EOT>", "</s>"))
CODESTRAL = FimTemplate("codestral", "[PREFIX]", "[SUFFIX]", None, suffix_first=True, stops=("</s>",))

#: every template, in the order ``detect`` tries them
TEMPLATES: tuple[FimTemplate, ...] = (QWEN, STARCODER, DEEPSEEK, CODELLAMA, CODESTRAL)
TEMPLATE_NAMES: tuple[str, ...] = tuple(t.name for t in TEMPLATES)


def template_named(name: str) -> FimTemplate:
    """The template called ``name``; ``ConfigError`` for an unknown name."""
    for template in TEMPLATES:
        if template.name == name:
            return template
    raise ConfigError(
        f"server.fim_template={name!r} must be auto or one of {', '.join(TEMPLATE_NAMES)}",
        template=name, known=TEMPLATE_NAMES,
    )


def matching(vocab: dict[str, int]) -> list[FimTemplate]:
    """The templates whose FIM tokens are all in ``vocab``, in detection order."""
    return [t for t in TEMPLATES if all(name in vocab for name in t.required)]


def detect(vocab: dict[str, int]) -> FimTemplate | None:
    """The template of the model with vocabulary ``vocab``, or None when none fits."""
    found = matching(vocab)
    return found[0] if found else None


def resolve(template: FimTemplate, vocab: dict[str, int]) -> FimTokens:
    """``template``'s token ids in ``vocab``; ``ConfigError`` when a FIM token is missing.

    Stop tokens and header tokens are optional: those the vocabulary lacks are left out.
    """
    missing = [name for name in template.required if name not in vocab]
    if missing:
        raise ConfigError(
            f"FIM template {template.name!r} does not fit the model: its vocabulary lacks {', '.join(missing)}",
            template=template.name, missing=missing,
        )
    own = [vocab[name] for name in template.required]
    extra = [vocab[name] for name in template.stops if name in vocab]
    has_header = bool(template.header) and all(name in vocab for name in template.header_tokens)
    return FimTokens(
        prefix=vocab[template.prefix],
        suffix=vocab[template.suffix],
        middle=vocab[template.middle] if template.middle is not None else None,
        suffix_first=template.suffix_first,
        name=template.name,
        stop_ids=frozenset(own + extra),
        header=template.header if has_header else "",
        file_header=template.file_header if has_header else "",
        repo_line=template.repo_line if has_header else "",
        context_file=template.context_file if has_header else "",
    )


def choose(vocab: dict[str, int], name: str = "auto") -> FimTokens | None:
    """The FIM tokens of the template ``name`` ("auto": detected; None when none fits)."""
    if name == "auto":
        template = detect(vocab)
        return resolve(template, vocab) if template is not None else None
    return resolve(template_named(name), vocab)
