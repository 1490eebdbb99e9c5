-- Defaults of rest-lsp for Neovim.  Pure data: tests/editors/test_defaults.py reads this file and
-- checks `settings` against the server's own defaults (rest_lsp.config.schema.Config), so that they stay
-- one source of truth.  Only the settings you pass to setup() are sent to the server (a server
-- config file still applies to the rest); these values document what you get otherwise.
return {
  -- the server command; `rest-lsp` must be on PATH, or give its full path
  cmd = { 'rest-lsp', 'serve', '--stdio' },
  -- filetypes to attach to; nil means every file buffer
  filetypes = nil,
  -- files or folders that mark the workspace root (else the file's folder)
  root_markers = { '.git', 'pyproject.toml', 'setup.py', 'setup.cfg', 'package.json', 'Cargo.toml', 'go.mod' },
  -- Neovim 0.11: 'ghost' (ghost text the plugin draws) or 'popup' (vim.lsp.completion's menu);
  -- 0.12+ always shows ghost text through vim.lsp.inline_completion
  ui = 'ghost',
  -- ask for a completion automatically while typing (the 0.11 popup; ghost text always is)
  autotrigger = true,
  -- insert-mode keys; false disables a mapping
  keys = {
    accept = '<Tab>', -- accept the ghost text (falls back to a Tab)
    accept_line = '<C-l>', -- 0.11 ghost text: accept its first line
    accept_word = '<M-Right>', -- ghost text: accept its next word (the rest stays shown on 0.11)
    dismiss = '<C-]>', -- 0.11 ghost text: dismiss it
    next = '<M-]>', -- ghost text: next candidate
    prev = '<M-[>', -- ghost text: previous candidate
    trigger = '<C-Space>', -- 0.11: ask for a completion now, several candidates (popup: accept with <C-y>)
  },
  -- server settings, nested like the server's configuration (rest-lsp config sections)
  settings = {
    model = {
      name = '', -- qwen2.5-coder-0.5b|1.5b, a .gguf file, ollama:NAME, a folder, a hub name, 'embedded'; empty: the default (Qwen2.5-Coder-0.5B when installed)
      device = 'auto', -- auto, cpu, cuda, cuda:N
      dtype = 'auto', -- auto, float32, bfloat16, float16
      threads = 0, -- torch CPU threads; 0 means all cores
    },
    index = {
      corpus_roots = {}, -- extra folders to retrieve from; empty means the Python standard library
      exclude_globs = {}, -- extra gitignore-style patterns never indexed
      index_dir = '', -- empty means the user cache directory
      remote_datastores = {}, -- served corpus indexes (`rest-lsp datastore serve`), 'http://host:port', one more tier each
      remote_budget_ms = 5.0, -- the most a decoding step waits for the remote tiers
    },
    decoding = {
      max_new_tokens = 64,
      draft_budget = 0, -- draft-tree nodes per step; 0 is adaptive
      max_draft_budget = 64,
      stop = {}, -- extra stop strings: a completion ends before the first of them
    },
    server = {
      debounce_ms = 75,
      disabled_languages = {}, -- filetypes without completion
      max_items = 3, -- items of an explicit request, to cycle through
      classic_completion = false, -- also offer textDocument/completion to inline-capable clients
      max_prompt_tokens = 1024,
      max_suffix_tokens = 64, -- most tokens after the cursor in the prompt (each keystroke prefills them again)
      fim = 'auto', -- fill-in-the-middle prompts: auto, on, off
      fim_template = 'auto', -- prompt format and stop tokens: auto (detected), qwen, starcoder, deepseek, codellama, codestral
      repo_header = 'auto', -- prompts start with the folder name and file path where the template has a header: auto, off
    },
  },
}
