"""Every benchmark and stress harness of rest-lsp, and nothing the daemon runs.

One module per ``rest-lsp bench`` kind (``humaneval``, ``peers``, ``pass_at_1``, ``quality``,
``repo``, ``replay``, ``drafters``, ``server``, ``engine``, ``cost``, ...), the datastore's
(``index`` for ``rest-lsp index bench``, ``scaleout`` for ``rest-lsp datastore bench``), the
command's parser (``commands``), what they share (``workloads``, ``record``, ``plots``,
``quantiles``, ``resident``) and the stress harnesses (``stress/``).  No work at import time.
"""
