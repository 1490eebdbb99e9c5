"""The datastore's errors: the indexer's part of rest-lsp's one error taxonomy.

``ReportedError`` is the root of the whole taxonomy: every error raised on purpose, by the
indexer or by ``rest_lsp``, is one, and carries the values that explain it (as attributes and in
its message).  It lives here because ``indexer`` stands alone and ``rest_lsp`` builds on it;
``rest_lsp.errors`` re-exports everything below beside its own errors.
"""

from __future__ import annotations


class ReportedError(Exception):
    """The base of every error rest-lsp and its indexer raise on purpose."""

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


class DatastoreError(ReportedError):
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


class ClusterError(ReportedError):
    """A Ray cluster that cannot be used: the ``cluster`` extra missing, no cluster at the address."""


class SourceError(ReportedError):
    """A source file or root that cannot be read or walked."""
