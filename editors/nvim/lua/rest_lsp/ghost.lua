-- Ghost text for Neovim 0.11 (0.12+ has vim.lsp.inline_completion): the plugin asks for
-- `textDocument/inlineCompletion` itself, debounced, cancelling the request in flight, and draws
-- the first item with extmarks (the first line inline at the cursor, the rest as virtual lines).
-- Accept it whole (Tab), its first line only, its next word (the rest stays shown), or dismiss
-- it; cycle through the items of an explicit request (several); moving or typing clears it.

local M = {}

local api, uv = vim.api, vim.uv or vim.loop
M.ns = api.nvim_create_namespace('rest_lsp_ghost')

--- Per buffer: { timer, pending = { client, id }, items (the candidates of the last result), index,
--- item = items[index] shown: { text, row, start_col, col, command, client } }
local buffers = {}

local function client_call(client, method, ...)
  if vim.fn.has('nvim-0.11') == 1 then
    return client[method](client, ...)
  end
  return client[method](...)
end

local function cancel(b)
  if b.pending then
    pcall(client_call, b.pending.client, 'cancel_request', b.pending.id)
    b.pending = nil
  end
end

--- Remove the ghost text of `bufnr` (and forget its items).
function M.clear(bufnr)
  local b = buffers[bufnr]
  if b then
    b.item, b.items = nil, nil
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Whether ghost text is shown in `bufnr`.
function M.visible(bufnr)
  local b = buffers[bufnr]
  return b ~= nil and b.item ~= nil
end

local function item_text(item)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value
  end
  return type(text) == 'string' and text or nil
end

--- The byte column of an LSP position on `line` (the client's position encoding).
local function byte_col(line, character, encoding)
  local ok, col = pcall(vim.str_byteindex, line, encoding or 'utf-16', character, false)
  if ok and col then
    return col
  end
  return math.min(character, #line)
end

--- The items of a result that fit at (row, col): { text, start_col, command } each, where the
--- text replaces [start_col, col] of the line (what is typed there already is not drawn again).
local function candidates(bufnr, client, result, row, col)
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local out = {}
  for _, item in ipairs(result and (result.items or result) or {}) do
    local text = item_text(item)
    local start_col = col
    if item.range and item.range.start.line == row then
      start_col = byte_col(line, item.range.start.character, client.offset_encoding)
    end
    local typed = line:sub(start_col + 1, col)
    if text and text ~= '' and text:sub(1, #typed) == typed then
      table.insert(out, { text = text, start_col = start_col, command = item.command })
    end
  end
  return out
end

--- Draw the candidate `b.items[b.index]` at the cursor: its first line inline, the rest as
--- virtual lines; with several, its place among them at the end (as vim.lsp.inline_completion does).
local function draw(bufnr, b)
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local it = b.items[b.index]
  local typed = #(api.nvim_buf_get_lines(bufnr, it.row, it.row + 1, false)[1] or ''):sub(it.start_col + 1, it.col)
  local lines = vim.split(it.text:sub(typed + 1), '\n', { plain = true })
  local chunks = {}
  for i, text in ipairs(lines) do
    chunks[i] = { { text, 'Comment' } }
  end
  if #b.items > 1 then
    table.insert(chunks[#chunks], { (' (%d/%d)'):format(b.index, #b.items), 'NonText' })
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, it.row, it.col, {
    virt_text = chunks[1],
    virt_text_pos = 'inline',
    virt_lines = #chunks > 1 and { unpack(chunks, 2) } or nil,
    hl_mode = 'combine',
  })
  b.item = it
end

local function show(bufnr, client, result, row, col, tick)
  local b = buffers[bufnr]
  if not b or not api.nvim_buf_is_valid(bufnr) or api.nvim_buf_get_changedtick(bufnr) ~= tick then
    return -- typed on meanwhile: a newer request is coming
  end
  local cursor = api.nvim_win_get_cursor(0)
  if api.nvim_get_current_buf() ~= bufnr or cursor[1] - 1 ~= row or cursor[2] ~= col
    or api.nvim_get_mode().mode:sub(1, 1) ~= 'i' then
    return
  end
  local items = candidates(bufnr, client, result, row, col)
  if #items == 0 then
    return
  end
  for _, it in ipairs(items) do
    it.row, it.col, it.client = row, col, client
  end
  b.items, b.index = items, 1
  draw(bufnr, b)
end

--- Show the candidate `count` places after the one shown (before it when negative, wrapping
--- around); false when no ghost text is shown.
function M.select(bufnr, count)
  local b = buffers[bufnr]
  if not (b and b.item and b.items) then
    return false
  end
  b.index = (b.index - 1 + count) % #b.items + 1
  draw(bufnr, b)
  return true
end

--- Ask for a completion at the cursor now (the request in flight is cancelled); `invoked`: the
--- user asked (the server answers at once, without its debounce), else typing did.
function M.request(bufnr, client, invoked)
  local b = buffers[bufnr]
  if not b then
    return
  end
  cancel(b)
  M.clear(bufnr)
  local row, col = unpack(api.nvim_win_get_cursor(0))
  row = row - 1
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = invoked and 1 or 2 } -- Invoked or Automatic
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local ok, id = client_call(client, 'request', 'textDocument/inlineCompletion', params, function(err, result)
    if b.pending and b.pending.tick == tick then
      b.pending = nil
    end
    if not err then
      show(bufnr, client, result, row, col, tick)
    end
  end, bufnr)
  if ok then
    b.pending = { client = client, id = id, tick = tick }
  end
end

--- Insert the ghost text (whole, or its first line); false when none is shown.
function M.accept(bufnr, line_only)
  local b = buffers[bufnr]
  local it = b and b.item
  if not it then
    return false
  end
  M.clear(bufnr)
  local text = it.text
  if line_only then
    local typed = #(api.nvim_buf_get_lines(bufnr, it.row, it.row + 1, false)[1] or ''):sub(it.start_col + 1, it.col)
    local newline = text:find('\n', typed + 1, true)
    if newline then
      text = text:sub(1, newline - 1)
    end
  end
  local lines = vim.split(text, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, it.row, it.start_col, it.row, it.col, lines)
  local last_row = it.row + #lines
  local last_col = (#lines == 1 and it.start_col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { last_row, last_col })
  if it.command and not line_only then -- acceptance reaches the server (rest-lsp.accepted)
    client_call(it.client, 'request', 'workspace/executeCommand',
      { command = it.command.command, arguments = it.command.arguments }, function() end, bufnr)
  end
  b.accepted, b.partial = true, false -- the text change it makes asks for nothing
  return true
end

--- Insert the next word of the ghost text (`rest_lsp.words.next_word`) and keep showing the rest
--- of each candidate that goes on with that word; the last word accepts the completion (and
--- reports it, as Tab does).  False when no ghost text is shown.
function M.accept_word(bufnr)
  local b = buffers[bufnr]
  local it = b and b.item
  if not it then
    return false
  end
  local words = require('rest_lsp.words')
  local function rest_of(c) -- what candidate `c` would still insert at the cursor
    local line = api.nvim_buf_get_lines(bufnr, c.row, c.row + 1, false)[1] or ''
    return c.text:sub(#line:sub(c.start_col + 1, c.col) + 1)
  end
  local rest = rest_of(it)
  local word = words.next_word(rest)
  if word == rest then
    return M.accept(bufnr, false)
  end
  local kept, index = {}, 1
  for _, c in ipairs(b.items) do
    local left = rest_of(c)
    if left:sub(1, #word) == word then
      table.insert(kept, { text = left:sub(#word + 1), command = c.command, client = c.client })
      if c == it then
        index = #kept
      end
    end
  end
  words.insert_at_cursor(bufnr, word)
  local row, col = unpack(api.nvim_win_get_cursor(0))
  for _, c in ipairs(kept) do
    c.row, c.col, c.start_col = row - 1, col, col
  end
  b.items, b.index = kept, index
  b.accepted, b.partial = true, true -- the text change it makes neither asks nor clears
  draw(bufnr, b)
  return true
end

--- Ghost text in `bufnr` for `client`; `keys` = { accept, accept_line, accept_word, dismiss, next, prev },
--- `delay` in ms.
function M.attach(bufnr, client, keys, delay)
  if buffers[bufnr] then
    return
  end
  local b = { timer = assert(uv.new_timer()) }
  buffers[bufnr] = b
  local group = api.nvim_create_augroup('rest_lsp_ghost_' .. bufnr, { clear = true })
  local function schedule_request()
    b.timer:stop()
    b.timer:start(delay, 0, vim.schedule_wrap(function()
      if api.nvim_buf_is_valid(bufnr) and api.nvim_get_current_buf() == bufnr
        and api.nvim_get_mode().mode:sub(1, 1) == 'i' and require('rest_lsp').state.enabled then
        M.request(bufnr, client)
      end
    end))
  end
  api.nvim_create_autocmd({ 'TextChangedI', 'InsertEnter' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if b.accepted and b.partial then -- a word was accepted: the rest of the ghost text stays
        b.accepted, b.partial = false, false
        return
      end
      cancel(b)
      M.clear(bufnr)
      if b.accepted then
        b.accepted = false
        return
      end
      schedule_request()
    end,
  })
  api.nvim_create_autocmd('CursorMovedI', {
    group = group,
    buffer = bufnr,
    callback = function()
      local it = b.item
      local cursor = api.nvim_win_get_cursor(0)
      if it and (cursor[1] - 1 ~= it.row or cursor[2] ~= it.col) then
        M.clear(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      b.timer:stop()
      cancel(b)
      M.clear(bufnr)
    end,
  })
  api.nvim_create_autocmd('BufUnload', {
    group = group,
    buffer = bufnr,
    callback = function()
      b.timer:stop()
      b.timer:close()
      buffers[bufnr] = nil
    end,
  })
  -- each key acts on the ghost text when one is shown, else is the key itself
  local function map(lhs, action, desc)
    if not lhs then
      return
    end
    vim.keymap.set('i', lhs, function()
      if not M.visible(bufnr) then
        return lhs
      end
      vim.schedule(action)
      return ''
    end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = desc })
  end
  map(keys.accept, function()
    M.accept(bufnr, false)
  end, 'rest-lsp: accept the ghost text')
  map(keys.accept_line, function()
    M.accept(bufnr, true)
  end, 'rest-lsp: accept the first line of the ghost text')
  map(keys.accept_word, function()
    M.accept_word(bufnr)
  end, 'rest-lsp: accept the next word of the ghost text')
  map(keys.dismiss, function()
    M.clear(bufnr)
  end, 'rest-lsp: dismiss the ghost text')
  map(keys.next, function()
    M.select(bufnr, 1)
  end, 'rest-lsp: next completion')
  map(keys.prev, function()
    M.select(bufnr, -1)
  end, 'rest-lsp: previous completion')
end

return M
