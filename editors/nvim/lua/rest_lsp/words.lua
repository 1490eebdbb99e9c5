--- Accept-word: how much of a completion one press of `keys.accept_word` inserts.
local M = {}

--- A byte of a word: ASCII letters, digits, `_` and the bytes of non-ASCII (UTF-8) characters.
local WORD = '[%w_\128-\255]'
local OTHER = '[^%w_\128-\255%s]'

--- The next word of `text` (the part of a completion not inserted yet): a line break with the
--- next line's indentation; else the blanks before it and one run of word characters or one
--- run of other characters (`x`, ` **`, ` 2`).  '' only for ''.
function M.next_word(text)
  local newline = text:match('^\r?\n[ \t]*')
  if newline then
    return newline
  end
  local blanks = text:match('^[ \t]*')
  local rest = text:sub(#blanks + 1)
  local run = rest:match('^' .. WORD .. '+') or rest:match('^' .. OTHER .. '+') or rest:sub(1, 1)
  return blanks .. run
end

--- Insert `text` at the cursor of the current window and put the cursor after it.
function M.insert_at_cursor(bufnr, text)
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local lines = vim.split(text, '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, row - 1, col, row - 1, col, lines)
  vim.api.nvim_win_set_cursor(0, { row + #lines - 1, (#lines == 1 and col or 0) + #lines[#lines] })
end

return M
