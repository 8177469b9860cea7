"""Machine-readable output is strict, typed JSON: one renderer (catalogue.jsonout) for
`nsdx query --format json`, the HTTP query API and every `--json` document.

Each DuckDB type is checked through both shells on a real deployment (the real CLI in a
subprocess, the real ASGI app); every answer must parse with a parser that refuses NaN and
Infinity, and numbers are read as exact decimals so a rounded DECIMAL cannot pass."""

from __future__ import annotations

import base64
import datetime as dt
import json
import warnings
from decimal import Decimal
from pathlib import Path

import pytest

from catalogue import jsonout
from tests.conftest import run_cli
from validation import duck

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TRIPS = "route,trips\n南沙1路,4130000\n南沙2路,230\n"
DATASETS = """
datasets:
  - {id: trips, title: 客流, domain: transport, organization: bus-co, licence: CC-BY-4.0,
     access: open, source: {path: trips.csv, format: csv},
     schema: [{name: route, type: string}, {name: trips, type: int32}]}
"""
UUID = "5b39ca2d-8191-4907-8658-9622387a1d53"

# (column, SQL expression, the value a strict JSON reader must get)
TYPES = [
    ("boolean", "true", True),
    ("tinyint", "(-7)::TINYINT", -7),
    ("utinyint", "200::UTINYINT", 200),
    ("smallint", "30000::SMALLINT", 30000),
    ("integer", "2147483647::INTEGER", 2147483647),
    ("bigint", "9007199254740993::BIGINT", 9007199254740993),  # not a double
    ("ubigint", "18446744073709551615::UBIGINT", 18446744073709551615),
    ("hugeint", "(-170141183460469231731687303715884105727)::HUGEINT",
     -170141183460469231731687303715884105727),
    ("sum_int", "(SELECT sum(trips) FROM transport.trips)", 4130230),  # HUGEINT from sum()
    ("decimal", "12.50::DECIMAL(10,2)", Decimal("12.50")),
    ("decimal_38", "(-12345678901234567890123456789.123456789)::DECIMAL(38,9)",
     Decimal("-12345678901234567890123456789.123456789")),
    ("decimal_whole", "42::DECIMAL(10,0)", 42),
    ("double", "0.1::DOUBLE", Decimal("0.1")),
    ("float", "1.5::FLOAT", Decimal("1.5")),
    ("nan", "'nan'::DOUBLE", None),
    ("infinity", "'infinity'::DOUBLE", None),
    ("minus_infinity", "'-infinity'::FLOAT", None),
    ("varchar", "'南沙 \"quoted\" \\ back'", '南沙 "quoted" \\ back'),
    ("blob", "'\\xAA\\x00abc'::BLOB", base64.b64encode(b"\xaa\x00abc").decode()),
    ("date", "DATE '2024-02-29'", "2024-02-29"),
    ("infinite_date", "'infinity'::DATE", None),
    ("timestamp", "TIMESTAMP '2024-01-01 12:34:56.789'", "2024-01-01T12:34:56.789000"),
    ("timestamp_s", "TIMESTAMP_S '2024-01-01 00:00:01'", "2024-01-01T00:00:01"),
    ("timestamp_ns", "TIMESTAMP_NS '2024-01-01 00:00:00.123456789'",
     "2024-01-01T00:00:00.123456789"),
    ("infinite_timestamp", "'-infinity'::TIMESTAMP", None),
    ("time", "TIME '12:34:56.5'", "12:34:56.500000"),
    ("interval", "INTERVAL '1 month 2 days 3.5 seconds'", "P1M2DT3.5S"),
    ("interval_neg", "INTERVAL '-1 year 3 hours'", "P-1YT3H"),
    ("uuid", f"'{UUID}'::UUID", UUID),
    ("list", "[1, 2, NULL]", [1, 2, None]),
    ("array", "[1, 2, 3]::INTEGER[3]", [1, 2, 3]),
    ("struct", "{'x': 1, 'y': 'z', 'd': 1.50::DECIMAL(4,2)}", {"x": 1, "y": "z", "d": Decimal("1.50")}),
    ("map", "MAP {'k1': 1, 'k2': 2}", {"k1": 1, "k2": 2}),
    ("map_int_keys", "MAP {1: 'a', 2: 'b'}", {"1": "a", "2": "b"}),
    ("nested", "[{'when': DATE '2024-01-02', 'v': 'nan'::DOUBLE}]", [{"when": "2024-01-02", "v": None}]),
    ("null", "NULL::INTEGER", None),
]  # fmt: skip
TYPES_SQL = "SELECT " + ", ".join(f"{sql} AS {name}" for name, sql, _ in TYPES)


def reject(constant: str):
    raise AssertionError(f"not JSON: {constant}")


def strict(text: str):
    """Parse as a strict client would; floats as exact decimals."""
    return json.loads(text, parse_constant=reject, parse_float=Decimal)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("json")
    (root / "trips.csv").write_text(TRIPS, encoding="utf-8")
    (root / "datasets.yaml").write_text(DATASETS, encoding="utf-8")
    env = {
        "NSDX_HOME": str(root / "home"),
        "NSDX_DATASETS": str(root / "datasets.yaml"),
        "NSDX_PII_KEY": "k",
        "NSDX_DATABASE_URL": "",
        "NSDX_STORAGE_URL": "",
    }
    out = run_cli("ingest", "--all", "--json", env=env)
    doc = strict(out.stdout)  # the whole of stdout is one JSON document
    assert [r["status"] for r in doc["results"]] == ["published"] and doc["errors"] == []
    return env


def test_query_format_json_types(deployment):
    out = run_cli("query", TYPES_SQL, "--format", "json", env=deployment)
    [row] = strict(out.stdout)
    assert list(row) == [name for name, _, _ in TYPES]
    for name, _, expected in TYPES:
        assert row[name] == expected, name
        assert type(row[name]) is type(expected), name  # 4130230, not "4130230"


def test_http_query_api_types(deployment):
    from nsdx.core import Nsdx
    from nsdx.settings import Settings
    from nsdx.web import create_app

    nx = Nsdx(Settings.from_env(deployment))
    with TestClient(create_app(nx, warm=False, worker=False)) as client:
        r = client.post("/api/query", json={"sql": TYPES_SQL})
    assert r.status_code == 200, r.text
    body = strict(r.text)
    assert [c["name"] for c in body["columns"]] == [name for name, _, _ in TYPES]
    [row] = body["rows"]
    for (name, _, expected), got in zip(TYPES, row, strict=True):
        assert got == expected, name
        assert type(got) is type(expected), name


def test_timestamp_with_time_zone_is_the_same_instant(deployment):
    sql = "SELECT TIMESTAMPTZ '2024-01-01 12:00:00+08' AS t"
    [row] = strict(run_cli("query", sql, "--format", "json", env=deployment).stdout)
    got = dt.datetime.fromisoformat(row["t"])
    assert got.utcoffset() is not None
    assert got == dt.datetime(2024, 1, 1, 4, tzinfo=dt.UTC)


def test_repeated_column_names_are_all_kept(deployment):
    out = run_cli("query", "SELECT 1 AS a, 2 AS a, 3 AS a", "--format", "json", env=deployment)
    assert strict(out.stdout) == [{"a": 1, "a_1": 2, "a_2": 3}]


def test_json_commands_print_exactly_one_document(deployment):
    for args in (
        ("datasets", "list", "--json"),
        ("datasets", "show", "trips", "--json"),
        ("ingest", "trips", "--json"),  # unchanged: "up to date", still one document
        ("storage", "check", "--json"),
    ):
        out = run_cli(*args, env=deployment)
        doc = strict(out.stdout)
        assert doc, args


# -- the renderer itself ---------------------------------------------------------------------
def test_every_type_renders_the_same_from_a_bare_connection():
    con = duck.connect()
    con.execute("CREATE SCHEMA transport")
    con.execute("CREATE TABLE transport.trips AS SELECT 4130230::INTEGER AS trips")
    t = con.execute(TYPES_SQL).to_arrow_table()
    [row] = strict(jsonout.dumps(jsonout.rows(t)))
    assert row == [expected for _, _, expected in TYPES]


@pytest.mark.parametrize(
    "months, days, ns, text",
    [
        (0, 0, 0, "PT0S"),
        (14, 0, 0, "P1Y2M"),
        (0, 3, 3_723_000_000_000 + 500_000, "P3DT1H2M3.0005S"),
        (-1, -2, -1_000, "P-1M-2DT-0.000001S"),
    ],
)
def test_intervals_are_iso_8601_durations(months, days, ns, text):
    assert jsonout.duration(months, days, ns) == text


def test_a_string_that_looks_like_a_number_marker_stays_a_string():
    s = "\0" + "0" * 16 + ":0\0"
    text = jsonout.dumps([s, Decimal("1.25")])
    assert json.loads(text) == [s, 1.25]


def test_exact_decimals_and_non_finite_values_in_any_document():
    doc = {"price": Decimal("100.10"), "ratio": float("nan"), "when": dt.date(2026, 1, 2)}
    assert jsonout.dumps(doc) == '{"price": 100.10, "ratio": null, "when": "2026-01-02"}'


def test_progress_bar_is_off_on_every_connection(deployment):
    from catalogue.query import open_locked
    from nsdx.core import Nsdx
    from nsdx.settings import Settings

    nx = Nsdx(Settings.from_env(deployment))
    setting = "SELECT current_setting('enable_progress_bar')"
    assert duck.connect().execute(setting).fetchone() == (False,)
    assert nx.connect().execute(setting).fetchone() == (False,)
    tables = nx.catalogue.published_tables()
    from catalogue.query import QueryLimits

    tmp = Path(deployment["NSDX_HOME"]).parent / "qtmp"
    tmp.mkdir(exist_ok=True)
    con = open_locked(nx.store, tables, QueryLimits(), temp_dir=tmp)
    assert con.execute(setting).fetchone() == (False,)


def test_nsdx_opens_duckdb_only_through_one_helper():
    """Every connection gets the progress bar off because all of them come from duck.connect."""
    import re

    root = Path(__file__).resolve().parent.parent
    opened = re.compile(r"\bduckdb\.connect\(")
    found = [
        f"{p.relative_to(root)}:{i}"
        for pkg in ("nsdx", "catalogue", "ingest", "validation", "exchange")
        for p in sorted((root / pkg).rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if opened.search(line)
    ]
    assert found == ["validation/duck.py:" + str(_line_of_connect(root))]


def _line_of_connect(root: Path) -> int:
    lines = (root / "validation" / "duck.py").read_text(encoding="utf-8").splitlines()
    [n] = [i for i, line in enumerate(lines, 1) if "duckdb.connect(" in line and "``" not in line]
    return n


def test_jsonl_downloads_use_the_same_renderer(tmp_path):
    """`/dataset/<name>/v<N>/<table>.jsonl`: DuckDB's own to_json wrote NaN and Infinity."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from catalogue.downloads import DownloadFile, DownloadTable, stream_jsonl
    from ingest.storage import open_store

    store = open_store(f"file://{tmp_path / 'objects'}")
    table = pa.table(
        {
            "speed": [1.5, float("nan"), float("inf")],
            "fare": pa.array([Decimal("2.50"), None, Decimal("10.00")], pa.decimal128(6, 2)),
            "day": [dt.date(2026, 3, 2)] * 3,
        }
    )
    part = tmp_path / "objects" / "d" / "v1" / "part-00000.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(table, part)
    f = DownloadFile("d/v1/part-00000.parquet", part.name, part.stat().st_size, "", 3)
    t = DownloadTable(
        "d", "id", "transport", None, None, "open", False, "active", 1, True,
        dt.datetime(2026, 3, 2), "d", None, (f,), 3,
    )  # fmt: skip
    text = b"".join(stream_jsonl(store, t)).decode()
    assert [strict(line) for line in text.splitlines()] == [
        {"speed": Decimal("1.5"), "fare": Decimal("2.50"), "day": "2026-03-02"},
        {"speed": None, "fare": None, "day": "2026-03-02"},
        {"speed": None, "fare": Decimal("10.00"), "day": "2026-03-02"},
    ]


def test_an_infinite_date_is_empty_in_every_format(deployment):
    """DuckDB's infinite DATE/TIMESTAMP has no Python or JSON value: the JSON answers give
    null (above); a fresh check found the CLI's table failing with "unexpected
    OverflowError" (exit 2) and CSV writing "<value out of range: 2147483647>"."""
    from nsdx.core import Nsdx
    from nsdx.settings import Settings
    from nsdx.web import create_app

    sql = ("SELECT 'infinity'::DATE AS d, '-infinity'::TIMESTAMP AS t, DATE '2024-01-02' AS ok, "
           "1 AS a, 2 AS a")  # fmt: skip
    out = run_cli("query", sql, env=deployment).stdout
    assert "2024-01-02" in out and "(1 row)" in out
    assert run_cli("query", sql, "--format", "csv", env=deployment).stdout.splitlines() == [
        '"d","t","ok","a","a"',
        ",,2024-01-02,1,2",
    ]
    nx = Nsdx(Settings.from_env(deployment))
    with TestClient(create_app(nx, warm=False, worker=False)) as client:
        r = client.post("/api/query", json={"sql": sql, "format": "csv"})
    assert r.status_code == 200 and r.text.splitlines()[1] == ",,2024-01-02,1,2", r.text
