"""rest-lsp: a code-completion language server decoded with retrieval-based speculative decoding."""

__version__ = "0.1.0"
