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


class TransientError(IngestError):
    """A fault of the environment, not of the data or of nsdx: a full disk, a lost database
    connection, storage down. Retrying the same command after fixing it succeeds."""

    transient = True


def as_transient(e: BaseException) -> TransientError | None:
    """The TransientError saying what to do about ``e``, or None when ``e`` is not one of the
    environment faults nsdx knows (then it may be a bug). Looked up by class and module name:
    nothing is imported here."""
    import errno  # noqa: PLC0415

    chain, seen = [], set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:  # the cause may be the real fault
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:
        name, module = type(err).__name__, type(err).__module__ or ""
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" ({err.filename})" if err.filename else ""
            return TransientError(
                f"the disk is full{where}: {err.strerror}",
                hint="free disk space (or point NSDX_HOME / NSDX_STAGING_DIR at a larger disk), "
                "then run the command again; nothing was published",
            )
        if module.startswith("sqlalchemy") and name in (
            "OperationalError",
            "InterfaceError",
            "DisconnectionError",
            "TimeoutError",
        ):
            return TransientError(
                f"the catalogue database connection failed: {_first_line(err)}",
                hint="check that the database in NSDX_DATABASE_URL is running and reachable, "
                "then run the command again (a publish that was cut off is adopted or redone)",
            )
        if module.startswith(("psycopg", "sqlite3")) and name in ("OperationalError",):
            return TransientError(
                f"the catalogue database failed: {_first_line(err)}",
                hint="check the database in NSDX_DATABASE_URL, then run the command again",
            )
        if "duckdb" in module and name in ("IOException", "HTTPException"):
            return TransientError(
                f"object storage could not be read: {_first_line(err)}",
                hint="check that the store in NSDX_STORAGE_URL is up (`nsdx storage check`), "
                "then run the command again",
            )
        if isinstance(err, ConnectionError | TimeoutError):
            return TransientError(
                f"a connection failed: {_first_line(err)}",
                hint="check the network and the services in NSDX_DATABASE_URL / "
                "NSDX_STORAGE_URL, then run the command again",
            )
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
