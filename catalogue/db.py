"""The catalogue database: one SQLAlchemy engine (SQLite file by default, PostgreSQL in
production) and Alembic migrations applied on open. SQLAlchemy is touched here and in
the modules that hold queries; nowhere else builds engines."""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import CursorResult, Engine, Executable, Result, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from .errors import DatabaseError

MIGRATIONS = Path(__file__).parent / "migrations"
_engines: dict[str, Engine] = {}
_readers: dict[str, Engine] = {}  # see reader_engine
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and ``:memory:``)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def database_exists(url: str) -> bool:
    """Whether an nsdx catalogue database is at ``url`` — looked at without creating
    anything: a SQLite file must exist; another database must hold the schema's version
    table."""
    with _lock:
        if url in _engines:
            return True
    path = sqlite_path(url)
    if path is not None:
        return path.is_file()
    if url.startswith("sqlite"):
        return False  # in memory: nothing lasts between commands
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("alembic_version")
    except Exception as e:  # noqa: BLE001 - turned into an actionable error
        raise DatabaseError(
            f"cannot open the catalogue database {engine.url.render_as_string()}: {e}",
            hint="check NSDX_DATABASE_URL (sqlite:///path or postgresql+psycopg://user@host/db)",
        ) from e
    finally:
        engine.dispose()


def _create_private(path: Path) -> None:
    """Create the SQLite file readable by its owner only (mode 600: it holds enterprises'
    phones and bank accounts); SQLite gives its -wal and -shm files the same mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return


def make_engine(url: str) -> Engine:
    """An engine for ``url``, migrated to the latest schema (cached per URL)."""
    with _lock:
        if url in _engines:
            return _engines[url]
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                _create_private(Path(path.split("?", 1)[0]))
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        try:
            migrate(engine)
        except Exception as e:  # noqa: BLE001 - turned into an actionable error
            raise DatabaseError(
                f"cannot open the catalogue database {engine.url.render_as_string()}: {e}",
                hint="check NSDX_DATABASE_URL (sqlite:///path or postgresql+psycopg://user@host/db)",
            ) from e
        _engines[url] = engine
        return engine


# The newest migration in catalogue/migrations/versions (files are named after their revision,
# NNNN_what.py; a test keeps this equal to Alembic's head): a database already there is opened
# without loading Alembic (~0.5 s of every command).
HEAD = max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))
MIGRATION_LOCK = 0x6E736478  # "nsdx": the advisory lock held while migrating


def migrate(engine: Engine) -> None:
    """Bring the schema to :data:`HEAD` with Alembic (a no-op, quickly, when it is there)."""
    with engine.connect() as conn:
        if inspect(conn).has_table("alembic_version"):
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            if list(current) == [HEAD]:
                return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # processes opening a new database at once (workers, appenders) migrate one
            # after the other: the next sees the schema at head and does nothing
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed. SQLAlchemy types ``Session.execute`` as
    returning a plain ``Result``; for those statements it is a ``CursorResult``."""
    if not isinstance(result, CursorResult):  # pragma: no cover - SQLAlchemy's contract
        raise TypeError(f"not the result of an UPDATE or DELETE: {type(result).__name__}")
    return result.rowcount


_Row = TypeVar("_Row")


def reader_engine(engine: Engine) -> Engine:
    """The engine for single-statement reads outside any transaction, such as the
    catalogue's revision that every search, show and query reads first.

    On PostgreSQL, its own small pool in autocommit mode without a pre-ping: one round trip
    per read, where a session of ``engine`` takes four (``BEGIN``, the pre-ping, the read,
    ``ROLLBACK``) — under load each round trip waits for the database's process to be
    scheduled, and those waits were most of a ``package_show``. A pooled connection found
    dead is not pinged for but retried (:func:`read_one`). On SQLite, ``engine`` itself."""
    if engine.dialect.name == "sqlite":
        return engine
    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        reader = _readers.get(key)
        if reader is None:
            # one round trip each: a few connections serve many requests (a request
            # beyond them waits for one, as on the main pool), and PostgreSQL's connection
            # limit (100 by default) is shared with the main pools of every process
            reader = _readers[key] = create_engine(
                engine.url, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=6
            )
        return reader


def read_one(engine: Engine, statement: Executable) -> Any:
    """The one value ``statement`` selects, read through :func:`reader_engine`; a
    connection the database closed meanwhile (a restart, a terminated backend) is dropped
    and the read tried once more on a new one."""
    reader = reader_engine(engine)
    for attempt in (1, 2):
        try:
            with reader.connect() as conn:
                return conn.execute(statement).scalar_one()
        except DBAPIError as e:
            if attempt == 2 or not e.connection_invalidated:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def referenced(s: Session, model: type[_Row], key: str) -> _Row:
    """The row a NOT NULL foreign key points at (``Session.get`` is Optional): a missing
    one means the database was changed by hand, a server fault rather than the caller's."""
    row = s.get(model, key)
    if row is None:
        raise DatabaseError(
            f"{model.__name__} {key!r} is referenced but missing from the database",
            hint="the database was changed outside nsdx; run `nsdx audit verify`",
        )
    return row


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@atexit.register
def dispose_all() -> None:
    with _lock:
        for e in (*_engines.values(), *_readers.values()):
            e.dispose()
        _engines.clear()
        _readers.clear()
