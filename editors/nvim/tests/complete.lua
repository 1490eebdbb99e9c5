-- A headless Neovim test of the rest-lsp plugin: open a file, ask for a completion at a position,
-- accept it and report the buffer.  Run as
--   REST_LSP_TEST='{"plugin": ..., "cmd": [...], "settings": {...}, "file": ..., "line": 1,
--                   "col": 0, "type": "", "out": ..., "timeout_ms": 120000}' nvim --headless --clean -S complete.lua
-- (line 1-based, col 0-based bytes).  With "type", those keys are typed at the position and the
-- completion must come by itself (autotrigger); without, it is asked for (vim.lsp.completion.get).
-- With "after_dismiss" (ghost text of Neovim 0.11), the ghost text is dismissed (C-]) and asked
-- for again (C-Space); then "line" accepts its first line (C-l), "cycle" shows the next item
-- (M-]) and accepts that (Tab).  With "words" (ghost text of Neovim 0.11), accept-word (M-Right)
-- is pressed until no ghost text is left, the buffer and the ghost text recorded after each.
-- With "init", that Lua file sets the plugin up (an install as a user makes it: the lazy.nvim
-- stand-in, tests/lazy_stub.lua); "init": "" means the user's own config did (native packages);
-- without, the driver puts the plugin on the runtimepath and calls setup() itself.
-- With "health", `:checkhealth rest_lsp` runs once the server is ready (its lines in the report).
-- It writes a JSON report to `out`:
--   { mode, items (what the editor offered), ghost (the extmarks drawn), lines (the buffer after
--     accepting), cursor, status, statusline, error }; with "commands": true also status_message
--     and statusline_off; with "after_dismiss" also dismissed_lines (the buffer once the ghost
--     text was dismissed), ghost_invoked (drawn on request) and, cycling, ghost_next; with
--     "words" also word_steps ({ lines, ghost } after each accepted word); with "health" health.
-- Every wait is on a condition with a timeout: blocking `vim.wait` while no key has to be
-- typed, then (in insert mode, where typed keys are only read from the main loop) timers.

local parsed, spec = pcall(vim.json.decode, vim.env.REST_LSP_TEST or '')
if not parsed or type(spec) ~= 'table' or not spec.out then
  io.stderr:write('REST_LSP_TEST must be a JSON object with "out": ' .. tostring(spec) .. '\n')
  vim.cmd('cquit 3')
end
local api, uv = vim.api, vim.uv or vim.loop
local timeout = spec.timeout_ms or 120000
local report = { nvim = tostring(vim.version()), events = {} }

local function note(event)
  table.insert(report.events, ('%d %s'):format(uv.now(), event))
end

local function finish(err)
  report.error = err
  local rest = package.loaded['rest_lsp']
  report.state = rest and rest.state or nil
  local f = assert(io.open(spec.out, 'w'))
  f:write(vim.json.encode(report))
  f:close()
  vim.cmd('qall!')
end

--- Wait for `cond` without blocking the main loop (typed keys are processed meanwhile).
local function poll(what, cond, ms, next)
  local deadline = uv.now() + ms
  local function tick()
    local ok, value = pcall(cond)
    if ok and value then
      note(what)
      next()
    elseif not ok then
      finish(('%s: %s'):format(what, value))
    elseif uv.now() > deadline then
      finish('timed out waiting for ' .. what)
    else
      vim.defer_fn(tick, 20)
    end
  end
  tick()
end

local function keys(s)
  api.nvim_feedkeys(api.nvim_replace_termcodes(s, true, false, true), 't', false)
end

local ok, err = xpcall(function()
  if spec.init == nil then
    vim.opt.rtp:prepend(spec.plugin)
  elseif spec.init ~= '' then
    dofile(spec.init)
  end
  vim.cmd('filetype on')
  local rest = require('rest_lsp')
  report.installed_from = vim.api.nvim_get_runtime_file('lua/rest_lsp/init.lua', false)[1]
  if spec.init == nil then
    rest.setup({ cmd = spec.cmd, settings = spec.settings, autotrigger = spec.type ~= nil, ui = spec.ui or 'ghost' })
  end
  vim.cmd.edit(vim.fn.fnameescape(spec.file))
  vim.bo.filetype = 'python'
  local bufnr = api.nvim_get_current_buf()
  local before = api.nvim_buf_get_lines(bufnr, 0, -1, false)
  local function attached()
    return #vim.lsp.get_clients({ bufnr = bufnr, name = 'rest_lsp' }) > 0
  end
  assert(vim.wait(timeout, attached, 20), 'no rest_lsp client attached')
  note('attached')
  assert(
    vim.wait(timeout, function()
      return rest.state.phase == 'ready' or rest.state.phase == 'error'
    end, 20),
    'the server never became ready: ' .. vim.inspect(rest.state)
  )
  if spec.health then -- the server's own report, ready or failed
    report.phase = rest.state.phase
    vim.cmd('checkhealth rest_lsp')
    report.health = api.nvim_buf_get_lines(0, 0, -1, false)
    finish(nil)
    return
  end
  assert(rest.state.phase == 'ready', 'the server failed: ' .. vim.inspect(rest.state))
  note('ready')
  report.mode = rest.mode
  report.statusline = rest.statusline()

  api.nvim_win_set_cursor(0, { spec.line, spec.col })
  local line = api.nvim_get_current_line()
  local function changed()
    return not vim.deep_equal(api.nvim_buf_get_lines(bufnr, 0, -1, false), before)
  end
  -- set once an item was accepted (after the plugin's own CompleteDone handler, defined earlier)
  local completed = false
  api.nvim_create_autocmd('CompleteDone', {
    buffer = bufnr,
    callback = function()
      if (vim.v.event or {}).reason == 'accept' then
        vim.schedule(function()
          completed = true
        end)
      end
    end,
  })
  -- the user commands: :RestLspStatus reports, :RestLspToggle turns completions off and on
  local function commands()
    local notes = {}
    vim.notify = function(msg)
      table.insert(notes, msg)
    end
    vim.cmd('RestLspStatus')
    poll(':RestLspStatus message', function()
      return #notes > 0
    end, 30000, function()
      report.status_message = notes[1]
      vim.cmd('RestLspToggle')
      poll(':RestLspToggle off', function()
        return rest.statusline() == 'rest-lsp: off'
      end, 30000, function()
        report.statusline_off = rest.statusline()
        vim.cmd('RestLspToggle')
        poll(':RestLspToggle on', function()
          return rest.state.enabled and rest.statusline() ~= 'rest-lsp: off'
        end, 30000, function()
          finish(nil)
        end)
      end)
    end)
  end

  local function done()
    report.lines = api.nvim_buf_get_lines(bufnr, 0, -1, false)
    report.cursor = api.nvim_win_get_cursor(0)
    -- the acceptance command reached the server (requests are answered in order): its figures
    rest.execute('rest-lsp.status', {}, function(e, status)
      report.status = e and { error = e.message } or status
      report.statusline = rest.statusline()
      if spec.commands then
        commands()
      else
        finish(nil)
      end
    end)
  end

  api.nvim_create_autocmd('InsertEnter', {
    once = true,
    callback = vim.schedule_wrap(function()
      note('insert')
      if rest.mode == 'inline' or rest.mode == 'ghost' then
        -- ghost text appears by itself (0.12: vim.lsp.inline_completion; 0.11: the plugin's); Tab accepts
        if spec.type then
          keys(spec.type)
        end
        local ns = api.nvim_get_namespaces()[rest.mode == 'inline' and 'nvim.lsp.inline_completion' or 'rest_lsp_ghost']
        poll('ghost text', function()
          return ns and #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, {}) > 0
        end, timeout, function()
          -- what is drawn: the virtual text and lines of the ghost-text extmarks
          local function ghost_marks()
            return vim.tbl_map(function(m)
              return { virt_text = m[4].virt_text, virt_lines = m[4].virt_lines }
            end, api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true }))
          end
          report.ghost = ghost_marks()
          local shown = api.nvim_buf_get_lines(bufnr, 0, -1, false) -- typed keys included
          local function accept(key)
            keys(key)
            poll('accepted text', function()
              return not vim.deep_equal(api.nvim_buf_get_lines(bufnr, 0, -1, false), shown)
            end, 10000, done)
          end
          if spec.words then
            -- accept-word until no ghost text is left: each press inserts one word, the rest stays drawn
            local steps = {}
            local function press()
              local before = api.nvim_buf_get_lines(bufnr, 0, -1, false)
              keys('<M-Right>')
              poll('word ' .. (#steps + 1) .. ' accepted', function()
                return not vim.deep_equal(api.nvim_buf_get_lines(bufnr, 0, -1, false), before)
              end, 10000, function()
                table.insert(steps, { lines = api.nvim_buf_get_lines(bufnr, 0, -1, false), ghost = ghost_marks() })
                if #steps[#steps].ghost == 0 or #steps >= 30 then
                  report.word_steps = steps
                  done()
                else
                  press()
                end
              end)
            end
            press()
            return
          end
          if not spec.after_dismiss then
            accept('<Tab>')
            return
          end
          -- the dismiss key removes the ghost text and leaves the buffer; the trigger key asks
          -- again, explicitly (several items); then the accept-line key inserts the first line of
          -- the first, or the next key shows the second, which Tab inserts
          keys('<C-]>')
          poll('ghost text dismissed', function()
            return #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, {}) == 0
          end, 10000, function()
            report.dismissed_lines = api.nvim_buf_get_lines(bufnr, 0, -1, false)
            keys('<C-Space>')
            poll('ghost text on request', function()
              return #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, {}) > 0
            end, timeout, function()
              report.ghost_invoked = ghost_marks()
              if spec.after_dismiss == 'line' then
                accept('<C-l>')
                return
              end
              keys('<M-]>')
              poll('next ghost text', function()
                return not vim.deep_equal(ghost_marks(), report.ghost_invoked)
              end, 10000, function()
                report.ghost_next = ghost_marks()
                accept('<Tab>')
              end)
            end)
          end)
        end)
      else
        -- Neovim 0.11: the completion popup; <C-y> accepts the selected (first) item
        if spec.type then
          keys(spec.type)
        else
          vim.lsp.completion.get()
        end
        poll('completion popup', function()
          return vim.fn.pumvisible() == 1
        end, timeout, function()
          report.items = vim.tbl_map(function(item)
            local lsp_item = vim.tbl_get(item, 'user_data', 'nvim', 'lsp', 'completion_item') or {}
            return { word = item.word, text = lsp_item.textEdit and lsp_item.textEdit.newText or lsp_item.insertText }
          end, vim.fn.complete_info({ 'items' }).items)
          local info = vim.fn.complete_info({ 'selected' })
          if info.selected < 0 then
            keys('<C-n>')
          end
          keys('<C-y>')
          poll('accepted text', function()
            return vim.fn.pumvisible() == 0 and completed
          end, 10000, done)
        end)
      end
    end),
  })
  -- enter insert mode once this script returns to the main loop
  if spec.col >= #line then
    vim.cmd('startinsert!')
  else
    vim.cmd('startinsert')
  end
end, debug.traceback)

if not ok then
  finish(err)
end
