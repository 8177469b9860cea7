"""DuckDB over published data: every current version is a view ``<domain>.<id>``
(``-`` turned into ``_``), a multi-table dataset one view per table ``<domain>.<id>__<table>``.

Two entry points:

* :func:`connect` / :func:`run_query` — ``nsdx query`` and the Python API: a local admin
  tool, every view, any SQL.
* :func:`serve_query` — the HTTP query API (``POST /api/query``): one checked SELECT
  (:mod:`catalogue.sql_guard`), the caller's access checked per dataset, run on a fresh
  locked-down connection (:func:`open_locked`) with a row cap and a timeout.

DuckDB is touched here, in catalogue.sql_guard (parsing only) and in ingest.storage.duckdb_s3
(S3 wiring) only.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy.orm import Session

from ingest.storage import ObjectStore
from validation import duck
from validation.messages import Msg

from .access import (
    NO_GRANTS,
    DatasetFacts,
    DatasetRestricted,
    Grants,
    Principal,
    require_read,
)
from .errors import QueryError
from .registry import Catalogue, PublishedTable

__all__ = [
    "DatasetRestricted",
    "JobRunner",
    "QueryJob",
    "QueryLimits",
    "QueryResult",
    "LockedConnections",
    "QueryableTable",
    "run_job",
    "serve_query",
]


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(
    cat: Catalogue, store: ObjectStore, *, versions: bool = True
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per published table (the CLI's and the
    Python API's; the HTTP query API opens its own with limits, see :func:`open_locked`),
    and with ``versions`` one per table of every published version, ``<view>__v<N>``."""
    con = duck.connect(":memory:")
    immutable_files(con)
    if store.url.startswith("s3://"):
        from ingest.storage.duckdb_s3 import configure_duckdb

        configure_duckdb(con, store)
        con.execute("SET enable_http_metadata_cache = true")  # object sizes never change
    for t in cat.published_tables():
        _create_view(con, store, t)
    if versions:
        from .downloads import all_tables, view_names

        add_views(
            con,
            (
                ViewSource(*view_names(t), tuple(store.uri(f.key) for f in t.files))
                for t in all_tables(cat)
            ),
        )
    return con


def immutable_files(con: duckdb.DuckDBPyConnection) -> None:
    """Published files never change (a new version is new files): a connection that reads
    them may keep their Parquet footers between queries."""
    con.execute("SET parquet_metadata_cache = true")


@dataclass(frozen=True)
class ViewSource:
    """A view to create over Parquet files (local paths, ``s3://`` or ``http(s)://`` URLs)."""

    schema: str
    name: str
    files: tuple[str, ...]


def add_views(con: duckdb.DuckDBPyConnection, views: Iterable[ViewSource]) -> list[str]:
    """Create ``schema.name`` over each source's files (the local connection's version views,
    and every view of ``nsdx.connect(url)`` over the portal's download URLs); the names made."""
    made = []
    for v in views:
        if not v.files:
            continue
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(v.schema)}")
        files = ", ".join(_lit(f) for f in v.files)
        con.execute(
            f"CREATE OR REPLACE VIEW {_quote(v.schema)}.{_quote(v.name)} AS "
            f"SELECT * FROM read_parquet([{files}])"
        )
        made.append(f"{v.schema}.{v.name}")
    return made


def _create_view(con, store: ObjectStore, t: PublishedTable) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(t.view_schema)}")
    files = ", ".join(_lit(store.uri(k)) for k in t.uris)
    con.execute(
        f"CREATE OR REPLACE VIEW {_quote(t.view_schema)}.{_quote(t.view_name)} AS "
        f"SELECT * FROM read_parquet([{files}])"
    )


def run_query(con: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int | None = None):
    """Run ``sql`` and return an Arrow table (at most ``max_rows`` rows when given)."""
    try:
        rel = con.execute(sql)
        if max_rows is None:
            return rel.to_arrow_table()
        reader = rel.to_arrow_reader(min(max_rows, 100_000))
        batches, n = [], 0
        for b in reader:
            batches.append(b.slice(0, max_rows - n))
            n += batches[-1].num_rows
            if n >= max_rows:
                break
        return pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.Error as e:
        msg = str(e).split("\n")[0]
        hint = None
        if "does not exist" in msg and "Table" in msg:
            hint = Msg(
                "run `nsdx datasets list` to see views; names are <domain>.<id> with '-' as '_'"
            )
        raise QueryError(Msg("query failed: %(error)s", error=msg), hint=hint) from None


# -- the query API: checked statements on a locked-down connection ----------------------
#
# `connect`/`run_query` above serve `nsdx query`, a local admin tool that sees everything.
# What follows serves SQL from outside (the HTTP query API): every statement passes
# catalogue.sql_guard first, the caller must be allowed to read every dataset it touches,
# and it runs on a fresh connection that holds only the views it reads, can open only
# their files, and cannot be reconfigured.


@dataclass(frozen=True)
class QueryLimits:
    """Limits of one query API request (``NSDX_QUERY_*`` in the shell)."""

    timeout: float = 10.0  # seconds, wall clock, then interrupt()
    max_rows: int = 10_000  # ceiling on rows returned (a request may ask for fewer)
    default_rows: int = 1_000
    max_bytes: int = 64 * 1024 * 1024  # Arrow bytes fetched into the server process
    memory_limit: str = "1GB"  # DuckDB's own memory
    threads: int = 2
    temp_dir: Path | None = None  # a private sub-folder per request; None: system temp
    max_temp_size: str = "2GB"
    http_timeout: int = 10  # seconds per S3 request (interrupt() cannot cut a stalled read)
    http_retries: int = 1
    process_memory: int | None = (
        None  # bytes a query process may map (None: memory_limit + 768 MiB)
    )


@dataclass(frozen=True)
class QueryableTable:
    """A published table with what the access rule needs."""

    table: PublishedTable
    facts: DatasetFacts
    version: int
    claimants: tuple[str, ...] = ()  # datasets sharing this view name (then none is served)

    @property
    def view(self) -> str:
        return f"{self.table.view_schema}.{self.table.view_name}"

    @property
    def dataset_id(self) -> str:
        return self.facts.id


@dataclass
class QueryResult:
    table: pa.Table
    truncated: bool
    elapsed_ms: int
    views: tuple[str, ...] = ()


class ViewAmbiguous(QueryError):
    """Two datasets map to one view (HTTP 409): neither is served."""

    status = 409


class QueryTimeout(QueryError):
    status = 408


class QueryStorageError(QueryError):
    status = 503
    transient = True


# the views of each catalogue at the revision they were read at (see queryable_tables)
_views: weakref.WeakKeyDictionary[Catalogue, tuple[int, Mapping]] = weakref.WeakKeyDictionary()
_views_lock = threading.Lock()


def queryable_tables(cat: Catalogue) -> Mapping[tuple[str, str], QueryableTable]:
    """Every view of the current published versions (drafts' too: their organisation
    reads them), keyed by ``(schema, name)``.

    The views and their datasets' access facts are the same for every caller (who may read
    them is decided per request, by :func:`check_access`), and they change only with a
    write to a dataset or an organisation, which bumps the catalogue's revision
    (:meth:`Catalogue.current_revision`). So they are kept per catalogue with the revision they were
    read at: a request reads the revision (one indexed one-row query) and reuses them while
    it is unchanged, instead of loading every dataset, version and resource row again (that
    was ~40 ms of a query request's server time). The revision is read before the rows, so
    rows written meanwhile are at most newer than their label, and reloaded at once."""
    rev = cat.current_revision()
    with _views_lock:
        kept = _views.get(cat)
    if kept is not None and kept[0] == rev:
        return kept[1]
    with cat.Session() as s:
        out = _read_views(cat, s)
    view = MappingProxyType(out)  # shared between requests: read-only
    with _views_lock:
        _views[cat] = (rev, view)
    return view


def _read_views(cat: Catalogue, s: Session) -> dict[tuple[str, str], QueryableTable]:
    """The views as session ``s`` reads them (one query: the tables and their datasets'
    facts together)."""
    out: dict[tuple[str, str], QueryableTable] = {}
    for ds, t in cat.published_tables_in(s):
        facts, version = DatasetFacts.of(ds), ds.current_version or 0
        key = (t.view_schema.lower(), t.view_name.lower())
        before = out.get(key)
        if before is not None and before.facts.id != facts.id:
            # two datasets on one view (a database from before names were checked):
            # serve neither, never the later one in the earlier one's place
            claimants = tuple(sorted({*before.claimants, before.table.dataset, t.dataset}))
            out[key] = QueryableTable(before.table, before.facts, before.version, claimants)
            continue
        out[key] = QueryableTable(t, facts, version)
    return out


def check_access(
    principal: Principal, tables: Iterable[QueryableTable], grants: Grants = NO_GRANTS
) -> None:
    """Raise :class:`~catalogue.access.DatasetRestricted` unless ``principal`` may read every
    table's dataset (the one rule, :func:`catalogue.access.may_read`; ``grants`` is the
    exchange's live-grant check)."""
    for t in tables:
        if t.claimants:
            raise ViewAmbiguous(
                f"the view {t.view} belongs to several datasets ({', '.join(t.claimants)}): "
                "it is not served until one is renamed",
                hint="tell the operator: names that differ only in '-' and '_' share one view",
                view=t.view,
                datasets=list(t.claimants),
            )
        require_read(
            principal,
            t.facts,
            grants,
            version=t.version,
            organization=t.table.organization,
            view=t.view,
        )


def _s3_for_query(store: ObjectStore, credentials: Mapping[str, str] | None) -> ObjectStore:
    """The store whose credentials the query connection uses (a read-only key if given)."""
    if not credentials:
        return store
    from ingest.storage.s3 import S3Store

    if not isinstance(store, S3Store):
        return store
    return S3Store(
        store.bucket,
        store.prefix,
        endpoint_url=store.endpoint_url,
        access_key=credentials["key_id"],
        secret_key=credentials["secret"],
        session_token=credentials.get("session_token"),
        region=store.region,
        addressing_style=store.addressing_style,
    )


def open_locked(
    store: ObjectStore,
    tables: Iterable[PublishedTable],
    limits: QueryLimits,
    *,
    temp_dir: Path,
    s3_credentials: Mapping[str, str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A new in-memory connection holding only ``tables``' views, able to open exactly
    their files and nothing else, with its configuration locked.

    Order matters: resource limits and HTTP settings first, then ``allowed_paths`` and
    ``enable_external_access=false``, then the views (they bind through the allow-list),
    then ``lock_configuration=true``. Persistent secrets and extension auto-install/load
    are off from the start; httpfs is loaded from its PyPI package file before the lock.
    DuckDB allows its ``temp_directory`` even with external access off, so ``temp_dir``
    must be a private, empty folder outside the storage folder (checked).
    """
    tables = list(tables)
    paths = sorted({store.uri(k) for t in tables for k in t.uris})
    # DuckDB adds temp_directory to allowed_directories: it must hold no published file
    tmp_prefix = str(Path(temp_dir).resolve()).rstrip("/") + "/"
    if any(str(Path(p).resolve()).startswith(tmp_prefix) for p in paths if "://" not in p):
        raise QueryError(
            f"the query temp directory {temp_dir} holds published files",
            hint="give the query API a temp directory outside the storage folder",
        )
    con = duck.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_persistent_secrets": False,
            "allow_community_extensions": False,
            "threads": max(1, int(limits.threads)),
            "memory_limit": limits.memory_limit,
            "temp_directory": str(temp_dir),
            "max_temp_directory_size": limits.max_temp_size,
            "python_enable_replacements": False,
        },
    )
    try:
        if store.url.startswith("s3://"):
            from ingest.storage.duckdb_s3 import configure_duckdb

            configure_duckdb(con, _s3_for_query(store, s3_credentials), secret_name="nsdx_query")
            con.execute(f"SET GLOBAL http_timeout = {int(limits.http_timeout)}")
            con.execute(f"SET GLOBAL http_retries = {int(limits.http_retries)}")
        con.execute("SET GLOBAL allowed_paths = ?", [paths])
        con.execute("SET GLOBAL enable_external_access = false")
        for t in tables:
            _create_view(con, store, t)
        con.execute("SET GLOBAL lock_configuration = true")
    except duckdb.Error as e:
        con.close()
        raise _query_error(e, store, opening=True) from None
    except BaseException:
        con.close()
        raise
    return con


TIMED_OUT = Msg("the query was stopped: it ran past the time limit")
_URL = re.compile(r"(?:s3|https?)://[^\s'\"]+")


def _clean(msg: str, store: ObjectStore) -> str:
    """An engine message without the storage location (endpoint, bucket, folder)."""
    base = store.uri("x")[:-1]
    if base:
        msg = msg.replace(base, "<storage>/")
    return _URL.sub("<storage>", msg)


def _query_error(e: duckdb.Error, store: ObjectStore, *, opening: bool = False) -> QueryError:
    msg = _clean(str(e).strip().split("\n")[0], store)
    if isinstance(e, duckdb.InterruptException):
        return QueryTimeout(TIMED_OUT)
    if isinstance(e, duckdb.HTTPException | duckdb.IOException):
        return QueryStorageError(
            f"reading the published files failed: {msg}",
            hint="object storage did not answer in time or refused the request; try again, "
            "and tell the operator if it persists",
        )
    if isinstance(e, duckdb.OutOfMemoryException):
        return QueryError(
            f"query failed: {msg}",
            hint="the query needs more memory than a query API request may use; aggregate "
            "or filter more, or use the data through your own DuckDB",
        )
    if opening:
        return QueryStorageError(f"the published views could not be opened: {msg}")
    return QueryError(f"query failed: {msg}")


def stream_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    max_rows: int,
    max_bytes: int,
    timeout: float,
    store: ObjectStore,
) -> tuple[pa.Table, bool]:
    """Run ``sql`` and read at most ``max_rows`` rows (and about ``max_bytes``) from a
    streaming Arrow reader; ``interrupt()`` from a timer stops it after ``timeout`` s.
    Returns the rows and whether more were left."""
    timer = threading.Timer(timeout, con.interrupt)
    timer.daemon = True
    timer.start()
    batches: list[pa.RecordBatch] = []
    truncated = False
    try:
        con.execute(sql)
        reader = con.to_arrow_reader(min(max(max_rows, 1), 10_000))
        schema = reader.schema
        n = nbytes = 0
        for b in reader:
            if n + b.num_rows > max_rows or nbytes + b.nbytes > max_bytes:
                keep = max_rows - n
                if nbytes + b.nbytes > max_bytes and b.num_rows:
                    per_row = max(1, b.nbytes // b.num_rows)
                    keep = min(keep, max(0, (max_bytes - nbytes) // per_row))
                if keep > 0:
                    batches.append(b.slice(0, keep))
                truncated = True
                break
            batches.append(b)
            n += b.num_rows
            nbytes += b.nbytes
        reader.close()
    except duckdb.Error as e:
        raise _query_error(e, store) from None
    finally:
        timer.cancel()
    return pa.Table.from_batches(batches, schema=schema), truncated


@dataclass(frozen=True)
class QueryJob:
    """One checked, allowed statement and everything needed to run it anywhere (in this
    process, or in a query process of :mod:`catalogue.sandbox`): plain, picklable data."""

    store: Mapping[str, str | None]  # :func:`store_spec`: how to reach the published files
    tables: tuple[PublishedTable, ...]
    limits: QueryLimits
    sql: str
    max_rows: int


def store_spec(store: ObjectStore) -> dict[str, str | None]:
    """What a query process needs to reach ``store`` (its URL; for S3 the endpoint and the
    key the query connection uses)."""
    if not store.url.startswith("s3://"):
        return {"url": store.url}
    s3: Any = store
    return {
        "url": s3.url,
        "bucket": s3.bucket,
        "prefix": s3.prefix,
        "endpoint_url": s3.endpoint_url,
        "access_key": s3._access_key,
        "secret_key": s3._secret_key,
        "session_token": s3._session_token,
        "region": s3.region,
        "addressing_style": s3.addressing_style,
    }


def store_of_spec(spec: Mapping[str, str | None]) -> ObjectStore:
    """The store :func:`store_spec` describes."""
    from ingest.storage import open_store

    if "bucket" not in spec:
        return open_store(str(spec["url"]))
    from ingest.storage.s3 import S3Store

    return S3Store(
        str(spec["bucket"]),
        str(spec["prefix"] or ""),
        endpoint_url=spec["endpoint_url"],
        access_key=spec["access_key"],
        secret_key=spec["secret_key"],
        session_token=spec["session_token"],
        region=spec["region"],
        addressing_style=spec["addressing_style"],
    )


def run_job(job: QueryJob, store: ObjectStore | None = None, *, timeout: float | None = None):
    """Run ``job`` on a fresh locked connection (:func:`open_locked`) in this process:
    (the rows, whether more were left). ``timeout`` defaults to the job's limit."""
    import shutil
    import tempfile

    store = store or store_of_spec(job.store)
    limits = job.limits
    if limits.temp_dir is not None:
        limits.temp_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="q-", dir=limits.temp_dir))
    try:
        con = open_locked(store, job.tables, limits, temp_dir=tmp)
        try:
            return stream_query(
                con,
                job.sql,
                max_rows=job.max_rows,
                max_bytes=limits.max_bytes,
                timeout=max(0.1, limits.timeout if timeout is None else timeout),
                store=store,
            )
        finally:
            con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class LockedConnections:
    """The locked connections of one query process (:mod:`catalogue.sandbox`), kept between
    its queries: opening one (a new DuckDB database, its settings, its views, the lock) took
    ~25 ms, ten times a small query's own time.

    A connection is reused only for a job over exactly the same tables, store and limits: it
    was opened by :func:`open_locked` for those tables alone, so it still holds only their
    views and may open only their files, whoever's query comes next (who may run a query is
    decided before the job is made, per request, in :func:`serve_query`). A locked
    connection cannot be changed by what runs on it — only a checked SELECT runs
    (:mod:`catalogue.sql_guard`), and its configuration is locked. A connection whose query
    failed in any way (an error, an interrupt, past its memory) is closed, not kept; at most
    ``size`` are kept, the least recently used closed first, and :meth:`clear` closes them
    all (the process does when its resident memory grows, see ``catalogue.sandbox``)."""

    def __init__(self, size: int = 4) -> None:
        self.size = max(0, size)
        self._kept: dict[tuple, tuple[duckdb.DuckDBPyConnection, Path, ObjectStore]] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def run(self, job: QueryJob, *, timeout: float | None = None) -> tuple[pa.Table, bool]:
        """:func:`run_job`, on a kept connection for the same tables when there is one."""
        import shutil
        import tempfile

        key = (tuple(sorted(job.store.items())), job.tables, job.limits)
        entry = self._kept.pop(key, None)
        if entry is None:
            store, limits = store_of_spec(job.store), job.limits
            if limits.temp_dir is not None:
                limits.temp_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix="q-", dir=limits.temp_dir))
            try:
                con = open_locked(store, job.tables, limits, temp_dir=tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            entry = (con, tmp, store)
        con, tmp, store = entry
        ok = False
        try:
            answer = stream_query(
                con,
                job.sql,
                max_rows=job.max_rows,
                max_bytes=job.limits.max_bytes,
                timeout=max(0.1, job.limits.timeout if timeout is None else timeout),
                store=store,
            )
            ok = True
            return answer
        finally:
            if ok and self.size:
                self._kept[key] = entry  # the most recently used last
                while len(self._kept) > self.size:
                    _close(self._kept.pop(next(iter(self._kept))))
            else:
                _close(entry)

    def clear(self) -> None:
        """Close every kept connection and remove its temp folder."""
        while self._kept:
            _close(self._kept.popitem()[1])


def _close(entry: tuple[duckdb.DuckDBPyConnection, Path, ObjectStore]) -> None:
    import shutil

    con, tmp, _store = entry
    try:
        con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: runs a job within a time budget: (rows, truncated); :func:`run_job` by default, a query
#: process of :mod:`catalogue.sandbox` for the HTTP server
JobRunner = Callable[[QueryJob, float], tuple[pa.Table, bool]]


def serve_query(
    cat: Catalogue,
    store: ObjectStore,
    sql: str,
    principal: Principal,
    *,
    grants: Grants = NO_GRANTS,
    limits: QueryLimits | None = None,
    max_rows: int | None = None,
    s3_credentials: Mapping[str, str] | None = None,
    runner: JobRunner | None = None,
) -> QueryResult:
    """The query API: check ``sql`` (one SELECT over published views, see
    :mod:`catalogue.sql_guard`), check that ``principal`` may read every dataset it
    touches, run it on a locked connection (through ``runner``: in this process by default)
    and return at most ``max_rows`` rows."""
    import time

    from .sql_guard import check_select

    limits = limits or QueryLimits()
    started = time.monotonic()
    known = queryable_tables(cat)
    checked = check_select(sql, known.keys())
    used = [known[v] for v in sorted(checked.views)]
    check_access(principal, used, grants)
    rows = limits.default_rows if max_rows is None else max_rows
    rows = max(0, min(int(rows), limits.max_rows))
    job = QueryJob(
        store=store_spec(_s3_for_query(store, s3_credentials)),
        tables=tuple(t.table for t in used),
        limits=limits,
        sql=checked.sql,
        max_rows=rows,
    )
    budget = max(0.1, limits.timeout - (time.monotonic() - started))
    if runner is None:
        table, truncated = run_job(job, _s3_for_query(store, s3_credentials), timeout=budget)
    else:
        table, truncated = runner(job, budget)
    return QueryResult(
        table=table,
        truncated=truncated,
        elapsed_ms=int((time.monotonic() - started) * 1000),
        views=tuple(t.view for t in used),
    )
