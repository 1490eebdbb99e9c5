"""Benchmarks that compare decoding methods end to end (``rest-lsp bench humaneval``)."""
