"""The prompt of one request: what the service holds (template, context session, the documents'
windows, the instruct framing) applied to the prompt builders.

``CompletionService.prompt_for`` calls ``prompt_for`` here; it knows nothing of LSP.
"""

from __future__ import annotations

from typing import Any

from rest_lsp.completion.context_prompt import ContextPrompt
from rest_lsp.completion.instruct import FENCE, build_instruct_prompt, new_body_start
from rest_lsp.completion.prompt import Prompt, build_prompt, line_offset, split_at
from rest_lsp.completion.stops import Cursor, cursor_of
from rest_lsp.completion.uris import repo_and_path


def prompt_for(service: Any, text: str, offset: int, uri: str = "", session: bool = True,
               restart: bool = False) -> tuple[Prompt, Cursor, str]:
    """The prompt, the cursor, and the text of the prefix's last token, taken back from the
    prompt for the model to write again (token healing, see ``prompt.heal_last``).

    ``uri`` names the document: its workspace folder and path make the repository header, and it
    is the one file the context block never quotes.  ``session``: the block is the completion
    session's (chosen when one starts, then kept: ``context_session``); False chooses one for this
    prompt alone and leaves the session as it is (the history warm-up); ``restart``: a new
    session's block (the document warm-up).  A session prompt keeps the document's previous window
    start while it fits (``prompt.fit_prefix``).  A cursor that begins a new function body is
    asked of an instruct model in its chat form (``completion.instruct``, ``server.instruct``).
    """
    prefix, suffix = split_at(text, offset)
    tok = service.loaded.tokenizer
    server = service.config.server
    stops = tuple(service.config.decoding.stop)

    def encode(s: str) -> list[int]:
        return tok.encode(s, add_special_tokens=False) if s else []

    def token_text(t: int) -> str:
        return tok.decode([t])

    start = new_body_start(prefix, suffix)
    # a new function body is an empty block: all of it is the completion, whatever the cursor's column
    one_statement = server.multiline == "auto" and start is None
    if start is not None and service.chat is not None:
        prompt = build_instruct_prompt(prefix, start, encode, server.max_prompt_tokens, service.chat, token_text)
        return prompt, cursor_of(prefix, suffix, (*stops, FENCE), one_statement), prompt.healed_text
    header, file_header = "", ""
    repo, path = repo_and_path(uri, service.folders)
    if service.template is not None and server.repo_header == "auto" and repo and path:
        header, file_header = service.template.headers(repo, path)
    chooser = ContextPrompt(service.store, server, service.template, encode, service.log)
    block = chooser.block(text, prefix, uri, repo, path, header, file_header,
                          service.context_session if session else None, restart)
    keep = line_offset(prefix, service.window_line(uri)) if session and server.warm_documents else None
    if session:  # what the status shows: the block of the user's requests
        service.last_context = block
    prompt = build_prompt(prefix, suffix, encode, server.max_prompt_tokens, service.fim, header=header,
                          file_header=file_header, token_text=token_text, max_suffix=server.max_suffix_tokens,
                          context=block.prompt_context(), keep_start=keep)
    if session and prompt.prefix_text and prefix.endswith(prompt.prefix_text):
        service.keep_window(uri, prefix.count("\n", 0, len(prefix) - len(prompt.prefix_text)))
    if not prompt.ids:  # an empty document: start from the end-of-text token
        eos = sorted(service.loaded.eos_token_ids)
        prompt = Prompt(ids=eos[:1], prefix_text="", suffix_text="", fim=False)
    return prompt, cursor_of(prefix, suffix, stops, one_statement), prompt.healed_text
