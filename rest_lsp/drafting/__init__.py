"""The one bridge between the engine and the datastore: the drafters that need the index
(``datastore``), the dense tier's model side (``dense``) and the drafters of one workspace session
(``session``).  The engine never imports this package; the datastore never imports rest_lsp.
"""
