"""The one error taxonomy of rest-lsp.

Every error the project raises on purpose is a ``RestLspError``; each carries the values that
explain it (as attributes and in its message).  Errors are converted to LSP errors only at the
server's edge and to exit codes only in the CLI.  This module imports nothing heavy so that the
torch-free ``indexer`` package can use it too.
"""

from __future__ import annotations


class RestLspError(Exception):
    """The base of every error rest-lsp raises on purpose."""

    #: exit status the CLI uses for this kind of error
    exit_code: int = 1

    def __init__(self, message: str, **values: object) -> None:
        super().__init__(message)
        self.message = message
        self.values = values
        for key, value in values.items():
            setattr(self, key, value)

    def __str__(self) -> str:  # message already names the values that matter
        return self.message


class ConfigError(RestLspError):
    """A configuration value that is missing, of the wrong type or out of range."""

    exit_code = 2


class DatastoreError(RestLspError):
    """A problem with an index on disk (missing, corrupt, wrong version)."""


class IndexCorruptError(DatastoreError):
    """An index file whose checksum, size or format does not match its manifest."""


class IndexVersionError(DatastoreError):
    """An index written by an incompatible format version."""


class TokenizerMismatchError(DatastoreError):
    """An index built with another tokenizer than the one in use."""


class ModelMismatchError(DatastoreError):
    """A dense index built from another model's hidden states than the one in use."""


class RemoteDatastoreError(DatastoreError):
    """A remote (served) datastore that cannot be reached, or that answered with an error."""


class ClusterError(RestLspError):
    """A Ray cluster that cannot be used: the ``cluster`` extra missing, no cluster at the address."""


class SourceError(RestLspError):
    """A source file or root that cannot be read or walked."""


class ModelError(RestLspError):
    """A model that cannot be found, loaded or used."""


class DecodingError(RestLspError):
    """A decoding request that cannot be served (bad options, empty prompt, ...)."""


class Cancelled(RestLspError):
    """A request that was cancelled or superseded before it finished."""
