"""One module per ``rest-lsp`` subcommand; each exposes ``register(subparsers)``."""
