"""The decoding engine: model loading, draft trees, tree verification and the speculative loop.

The engine knows nothing of LSP, and of the indexer only its ``Candidate`` value type: it asks a
``Drafter`` (``drafter.Drafter``, the protocol with every hook it calls) for candidate
continuations and verifies them with one forward pass of the model per step.  Pure modules
(``drafter``, ``draft_tree``, ``tree_inputs``, ``acceptance``, ``budget``) need no torch; the
others import torch when used, never at import time of this package.
"""
