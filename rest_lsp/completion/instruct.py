"""Instruct framing: a function body written from its signature and docstring, asked of an
instruct model in the chat form it was tuned on.

Why: an instruct model writes a function from its docstring far better when asked to than when
it merely continues a file.  Measured on the packaged Qwen2.5-Coder-0.5B-Instruct, the first 40
HumanEval problems through the service's stop rules: 25 of 40 pass with the plain prompt, 32 of 40
with this framing (BENCHMARKS.md, session 13, repeats it on all 164).

When: ``server.instruct`` is "on", or "auto" and the model is an instruct model
(``instruct_model``); and the cursor begins the body of a Python function that so far holds its
docstring and nothing else, with nothing of that function after the cursor (``new_body_start``):
the docstring says what to write.  Anywhere else, a bare signature included (asked in chat form,
the model tends to write a docstring first), the prompt is the file's own (``prompt.build_prompt``).

The prompt: the model's chat template with a system line, the user asking to complete the
document's text before the cursor (its window, ``ASK``), and the assistant's reply begun with a
code fence and the function's text up to the cursor; the model continues the body.  The
completion ends at the closing fence (``FENCE``, a stop string) or where the stop rules end a block.
"""

from __future__ import annotations

import ast
import re
import textwrap
from typing import Any, Callable, Iterable

from rest_lsp.completion.prompt import Encode, Prompt, fit_prefix, heal_last

SYSTEM = "You are a helpful assistant."
ASK = "Complete the following Python code:\n```python\n{code}```"
OPEN = "```python\n"
FENCE = "```"

_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+\w", re.M)


def instruct_model(names: Iterable[str]) -> bool:
    """Whether a model is an instruct model, by the names it goes by (its ``model.name``, folder,
    GGUF file, upstream repository): one of them says "instruct"."""
    return any("instruct" in (name or "").lower() for name in names)


def model_names(loaded: Any) -> list[str]:
    """The names a loaded model goes by: its source, ``model.name``, folder, GGUF file, and a
    packaged model's upstream repository."""
    from rest_lsp.models.catalog import PACKAGED

    resolved = getattr(loaded, "resolved", None)
    names = [str(getattr(loaded, "source", "") or ""), str(getattr(loaded.tokenizer, "name_or_path", "") or "")]
    if resolved is not None:
        names += [resolved.name, resolved.folder, resolved.gguf]
        packaged = PACKAGED.get(resolved.name)
        if packaged is not None:
            names.append(packaged.upstream)
    return names


def new_body_start(prefix: str, suffix: str) -> int | None:
    """The offset in ``prefix`` of the ``def`` line whose new body the cursor begins, or None.

    The cursor's line is blank up to it; the function's body before it is its docstring alone
    (Python's parser says so, with a ``pass`` put at the cursor); the first non-blank line after
    the cursor is indented no deeper than the ``def`` (nothing of the function follows).
    """
    line_start = prefix.rfind("\n") + 1
    if prefix[line_start:].strip():
        return None
    found = list(_DEF.finditer(prefix))
    if not found:
        return None
    match = found[-1]
    indent = len(match.group(1).expandtabs())
    source = textwrap.dedent(prefix[match.start():line_start]) if indent else prefix[match.start():line_start]
    body_indent = " " * 4
    try:
        tree = ast.parse(source.rstrip("\n") + "\n" + body_indent + "pass\n")
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    body = tree.body[0].body  # the docstring, then the pass put at the cursor
    if len(body) != 2 or not isinstance(body[1], ast.Pass):
        return None
    if not (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        return None
    following = next((line for line in suffix.split("\n")[1:] if line.strip()), None)
    if suffix.split("\n", 1)[0].strip():  # text after the cursor on its line
        return None
    if following is not None and len(following) - len(following.lstrip()) > indent:
        return None
    return match.start()


def framed_text(render: Callable[[list[dict[str, str]]], str], code: str, function: str) -> tuple[str, str]:
    """(the chat up to the assistant's reply, the reply's beginning): ``render`` is the model's
    chat template (messages -> text, with the generation prompt); ``code`` the document's text
    before the cursor the user shows; ``function`` the function's text up to the cursor."""
    head = render([{"role": "system", "content": SYSTEM}, {"role": "user", "content": ASK.format(code=code)}])
    return head, OPEN + function


def chat_renderer(tokenizer: Any) -> Callable[[list[dict[str, str]]], str] | None:
    """The tokenizer's chat template as a renderer (None: it has none)."""
    if not getattr(tokenizer, "chat_template", None):
        return None

    def render(messages: list[dict[str, str]]) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    return render


def build_instruct_prompt(prefix: str, start: int, encode: Encode, budget: int,
                          render: Callable[[list[dict[str, str]]], str],
                          token_text: Callable[[int], str] | None = None) -> Prompt:
    """The instruct-framed prompt of a cursor after ``prefix`` that begins the body of the
    function whose ``def`` starts at ``start`` (``new_body_start``), within ``budget`` tokens.

    The user shows the longest window of ``prefix`` (``prompt.fit_prefix``) that leaves room for
    the chat's own tokens and the reply's; the reply begins with the function's text, whose last
    token is healed as a file prompt's is (``prompt.heal_last``)."""
    function = prefix[start:]
    empty_head, reply = framed_text(render, "", function)
    reply_ids = encode(reply)
    room = max(1, budget - len(encode(empty_head)) - len(reply_ids))
    code, _ = fit_prefix(prefix, encode, room)
    head, _ = framed_text(render, code, function)
    reply_ids, healed, healed_text = heal_last(reply_ids, reply, token_text, keep_one=True, encode=encode)
    return Prompt(ids=[*encode(head), *reply_ids], prefix_text=function, suffix_text="", fim=False,
                  healed=healed, healed_text=healed_text, framing="instruct")
