-- rest-lsp for Neovim: starts `rest-lsp serve --stdio` for file buffers and shows its completions.
--
-- Neovim >= 0.12: ghost text through `vim.lsp.inline_completion` (Tab accepts, M-Right accepts a
-- word, M-] / M-[ cycle).  Neovim 0.11: ghost text drawn by the plugin (rest_lsp.ghost: Tab
-- accepts, C-l accepts a line, M-Right a word, C-] dismisses, C-Space asks, M-] / M-[ cycle), or
-- with `ui = 'popup'` the completion popup
-- through `vim.lsp.completion` (multi-line items are inserted whole on accept).  Neovim 0.10:
-- the omnifunc (<C-x><C-o>).
--
--   require('rest_lsp').setup({ settings = { decoding = { max_new_tokens = 32 } } })
--
-- Commands: :RestLspStatus, :RestLspReindex, :RestLspToggle.  Statusline:
-- `%{v:lua.require'rest_lsp'.statusline()}`.

local M = {}

local NAME = 'rest_lsp'
local api = vim.api

--- What the statusline shows; updated from `$/progress`, requests and `rest-lsp.status`.
M.state = {
  phase = 'off', -- off (not started), starting, indexing, ready, busy, disabled, error
  progress = nil, -- "42% message" while indexing
  last = nil, -- { latency_ms, tokens_per_step } of the last completion
  enabled = true,
  pending = 0,
  --- the server's prompt template line ("rest-lsp: prompt template qwen (detected); fill-in-the-
  --- middle on; …" or "… no FIM template fits the model …"), logged when the model loads
  fim = nil,
  --- the last error the server reported: { message, time (os.time()) }
  last_error = nil,
}

M.config = nil

local function has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

--- `client:request` on 0.11+, `client.request` before.
local function request(client, method, params, handler, bufnr)
  if has('0.11') then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

--- Nested settings without empty sections (an empty Lua table would be sent as a JSON list).
local function prune(settings)
  local out = {}
  for section, values in pairs(settings or {}) do
    if type(values) == 'table' and next(values) ~= nil then
      out[section] = values
    end
  end
  return out
end

local function redraw()
  vim.schedule(function()
    pcall(vim.cmd.redrawstatus)
  end)
end

--- The rest-lsp clients (of the current buffer first, else any).
local function clients(bufnr)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  local found = get({ name = NAME, bufnr = bufnr })
  if #found == 0 then
    found = get({ name = NAME })
  end
  return found
end

--- Run a server command; `callback(err, result)`.
function M.execute(command, arguments, callback)
  local client = clients(api.nvim_get_current_buf())[1]
  if not client then
    vim.notify('rest-lsp: the server is not running', vim.log.levels.WARN)
    return false
  end
  request(client, 'workspace/executeCommand', { command = command, arguments = arguments or {} }, function(err, result)
    if callback then
      callback(err, result)
    end
  end)
  return true
end

--- Refresh the statusline figures from `rest-lsp.status`.
local function refresh_status()
  local client = clients(api.nvim_get_current_buf())[1]
  if not client then
    return
  end
  request(client, 'workspace/executeCommand', { command = 'rest-lsp.status', arguments = {} }, function(err, status)
    if err or type(status) ~= 'table' then
      return
    end
    M.state.enabled = status.enabled ~= false
    if status.state == 'ready' and M.state.phase ~= 'busy' then
      M.state.phase = M.state.enabled and 'ready' or 'disabled'
    end
    local last = status.last_completion
    if type(last) == 'table' then
      M.state.last = { latency_ms = last.latency_ms, tokens_per_step = last.tokens_per_step }
    end
    redraw()
  end)
end

--- One line for the statusline.
function M.statusline()
  local s = M.state
  if s.phase == 'off' then
    return ''
  elseif s.phase == 'indexing' or s.phase == 'starting' then
    return 'rest-lsp: ' .. (s.progress or s.phase)
  elseif s.phase == 'disabled' then
    return 'rest-lsp: off'
  elseif s.phase == 'error' then
    return 'rest-lsp: error'
  elseif s.phase == 'busy' then
    return 'rest-lsp: …'
  end
  local parts = { 'rest-lsp' }
  if s.last and type(s.last.latency_ms) == 'number' then
    table.insert(parts, ('%d ms'):format(math.floor(s.last.latency_ms + 0.5)))
  end
  if s.last and type(s.last.tokens_per_step) == 'number' then
    table.insert(parts, ('%.1f tok/step'):format(s.last.tokens_per_step))
  end
  return table.concat(parts, ' ')
end

--- `$/progress` of the server (LspProgress autocmd): indexing progress and readiness.
local function on_progress(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  if not client or client.name ~= NAME then
    return
  end
  local value = (ev.data.params or {}).value or {}
  if value.kind == 'end' then
    local message = value.message or ''
    M.state.progress = nil
    if message:find('failed', 1, true) then
      M.state.phase = 'error'
      M.state.progress = message
    else
      M.state.phase = M.state.enabled and 'ready' or 'disabled'
    end
    refresh_status()
  else
    M.state.phase = 'indexing'
    local pct = value.percentage and (value.percentage .. '%') or nil
    local text = table.concat(vim.tbl_filter(function(x)
      return x ~= nil and x ~= ''
    end, { pct, value.message or value.title }), ' ')
    M.state.progress = text ~= '' and text or 'indexing'
  end
  redraw()
end

--- Busy while a completion request is pending (LspRequest autocmd, 0.10+).
local function on_request(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  local req = ev.data.request or {}
  if not client or client.name ~= NAME then
    return
  end
  if req.method ~= 'textDocument/completion' and req.method ~= 'textDocument/inlineCompletion' then
    return
  end
  if req.type == 'pending' then
    M.state.pending = M.state.pending + 1
  else
    M.state.pending = math.max(0, M.state.pending - 1)
    if req.type == 'complete' then
      refresh_status()
    end
  end
  if M.state.phase == 'ready' or M.state.phase == 'busy' then
    M.state.phase = M.state.pending > 0 and 'busy' or 'ready'
  end
  redraw()
end

--- Remember an error the server reported (`:checkhealth rest_lsp` shows the last one).
local function note_error(message)
  M.state.last_error = { message = message, time = os.time() }
end

--- `window/showMessage`: errors and warnings (a model that fails, a bad setting) are remembered.
local function show_message_handler(err, result, ctx, config)
  if result and type(result.message) == 'string' and (result.type == 1 or result.type == 2) then
    note_error(result.message)
  end
  return vim.lsp.handlers['window/showMessage'](err, result, ctx, config)
end

--- `window/logMessage`: the ready line (also the end of progress), the prompt template and failures.
local function log_message_handler(err, result, ctx, config)
  local message = result and result.message or ''
  if message:find('prompt template', 1, true) or message:find('no FIM template', 1, true)
    or message:find('has no FIM tokens', 1, true) then
    M.state.fim = message
  end
  if result and result.type == 1 then -- Error
    note_error(message)
  end
  if message:sub(1, #'rest-lsp ready') == 'rest-lsp ready' then
    if M.state.phase == 'starting' or M.state.phase == 'indexing' then
      M.state.phase = M.state.enabled and 'ready' or 'disabled'
      M.state.progress = nil
      redraw()
    end
  elseif message:find('indexing failed', 1, true) then
    M.state.phase = 'error'
    M.state.progress = message
    note_error(message)
    redraw()
  end
  return vim.lsp.handlers['window/logMessage'](err, result, ctx, config)
end

--- The completion item as a popup entry: the first line of the text (the whole text is
--- inserted on accept by `on_complete_done`).
local function convert(item)
  local text = (item.textEdit and item.textEdit.newText) or item.insertText or item.label or ''
  return { word = vim.split(text, '\n', { plain = true })[1], menu = '[rest-lsp]' }
end

--- On accept of a rest-lsp item (0.11 popup), replace the inserted first line by the whole text.
local function on_complete_done(bufnr)
  local done = vim.v.completed_item
  local reason = (vim.v.event or {}).reason
  if reason and reason ~= 'accept' then
    return
  end
  local lsp_data = vim.tbl_get(done or {}, 'user_data', 'nvim', 'lsp') or {}
  local item, client_id = lsp_data.completion_item, lsp_data.client_id
  local client = client_id and vim.lsp.get_client_by_id(client_id)
  if not item or not client or client.name ~= NAME then
    return
  end
  local text = (item.textEdit and item.textEdit.newText) or item.insertText
  local word = done.word or ''
  if type(text) ~= 'string' or text == word then
    return
  end
  local row, col = unpack(api.nvim_win_get_cursor(0)) -- col: bytes, 0-based, after the word
  local start = col - #word
  local line = api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] or ''
  if start < 0 or line:sub(start + 1, col) ~= word then
    return
  end
  local lines = vim.split(text, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row - 1, start, row - 1, col, lines)
  local last_row = row + #lines - 1
  local last_col = (#lines == 1 and start or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { last_row, last_col })
end

--- Accept-word on Neovim 0.12+: insert the next word of `item` (a vim.lsp.inline_completion.Item:
--- insert_text, range as a vim.Range or nil for the cursor, command, client_id); the last word
--- runs the item's command (the acceptance the server counts), as accepting it whole does.
local function accept_word_of(bufnr, item)
  local words = require('rest_lsp.words')
  local text = item.insert_text
  text = type(text) == 'table' and text.value or text
  if type(text) ~= 'string' then
    return
  end
  local row, col = unpack(api.nvim_win_get_cursor(0))
  local start = item.range and item.range.start
  local typed = ''
  if start and start.row == row - 1 and start.col <= col then
    typed = (api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] or ''):sub(start.col + 1, col)
  end
  local rest = text:sub(1, #typed) == typed and text:sub(#typed + 1) or text
  local word = words.next_word(rest)
  words.insert_at_cursor(bufnr, word)
  if word == rest and item.command then
    local client = vim.lsp.get_client_by_id(item.client_id)
    if client then
      client:exec_cmd(item.command, { bufnr = bufnr })
    end
  end
end

--- Keys and completion for one buffer (LspAttach of a rest-lsp client).
local function on_attach(client, bufnr)
  local config = M.config
  local keys = config.keys or {}
  local function map(lhs, rhs, opts)
    if lhs then
      vim.keymap.set('i', lhs, rhs, vim.tbl_extend('force', { buffer = bufnr }, opts or {}))
    end
  end
  local supports = function(method)
    if has('0.11') then
      return client:supports_method(method, bufnr)
    end
    return client.supports_method(method)
  end

  if vim.lsp.inline_completion and supports('textDocument/inlineCompletion') then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    map(keys.accept, function()
      if not vim.lsp.inline_completion.get() then
        return keys.accept
      end
    end, { expr = true, replace_keycodes = true, desc = 'rest-lsp: accept the completion' })
    map(keys.accept_word, function()
      -- get() hands the shown item to on_accept, which inserts its next word only; Neovim then
      -- asks again at the new cursor (the rest of the completion, as the server sees it now)
      if not vim.lsp.inline_completion.get({ on_accept = function(item)
        accept_word_of(bufnr, item)
      end }) then
        return keys.accept_word
      end
    end, { expr = true, replace_keycodes = true, desc = 'rest-lsp: accept the next word of the completion' })
    map(keys.next, function()
      vim.lsp.inline_completion.select({ count = 1 })
    end, { desc = 'rest-lsp: next completion' })
    map(keys.prev, function()
      vim.lsp.inline_completion.select({ count = -1 })
    end, { desc = 'rest-lsp: previous completion' })
    M.mode = 'inline'
  elseif config.ui ~= 'popup' and supports('textDocument/inlineCompletion') then
    -- Neovim 0.11: ghost text drawn by the plugin (rest_lsp.ghost)
    local delay = math.max(vim.tbl_get(config, 'settings', 'server', 'debounce_ms') or 75, 10)
    require('rest_lsp.ghost').attach(bufnr, client, keys, delay)
    map(keys.trigger, function()
      require('rest_lsp.ghost').request(bufnr, client, true)
    end, { desc = 'rest-lsp: complete now' })
    M.mode = 'ghost'
  elseif vim.lsp.completion and supports('textDocument/completion') then
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = false, convert = convert })
    api.nvim_buf_call(bufnr, function()
      local opts = vim.opt_local.completeopt:get()
      if not vim.tbl_contains(opts, 'menuone') then
        vim.opt_local.completeopt:append('menuone')
      end
    end)
    local group = api.nvim_create_augroup('rest_lsp_buf_' .. bufnr, { clear = true })
    -- the text an accepted item inserts changes the buffer too: that change must not ask for
    -- the next completion at once (the popup would open again over what was just accepted)
    local inserted_by_completion = false
    api.nvim_create_autocmd('CompleteDone', {
      group = group,
      buffer = bufnr,
      callback = function()
        local ev = vim.v.event or {}
        -- 'reason' (Neovim 0.11+) tells an accepted item from a cancelled menu
        inserted_by_completion = ev.reason == 'accept' or (ev.reason == nil and (ev.complete_word or '') ~= '')
        on_complete_done(bufnr)
      end,
    })
    map(keys.trigger, function()
      vim.lsp.completion.get()
    end, { desc = 'rest-lsp: complete now' })
    if config.autotrigger then
      local timer = assert((vim.uv or vim.loop).new_timer())
      local delay = math.max(vim.tbl_get(config, 'settings', 'server', 'debounce_ms') or 75, 10)
      api.nvim_create_autocmd({ 'TextChangedI' }, {
        group = group,
        buffer = bufnr,
        callback = function()
          if vim.fn.pumvisible() == 1 then
            return
          end
          if inserted_by_completion then
            inserted_by_completion = false
            timer:stop()
            return
          end
          timer:stop()
          timer:start(delay, 0, vim.schedule_wrap(function()
            if api.nvim_get_current_buf() == bufnr and api.nvim_get_mode().mode:sub(1, 1) == 'i' then
              -- an automatic request: one item, debounced by the server as well
              vim.lsp.completion.get({ ctx = { triggerKind = 3 } })
            end
          end))
        end,
      })
      api.nvim_create_autocmd({ 'InsertLeave', 'BufUnload' }, {
        group = group,
        buffer = bufnr,
        callback = function()
          timer:stop()
        end,
      })
    end
    M.mode = 'completion'
  else
    vim.bo[bufnr].omnifunc = 'v:lua.vim.lsp.omnifunc'
    M.mode = 'omnifunc'
  end
  if config.on_attach then
    config.on_attach(client, bufnr)
  end
end

local SUBCOMMANDS = { status = 'RestLspStatus', reindex = 'RestLspReindex', toggle = 'RestLspToggle' }

local function create_commands()
  api.nvim_create_user_command('RestLsp', function(cmd)
    local target = SUBCOMMANDS[cmd.args]
    if not target then
      vim.notify('rest-lsp: :RestLsp status|reindex|toggle (got ' .. vim.inspect(cmd.args) .. ')', vim.log.levels.ERROR)
      return
    end
    vim.cmd(target)
  end, {
    nargs = 1,
    desc = 'rest-lsp: status, reindex or toggle',
    complete = function(lead)
      return vim.tbl_filter(function(name)
        return name:sub(1, #lead) == lead
      end, vim.tbl_keys(SUBCOMMANDS))
    end,
  })
  api.nvim_create_user_command('RestLspStatus', function()
    M.execute('rest-lsp.status', {}, function(err, status)
      if err then
        vim.notify('rest-lsp.status: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
        return
      end
      M.state.enabled = status.enabled ~= false
      vim.notify('rest-lsp status\n' .. vim.inspect(status), vim.log.levels.INFO)
    end)
  end, { desc = 'rest-lsp: show the server status' })
  api.nvim_create_user_command('RestLspReindex', function()
    M.execute('rest-lsp.reindex', {}, function(err)
      if err then
        vim.notify('rest-lsp.reindex: ' .. (err.message or ''), vim.log.levels.ERROR)
      else
        M.state.phase = 'indexing'
        M.state.progress = 'reindexing'
        redraw()
      end
    end)
  end, { desc = 'rest-lsp: rebuild the index' })
  api.nvim_create_user_command('RestLspToggle', function()
    M.execute('rest-lsp.toggle', {}, function(err, result)
      if err or type(result) ~= 'table' then
        return
      end
      M.state.enabled = result.enabled
      M.state.phase = result.enabled and 'ready' or 'disabled'
      vim.notify('rest-lsp: completions ' .. (result.enabled and 'on' or 'off'))
      redraw()
    end)
  end, { desc = 'rest-lsp: turn completions on or off' })
end

--- Start rest-lsp for file buffers.  `opts` overrides `require('rest_lsp.defaults')`.
function M.setup(opts)
  opts = opts or {}
  local defaults = vim.deepcopy(require('rest_lsp.defaults'))
  local user_settings = opts.settings or {}
  M.config = vim.tbl_deep_extend('force', defaults, opts)
  local config = M.config
  -- only what the user set is sent: a server config file still applies to the rest
  local init_options = prune(user_settings)

  local group = api.nvim_create_augroup('rest_lsp', { clear = true })
  api.nvim_create_autocmd('LspProgress', { group = group, callback = on_progress })
  if has('0.10') then
    api.nvim_create_autocmd('LspRequest', { group = group, callback = on_request })
  end
  api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == NAME then
        on_attach(client, ev.buf)
      end
    end,
  })
  create_commands()

  local lsp_config = {
    name = NAME,
    cmd = config.cmd,
    cmd_env = config.cmd_env,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    init_options = init_options,
    handlers = { ['window/logMessage'] = log_message_handler, ['window/showMessage'] = show_message_handler },
    on_init = function()
      if M.state.phase == 'off' then
        M.state.phase = 'starting'
      end
    end,
    on_exit = function()
      M.state.phase = 'off'
      redraw()
    end,
  }
  if vim.fn.executable(config.cmd[1]) == 0 then
    vim.notify(
      ('rest-lsp: the server executable %q was not found. Install rest-lsp (bash scripts/install.sh in a clone, or its wheel: see its README) and pass '
        .. "its full path: require('rest_lsp').setup({ cmd = { '/path/to/rest-lsp', 'serve', '--stdio' } })"):format(
        config.cmd[1]
      ),
      vim.log.levels.ERROR
    )
    return
  end
  M.state.phase = 'starting'

  if vim.lsp.config and vim.lsp.enable then -- Neovim 0.11+
    lsp_config.root_dir = function(bufnr, on_dir)
      local path = api.nvim_buf_get_name(bufnr)
      on_dir(vim.fs.root(bufnr, config.root_markers) or (path ~= '' and vim.fs.dirname(path)) or vim.fn.getcwd())
    end
    vim.lsp.config(NAME, lsp_config)
    vim.lsp.enable(NAME)
  else -- Neovim 0.10: start per buffer
    api.nvim_create_autocmd('FileType', {
      group = group,
      callback = function(ev)
        if vim.bo[ev.buf].buftype ~= '' then
          return
        end
        if config.filetypes and not vim.tbl_contains(config.filetypes, vim.bo[ev.buf].filetype) then
          return
        end
        local path = api.nvim_buf_get_name(ev.buf)
        local root = vim.fs.root(ev.buf, config.root_markers) or (path ~= '' and vim.fs.dirname(path)) or vim.fn.getcwd()
        vim.lsp.start(vim.tbl_extend('force', lsp_config, { root_dir = root }), { bufnr = ev.buf })
      end,
    })
  end
end

--- Send new settings to a running server (`workspace/didChangeConfiguration`), nested as in setup().
function M.update_settings(settings)
  for _, client in ipairs(clients()) do
    local params = { settings = { ['rest-lsp'] = prune(settings) } }
    if has('0.11') then
      client:notify('workspace/didChangeConfiguration', params)
    else
      client.notify('workspace/didChangeConfiguration', params)
    end
  end
end

return M
