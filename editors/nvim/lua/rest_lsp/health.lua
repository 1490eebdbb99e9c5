--- `:checkhealth rest_lsp`: the Neovim features the plugin uses, the server executable, the client,
--- and what the running server says of itself (`rest-lsp.status`): its state, the model (name,
--- device, forward), fill-in-the-middle, the index tiers and the last error it reported.
local M = {}

local STATUS_TIMEOUT_MS = 3000

--- `rest-lsp.status` of `client`, synchronously; (status, nil) or (nil, why not).
local function server_status(client)
  local params = { command = 'rest-lsp.status', arguments = {} }
  local response, err
  if vim.fn.has('nvim-0.11') == 1 then
    response, err = client:request_sync('workspace/executeCommand', params, STATUS_TIMEOUT_MS)
  else
    response, err = client.request_sync('workspace/executeCommand', params, STATUS_TIMEOUT_MS)
  end
  if not response then
    return nil, tostring(err or 'no answer')
  end
  if response.err then
    return nil, response.err.message or vim.inspect(response.err)
  end
  if type(response.result) ~= 'table' then
    return nil, 'unexpected answer: ' .. vim.inspect(response.result)
  end
  return response.result, nil
end

local function thousands(n)
  local s = tostring(math.floor(tonumber(n) or 0))
  return (s:reverse():gsub('(%d%d%d)', '%1,'):reverse():gsub('^,', ''))
end

local function megabytes(bytes)
  return ('%.1f MB'):format((tonumber(bytes) or 0) / 1e6)
end

local function ago(time)
  local s = os.time() - time
  if s < 120 then
    return ('%d s ago'):format(s)
  end
  return ('%d min ago'):format(math.floor(s / 60))
end

--- The model line: name, kind, device, dtype, forward (and why), parameters.
local function report_model(health, model, failed)
  if type(model) ~= 'table' then
    health.warn(failed and 'model: not loaded (see the last error)' or 'model: not loaded yet')
    return
  end
  local params = tonumber(model.parameters)
  local size = params and params > 0 and (', %.1f M parameters'):format(params / 1e6) or ''
  health.ok(('model: %s (%s) on %s, %s, forward %s%s'):format(tostring(model.name), tostring(model.kind),
    tostring(model.device), tostring(model.dtype), tostring(model.forward), size))
  if model.forward_reason and model.forward_reason ~= '' then
    health.info('forward: ' .. model.forward_reason)
  end
  if model.why and model.why ~= '' then
    health.info('why this model: ' .. model.why)
  end
end

--- Fill-in-the-middle: the template the server chose at model load (its log line), else what the
--- last completion used.
local function report_fim(health, status, line)
  local last = type(status.last_completion) == 'table' and status.last_completion or nil
  if line then
    local name, how, state = line:match('prompt template (%S+) %((.-)%); fill%-in%-the%-middle (%a+)')
    if name then
      health.ok(('fill-in-the-middle: %s, template %s (%s)'):format(state, name, how))
    else
      health.warn('fill-in-the-middle: ' .. line:gsub('^rest%-lsp: ', ''), {
        'Completions see only the text before the cursor. Use a model with FIM tokens (qwen2.5-coder-0.5b), or name '
          .. "its family: setup({ settings = { server = { fim_template = 'starcoder' } } })",
      })
    end
  elseif last then
    health.ok(('fill-in-the-middle: %s in the last completion, template %s'):format(last.fim and 'on' or 'off',
      tostring(last.template or 'none')))
  else
    health.info('fill-in-the-middle: not reported yet (the server logs it when the model loads)')
  end
end

--- One line per index tier (live, workspace, corpus; remote ones), with the index folder.
local function report_index(health, index)
  if type(index) ~= 'table' then
    health.warn('index: not open yet')
    return
  end
  health.info('index folder: ' .. tostring(index.index_dir or '(none: corpus only)'))
  for _, name in ipairs({ 'live', 'workspace', 'corpus' }) do
    local tier = index[name]
    if type(tier) == 'table' then
      if tier.kind == 'compact' then
        health.ok(('index tier %s: compact, %s n-grams, %s'):format(name, thousands(tier.entries), megabytes(tier.bytes)))
      else
        health.ok(('index tier %s: %s shard(s), %s docs, %s tokens, %s'):format(name, thousands(tier.shards),
          thousands(tier.docs), thousands(tier.tokens), megabytes(tier.bytes)))
      end
    end
  end
  for _, remote in ipairs(type(index.remote) == 'table' and index.remote or {}) do
    health.info('index tier remote: ' .. (type(remote) == 'table' and tostring(remote.url or vim.inspect(remote)) or tostring(remote)))
  end
  if type(index.corpus) == 'table' and (tonumber(index.corpus.tokens) or 0) == 0 and index.corpus.kind ~= 'compact' then
    health.warn('the corpus tier is empty', { 'Check settings.index.corpus_roots, then :RestLspReindex' })
  end
end

--- What the running server reports about itself.
local function report_server(health, client, rest)
  health.start('rest-lsp server')
  local status, err = server_status(client)
  if not status then
    health.warn('rest-lsp.status did not answer: ' .. err, { 'The server may be busy loading; run :checkhealth rest_lsp again' })
  else
    local state = tostring(status.state)
    if state == 'ready' then
      health.ok(('state: ready, completions %s'):format(status.enabled == false and 'off (:RestLspToggle)' or 'on'))
    elseif state == 'failed' then
      health.error('state: failed (completions are empty until it loads)', {
        'See the last error below; fix the setting it names, then :RestLspReindex or restart Neovim',
      })
    else
      health.warn('state: ' .. state, { 'Still starting: run :checkhealth rest_lsp again in a moment' })
    end
    report_model(health, status.model, state == 'failed')
    report_fim(health, status, rest.state.fim)
    report_index(health, status.index)
  end
  local last = rest.state.last_error
  if last then
    health.warn(('last error (%s): %s'):format(ago(last.time), last.message),
      { 'rest-lsp doctor (in a terminal) checks the installation: the model, torch, the index, disk and memory' })
  else
    health.ok('last error: none')
  end
end

function M.check()
  local health = vim.health
  health.start('rest-lsp')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  local ui = (require('rest_lsp').config or {}).ui or 'ghost'
  if vim.lsp.inline_completion then
    health.ok('Neovim ' .. version .. ': inline completion (ghost text) through vim.lsp.inline_completion')
  elseif ui ~= 'popup' then
    health.ok('Neovim ' .. version .. ': ghost text drawn by the plugin (0.12+ uses vim.lsp.inline_completion)')
  elseif vim.lsp.completion then
    health.ok('Neovim ' .. version .. ": completion popup through vim.lsp.completion (ui = 'popup')")
  else
    health.warn('Neovim ' .. version .. ': no vim.lsp.completion; completions come through omnifunc only',
      { 'Upgrade to Neovim 0.11 or later' })
  end
  local rest = require('rest_lsp')
  local config = rest.config
  if not config then
    health.warn("require('rest_lsp').setup() has not run", { "Call require('rest_lsp').setup({...}) in your config" })
    return
  end
  local exe = config.cmd and config.cmd[1]
  if exe and vim.fn.executable(exe) == 1 then
    health.ok('server executable: ' .. vim.fn.exepath(exe))
  else
    health.error('server executable not found: ' .. tostring(exe), {
      'install rest-lsp: bash scripts/install.sh in a clone, or pip install its wheel (README, Install)',
      "or pass its full path: require('rest_lsp').setup({ cmd = { '/path/to/rest-lsp', 'serve', '--stdio' } })",
    })
  end
  local clients = vim.lsp.get_clients and vim.lsp.get_clients({ name = 'rest_lsp' }) or {}
  if #clients > 0 then
    health.ok(('server running (client %d), mode %s, phase %s'):format(clients[1].id, tostring(rest.mode),
      tostring(rest.state.phase)))
    report_server(health, clients[1], rest)
  else
    health.info('no rest-lsp client running yet (it starts with the first buffer of a configured filetype)')
    if rest.state.last_error then
      health.warn(('last error (%s): %s'):format(ago(rest.state.last_error.time), rest.state.last_error.message))
    end
  end
end

return M
