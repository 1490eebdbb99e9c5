-- A stand-in for lazy.nvim loading one local plugin spec, for the install test (no network, no
-- lazy.nvim): what lazy does with `{ dir = ..., config = function(plugin, opts) ... end }` at
-- start-up (a spec that is not lazy): it puts `plugin.dir` (the normalized `dir`) on the
-- runtimepath, sources the plugin's `plugin/` files (the repository root has none), then calls
-- `config(plugin, opts)`.  The spec is the file named by $REST_LSP_LAZY_SPEC, a lazy.nvim spec
-- file (`return { ... }`: the README's snippet, as a user saves it under lua/plugins/).
local file = assert(vim.env.REST_LSP_LAZY_SPEC, 'REST_LSP_LAZY_SPEC names the spec file')
local spec = dofile(file)
assert(type(spec) == 'table' and type(spec.dir) == 'string', 'a local lazy.nvim spec has dir: ' .. vim.inspect(spec))
assert(spec.lazy ~= true, 'the spec must load at start-up (lazy = false)')
local dir = vim.fs.normalize(spec.dir)
local plugin = { dir = dir, name = spec.name or vim.fs.basename(dir) }
vim.opt.rtp:append(dir)
for _, f in ipairs(vim.fn.globpath(dir, 'plugin/**/*.{vim,lua}', false, true)) do
  vim.cmd.source(vim.fn.fnameescape(f))
end
if type(spec.config) == 'function' then
  spec.config(plugin, spec.opts or {})
end
