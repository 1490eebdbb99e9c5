"""The one error taxonomy of rest-lsp.

Every error raised on purpose is a ``ReportedError`` and carries the values that explain it (as
attributes and in its message).  The root and the datastore's errors are the indexer's own
(``indexer.errors``: the indexer stands alone) and are re-exported here; rest-lsp's errors are
``RestLspError``s.  Errors are converted to LSP errors only at the server's edge and to exit codes
only in the CLI, both catching ``ReportedError``.
"""

from __future__ import annotations

from indexer.errors import (  # noqa: F401  (re-exported: the whole taxonomy is named here)
    ClusterError,
    DatastoreError,
    IndexCorruptError,
    IndexVersionError,
    ModelMismatchError,
    RemoteDatastoreError,
    ReportedError,
    SourceError,
    TokenizerMismatchError,
)


class RestLspError(ReportedError):
    """The base of the errors rest-lsp itself raises (the indexer's have their own, above)."""


class ConfigError(RestLspError):
    """A configuration value that is missing, of the wrong type or out of range."""

    exit_code = 2


class ModelError(RestLspError):
    """A model that cannot be found, loaded or used."""


class DecodingError(RestLspError):
    """A decoding request that cannot be served (bad options, empty prompt, ...)."""


class Cancelled(RestLspError):
    """A request that was cancelled or superseded before it finished."""
