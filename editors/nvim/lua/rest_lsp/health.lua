--- `:checkhealth rest_lsp`: the Neovim features the plugin uses, the server executable, the client.
local M = {}

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
      'pip install rest-lsp',
      "or pass its full path: require('rest_lsp').setup({ cmd = { '/path/to/rest-lsp', 'serve', '--stdio' } })",
    })
  end
  local clients = vim.lsp.get_clients and vim.lsp.get_clients({ name = 'rest_lsp' }) or {}
  if #clients > 0 then
    health.ok(('server running (client %d), mode %s, phase %s'):format(clients[1].id, tostring(rest.mode),
      tostring(rest.state.phase)))
  else
    health.info('no rest-lsp client running yet (it starts with the first buffer of a configured filetype)')
  end
end

return M
