"""The datastore: a live suffix-array index of token ids over a workspace and a code corpus.

A library that stands alone: nothing in this package imports torch or ``rest_lsp`` (its errors
and settings are its own, ``errors`` and ``settings``; a caller names the tokenizer).  Its rooms:
``storage`` (shards and index folders), ``building`` (sources into shards), ``search``
(retrieval over the tiers), ``remote`` (served indexes, Ray); at the top, the ``Datastore``, the
workspace tier, the watcher and ``workspace_index`` (where indexes live, how they are opened).
"""
