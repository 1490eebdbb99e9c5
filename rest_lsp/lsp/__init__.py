"""The LSP layer: the pygls server and its handlers, the framing and transports under it, the
fixed protocol class, the daemon's memory care, its start-up (model, index, dense tier) and the
wait for readiness.  It converts LSP messages and delegates to ``rest_lsp.completion``.
"""
