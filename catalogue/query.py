"""DuckDB over published data: every current version is a view ``<domain>.<id>``
(``-`` turned into ``_``), a multi-table dataset one view per table ``<domain>.<id>__<table>``.

DuckDB is touched here (and in ingest.storage.duckdb_s3 for S3 wiring) only.
"""

from __future__ import annotations

import duckdb

from ingest.storage import ObjectStore

from .errors import QueryError
from .registry import Catalogue, PublishedTable


def _quote(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(
    cat: Catalogue,
    store: ObjectStore,
    *,
    include_restricted: bool = True,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per published table."""
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    if store.url.startswith("s3://"):
        from ingest.storage.duckdb_s3 import configure_duckdb

        configure_duckdb(con, store)
    for t in cat.published_tables():
        if t.access != "open" and not include_restricted:
            continue
        _create_view(con, store, t)
    return con


def _create_view(con, store: ObjectStore, t: PublishedTable) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(t.view_schema)}")
    files = ", ".join(_lit(store.uri(k)) for k in t.uris)
    con.execute(
        f"CREATE OR REPLACE VIEW {_quote(t.view_schema)}.{_quote(t.view_name)} AS "
        f"SELECT * FROM read_parquet([{files}])"
    )


def views(cat: Catalogue) -> list[str]:
    return [f"{t.view_schema}.{t.view_name}" for t in cat.published_tables()]


def run_query(con: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int | None = None):
    """Run ``sql`` and return an Arrow table (at most ``max_rows`` rows when given)."""
    try:
        rel = con.execute(sql)
        if max_rows is None:
            return rel.fetch_arrow_table()
        reader = rel.fetch_record_batch(min(max_rows, 100_000))
        import pyarrow as pa

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
            hint = "run `nsdx datasets list` to see views; names are <domain>.<id> with '-' as '_'"
        raise QueryError(f"query failed: {msg}", hint=hint) from None
