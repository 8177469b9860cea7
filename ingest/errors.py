"""Errors raised while reading, converting and publishing a dataset.

Every error carries a ``hint`` (what the user should do next) and a ``transient`` flag
(whether retrying the same command may succeed), following dlt's terminal/transient split.
"""

from __future__ import annotations

from validation.errors import NsdxError


class IngestError(NsdxError):
    """Base class of everything the ingest package raises on purpose."""


class ConfigError(IngestError):
    """datasets.yaml is missing, malformed or declares something impossible."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = file or "datasets.yaml"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}", hint=hint, file=file, line=line, column=column)
        self.file, self.line, self.column = file, line, column


class SourceError(IngestError):
    """A source file cannot be read: missing, wrong encoding, bad rows, unknown format."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: str | int | None = None,
        values: list | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if file:
            where = file
            if line is not None:
                where += f":{line}"
            if column is not None:
                where += f" column {column!r}" if isinstance(column, str) else f":{column}"
            where += ": "
        super().__init__(
            where + message, hint=hint, file=file, line=line, column=column, values=values
        )
        self.file, self.line, self.column, self.values = file, line, column, values


class SchemaMismatch(SourceError):
    """A value cannot be cast to the declared (or inferred) column type."""


class DatasetNotDeclared(IngestError):
    """An id given on the command line is not in datasets.yaml."""

    status = 404


class StorageError(IngestError):
    """Object storage refused or failed an operation (a server-side condition: 503)."""

    status = 503


class StorageUnreachable(StorageError):
    transient = True


class StorageAuthError(StorageError):
    """Credentials were refused (wrong key, wrong secret, clock skew)."""


class BucketNotFound(StorageError):
    """The configured bucket does not exist."""
