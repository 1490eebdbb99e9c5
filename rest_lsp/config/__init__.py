"""The configuration: its schema (one dataclass per section, one source of defaults), the checks
of its values, how nested dicts are loaded into it, and where settings come from (files, editors).

The index and retrieval sections are the indexer's own (``indexer.settings``); the schema holds
them beside rest-lsp's.  Nothing is re-exported here: import from the module that holds a name.
"""
