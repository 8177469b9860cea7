"""validation: shorthand -> great-expectations, batch + dataset-level runs, reports."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.procs import child_workers, gone
from validation import BatchValidator, ExpectationConfigError, parse_expectations
from validation.gx import build_expectation
from validation.shorthand import TYPE_LISTS

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("speed", pa.float64()),
        ("plate", pa.string()),
        ("route", pa.string()),
        ("ts", pa.timestamp("us")),
    ]
)


# a great-expectations entry (Arrow judges the shorthand ones: no worker for them)
GX_BETWEEN = {
    "gx": "expect_column_values_to_be_between",
    "column": "speed",
    "min_value": 0,
    "max_value": 150,
}


def _table() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([1, 2, 2, 4, None, 6], pa.int64()),
            "speed": [10.0, 200.0, None, 50.0, -1.0, 30.0],
            "plate": ["粤A12345", "x", None, "粤B22222", "粤C33333", "粤AD12345"],
            "route": ["R1", "R2", "R9", "R1", "R1", "R2"],
            "ts": pa.array([dt.datetime(2024, 1, d) for d in range(1, 7)], pa.timestamp("us")),
        },
        schema=SCHEMA,
    )


def _run(exps, table=None, on_invalid="fail", tmp_path=None, chunk=None, **kw):
    table = table if table is not None else _table()
    v = BatchValidator("demo", exps, table.schema, on_invalid, **kw)
    masks, offset = [], 0
    for b in table.to_batches(max_chunksize=chunk or table.num_rows or 1):
        masks.append(v.check_batch(b, offset))
        offset += b.num_rows
    files = []
    if tmp_path is not None:
        path = tmp_path / "part-0.parquet"
        pq.write_table(table, path)
        files = [str(path)]
    return v, v.finish(files), masks


def _result(report, label):
    (r,) = [r for r in report.results if r.label == label]
    return r


# -- shorthand -> great-expectations ----------------------------------------------------

SHORTHAND_CASES = [
    (
        {"column": "plate", "not_null": True},
        "expect_column_values_to_not_be_null",
        {"column": "plate"},
    ),
    (
        {"column": "speed", "between": [0, 150]},
        "expect_column_values_to_be_between",
        {"column": "speed", "min_value": 0, "max_value": 150},
    ),
    (
        {"column": "speed", "between": [0, None], "strict": True},
        "expect_column_values_to_be_between",
        {
            "column": "speed",
            "min_value": 0,
            "max_value": None,
            "strict_min": True,
            "strict_max": True,
        },
    ),
    (
        {"column": "route", "in_set": ["R1", "R2"]},
        "expect_column_values_to_be_in_set",
        {"column": "route", "value_set": ["R1", "R2"]},
    ),
    (
        {"column": "plate", "regex": "^粤"},
        "expect_column_values_to_match_regex",
        {"column": "plate", "regex": "^粤"},
    ),
    (
        {"column": "plate", "length": [7, 8]},
        "expect_column_value_lengths_to_be_between",
        {"column": "plate", "min_value": 7, "max_value": 8},
    ),
    (
        {"column": "plate", "length": 7},
        "expect_column_value_lengths_to_equal",
        {"column": "plate", "value": 7},
    ),
    (
        {"column": "id", "type": "integer"},
        "expect_column_values_to_be_in_type_list",
        {"column": "id", "type_list": TYPE_LISTS["integer"]},
    ),
    ({"column": "id", "unique": True}, "expect_column_values_to_be_unique", {"column": "id"}),
    (
        {"columns": ["id", "ts"], "unique": True},
        "expect_compound_columns_to_be_unique",
        {"column_list": ["id", "ts"]},
    ),
    (
        {"row_count": {"between": [1, 10]}},
        "expect_table_row_count_to_be_between",
        {"min_value": 1, "max_value": 10},
    ),
    (
        {"column": "speed", "min": {"between": [0, None]}},
        "expect_column_min_to_be_between",
        {"column": "speed", "min_value": 0, "max_value": None},
    ),
    (
        {"column": "speed", "max": {"between": [None, 150]}},
        "expect_column_max_to_be_between",
        {"column": "speed", "min_value": None, "max_value": 150},
    ),
    (
        {"column": "speed", "mean": {"between": [10, 60]}},
        "expect_column_mean_to_be_between",
        {"column": "speed", "min_value": 10, "max_value": 60},
    ),
    (
        {"column": "route", "distinct": {"between": [1, 5]}},
        "expect_column_unique_value_count_to_be_between",
        {"column": "route", "min_value": 1, "max_value": 5},
    ),
    (
        {"column": "ts", "freshness": {"max_age_days": 2}},
        "expect_column_max_to_be_between",
        {"column": "ts", "min_value": None, "max_value": None},
    ),
    (
        {"column": "route", "in_dataset": {"dataset": "routes", "column": "route_id"}},
        "expect_column_values_to_be_in_dataset",
        {"column": "route", "dataset": "routes", "dataset_column": "route_id"},
    ),
    (
        {"gx": "expect_column_stdev_to_be_between", "column": "speed", "max_value": 5},
        "expect_column_stdev_to_be_between",
        {"column": "speed", "max_value": 5},
    ),
    (
        {"column": "plate", "not_null": True, "mostly": 0.95},
        "expect_column_values_to_not_be_null",
        {"column": "plate", "mostly": 0.95},
    ),
]


@pytest.mark.parametrize("raw,gx_type,kwargs", SHORTHAND_CASES)
def test_shorthand_maps_to_gx(raw, gx_type, kwargs):
    (exp,) = parse_expectations([raw], SCHEMA)
    assert exp.type == gx_type
    assert exp.kwargs == kwargs


@pytest.mark.parametrize(
    "raw,gx_type", [(r, t) for r, t, _ in SHORTHAND_CASES if not t.endswith("_in_dataset")]
)
def test_every_gx_type_is_a_real_great_expectations_expectation(raw, gx_type):
    (exp,) = parse_expectations([raw], SCHEMA)
    kwargs = {k: v for k, v in exp.kwargs.items() if v is not None}
    build_expectation(gx_type, kwargs)  # raises ValueError if GX does not know it


@pytest.mark.parametrize(
    "raw,key,words",
    [
        ({"column": "speed", "betwen": [0, 1]}, "betwen", "unknown expectation key 'betwen'"),
        ({"column": "nope", "not_null": True}, "not_null", "column 'nope' is not in the data"),
        ({"column": "speed", "regex": "^a"}, "regex", "needs a string column"),
        ({"column": "speed", "between": [None, None]}, "between", "checks nothing"),
        ({"column": "speed", "between": [5, 1]}, "between", "greater than max"),
        ({"row_count": {"between": [1, 2]}, "mostly": 0.9}, "mostly", "mostly does not apply"),
        ({"column": "speed", "not_null": True, "mostly": 2}, "mostly", "mostly must be"),
        ({"column": "id", "type": "bigint"}, "type", "is not one of"),
        (
            {"column": "speed", "not_null": True, "between": [0, 1]},
            "between",
            "one check per entry",
        ),
        ({"gx": "expect_column_values_to_be_purple", "column": "id"}, "gx", "no expectation"),
        ({"gx": "expect_column_values_to_be_between", "colum": "id"}, "gx", "expect_column"),
    ],
)
def test_bad_shorthand_names_index_and_key_before_reading_data(raw, key, words):
    exps = [{"column": "id", "not_null": True}, raw]
    with pytest.raises(ExpectationConfigError) as e:
        BatchValidator("demo", exps, SCHEMA, file="datasets.yaml")
    assert e.value.index == 1
    assert e.value.key == key
    assert words in str(e.value)
    assert str(e.value).startswith("datasets.yaml: dataset 'demo': expectations[1]")


def test_unknown_key_lists_what_is_supported():
    with pytest.raises(ExpectationConfigError) as e:
        parse_expectations([{"column": "id", "nonnull": True}], SCHEMA)
    assert "supported keys: not_null, between, in_set, regex, length, type, unique" in e.value.hint


# -- row-level through great-expectations ----------------------------------------------


def test_failing_rows_give_counts_samples_and_row_numbers(tmp_path):
    exps = [
        {"column": "id", "not_null": True},
        {"column": "speed", "between": [0, 150]},
        {"column": "plate", "regex": "^粤[A-Z]{1,2}[0-9]{5}$"},
        {"column": "route", "in_set": ["R1", "R2"]},
        {"column": "plate", "length": [7, 8]},
    ]
    # two batches: row numbers must continue across them
    _, report, _ = _run(exps, chunk=4, tmp_path=tmp_path)
    nn = _result(report, "id not_null")
    assert (nn.result["unexpected_count"], nn.result["partial_unexpected_rows"]) == (1, [5])
    bt = _result(report, "speed between [0, 150]").result
    assert bt["unexpected_count"] == 2
    assert bt["partial_unexpected_list"] == [200.0, -1.0]
    assert bt["partial_unexpected_rows"] == [2, 5]
    assert bt["missing_count"] == 1 and bt["element_count"] == 6
    rx = _result(report, "plate regex ^粤[A-Z]{1,2}[0-9]{5}$").result
    assert (
        rx["unexpected_count"],
        rx["partial_unexpected_list"],
        rx["partial_unexpected_rows"],
    ) == (
        1,
        ["x"],
        [2],
    )
    ins = _result(report, "route in_set [R1, R2]").result
    assert (ins["unexpected_count"], ins["partial_unexpected_rows"]) == (1, [3])
    assert _result(report, "plate length [7, 8]").result["unexpected_count"] == 1
    assert not report.success
    assert report.failures_by_expectation == {
        "id not_null": 1,
        "speed between [0, 150]": 2,
        "plate regex ^粤[A-Z]{1,2}[0-9]{5}$": 1,
        "route in_set [R1, R2]": 1,
        "plate length [7, 8]": 1,
    }


def test_report_is_in_great_expectations_result_format(tmp_path):
    _, report, _ = _run([{"column": "speed", "between": [0, 150]}], tmp_path=tmp_path)
    d = json.loads(report.to_json())
    assert set(d) == {"success", "statistics", "results", "meta"}
    assert d["statistics"] == {
        "evaluated_expectations": 1,
        "successful_expectations": 0,
        "unsuccessful_expectations": 1,
        "success_percent": 0.0,
    }
    (r,) = d["results"]
    assert r["expectation_config"]["type"] == "expect_column_values_to_be_between"
    assert r["expectation_config"]["kwargs"] == {
        "column": "speed",
        "min_value": 0,
        "max_value": 150,
    }
    assert r["success"] is False
    for k in ("element_count", "unexpected_count", "unexpected_percent", "partial_unexpected_list"):
        assert k in r["result"]
    assert r["result"]["partial_unexpected_rows"] == [2, 5]
    s = report.summary()
    assert s["failures_by_expectation"] == {"speed between [0, 150]": 2}
    assert s["row_count"] == 6 and s["success"] is False
    assert 0 <= s["score"] < 100


def test_mostly_tolerates_a_share_of_bad_rows():
    _, report, _ = _run(
        [
            {"column": "speed", "between": [0, 150], "mostly": 0.5},
            {"column": "speed", "between": [0, 150], "mostly": 0.9},
        ]
    )
    assert [r.success for r in report.results] == [True, False]  # 2 of 5 non-null are bad


def test_quarantine_mask_and_reasons(tmp_path):
    table = _table()
    v = BatchValidator(
        "demo",
        [{"column": "speed", "between": [0, 150]}, {"column": "id", "not_null": True}],
        SCHEMA,
        "quarantine_rows",
    )
    batch = table.to_batches()[0]
    mask = v.check_batch(batch, 0)
    assert mask.to_pylist() == [True, False, True, True, False, True]
    reasons = v.quarantine_reason(batch).to_pylist()
    assert reasons == [
        None,
        "speed between [0, 150]",
        None,
        None,
        "speed between [0, 150]; id not_null",
        None,
    ]
    kept = batch.filter(mask)
    path = tmp_path / "kept.parquet"
    pq.write_table(pa.Table.from_batches([kept]), path)
    report = v.finish([str(path)])
    assert report.quarantined_rows == 2
    assert not report.success and report.publishable  # only row-level failures, set aside
    assert report.summary()["quarantined_rows"] == 2


def test_no_mask_unless_quarantine():
    v = BatchValidator("demo", [{"column": "speed", "between": [0, 150]}], SCHEMA, "fail")
    assert v.check_batch(_table().to_batches()[0], 0) is None


def test_timestamp_bounds_and_type(tmp_path):
    _, report, _ = _run(
        [
            {"column": "ts", "between": ["2024-01-02", "2024-01-05"]},
            {"column": "id", "type": "integer"},
            {"column": "plate", "type": "string"},
            {"column": "speed", "type": "integer"},
        ],
        tmp_path=tmp_path,
    )
    assert _result(report, "ts between [2024-01-02, 2024-01-05]").result["unexpected_count"] == 2
    assert _result(report, "id type integer").success
    assert _result(report, "plate type string").success
    assert not _result(report, "speed type integer").success


def test_gx_passthrough_row_and_full_level(tmp_path):
    v, report, _ = _run(
        [
            {"gx": "expect_column_values_to_not_match_regex", "column": "plate", "regex": "^x$"},
            {"gx": "expect_column_stdev_to_be_between", "column": "speed", "max_value": 1},
        ],
        tmp_path=tmp_path,
    )
    row, full = report.results
    assert row.level == "row" and row.result["unexpected_count"] == 1
    assert row.result["partial_unexpected_rows"] == [2]
    assert full.level == "gx_full" and not full.success
    assert full.result["observed_value"] > 1


# -- dataset-level with DuckDB ----------------------------------------------------------


def _write_parts(tmp_path, table, n_parts):
    files = []
    rows = np.array_split(np.arange(table.num_rows), n_parts)
    for i, idx in enumerate(rows):
        path = tmp_path / f"part-{i}.parquet"
        pq.write_table(table.take(pa.array(idx)), path)
        files.append(str(path))
    return files


def test_unique_and_row_count_over_several_parquet_files(tmp_path):
    table = _table()
    files = _write_parts(tmp_path, table, 3)
    v = BatchValidator(
        "demo",
        [
            {"column": "id", "unique": True},
            {"columns": ["id", "route"], "unique": True},
            {"column": "route", "unique": True},
            {"row_count": {"between": [1, 5]}},
            {"row_count": {"between": [6, 6]}},
            {"column": "speed", "min": {"between": [0, None]}},
            {"column": "speed", "mean": {"between": [0, 100]}},
            {"column": "route", "distinct": {"between": [3, 3]}},
        ],
        SCHEMA,
    )
    report = v.finish(files)
    u = _result(report, "id unique").result
    assert (u["unexpected_count"], u["partial_unexpected_list"], u["partial_unexpected_rows"]) == (
        2,
        [2, 2],
        [2, 3],
    )
    assert u["missing_count"] == 1
    assert _result(report, "(id, route) unique").success  # (2, R2) and (2, R9) differ
    ru = _result(report, "route unique").result
    assert ru["unexpected_count"] == 5 and ru["partial_unexpected_rows"] == [1, 2, 4, 5, 6]
    assert not _result(report, "row_count between [1, 5]").success
    rc = _result(report, "row_count between [6, 6]")
    assert rc.success and rc.result["observed_value"] == 6
    mn = _result(report, "speed min between [0, null]")
    assert not mn.success and mn.result["observed_value"] == -1.0
    assert _result(report, "speed mean between [0, 100]").result["observed_value"] == pytest.approx(
        57.8
    )
    assert _result(report, "route distinct between [3, 3]").success
    assert report.to_dict()["results"][3]["expectation_config"]["type"] == (
        "expect_table_row_count_to_be_between"
    )


def test_freshness_against_given_now(tmp_path):
    # newest ts in _table(): 2024-01-06 00:00 (naive = Asia/Shanghai local time)
    exps = [{"column": "ts", "freshness": {"max_age_days": 2}}]
    cst = dt.timezone(dt.timedelta(hours=8))
    _, fresh, _ = _run(exps, tmp_path=tmp_path, now=dt.datetime(2024, 1, 7, 12, tzinfo=cst))
    _, stale, _ = _run(exps, tmp_path=tmp_path, now=dt.datetime(2024, 1, 8, 1, tzinfo=cst))
    assert fresh.success and not stale.success
    r = stale.results[0]
    assert r.type == "expect_column_max_to_be_between"
    assert r.kwargs["min_value"] == "2024-01-06T01:00:00"
    assert r.result["observed_value"] == "2024-01-06T00:00:00"
    assert r.result["details"]["age_days"] == pytest.approx(2 + 1 / 24, abs=1e-3)


def test_referential_in_dataset(tmp_path):
    routes = tmp_path / "routes.parquet"
    pq.write_table(pa.table({"route_id": ["R1", "R2", "R3"]}), routes)
    exps = [{"column": "route", "in_dataset": {"dataset": "bus-routes", "column": "route_id"}}]
    resolve = {"bus-routes": [str(routes)]}.get
    _, report, _ = _run(exps, tmp_path=tmp_path, resolve_dataset=resolve)
    r = report.results[0]
    assert not r.success
    assert (r.result["unexpected_count"], r.result["partial_unexpected_list"]) == (1, ["R9"])
    assert r.result["partial_unexpected_rows"] == [3]
    # a missing dataset or no resolver fails with a clear message
    _, report, _ = _run(exps, tmp_path=tmp_path, resolve_dataset=lambda _id: [])
    assert not report.success
    assert "cannot check against dataset 'bus-routes'" in report.results[0].exception
    assert "publish 'bus-routes' first" in report.results[0].exception
    _, report, _ = _run(exps, tmp_path=tmp_path)
    assert "no dataset resolver" in report.results[0].exception


def test_html_report_shows_the_failure(tmp_path):
    _, report, _ = _run([{"column": "speed", "between": [0, 150]}], tmp_path=tmp_path)
    html = report.to_html()
    assert html.startswith("<!DOCTYPE html>")
    assert "数据质量报告" in html and "Validation report" in html
    assert "未通过的检查" in html and "Failed expectations" in html
    assert "speed between [0, 150]" in html
    assert "expect_column_values_to_be_between" in html
    assert "2: <code>200.0</code>" in html
    assert "<script" not in html


def test_the_report_template_is_compiled_once_per_user_and_renders_the_same(tmp_path, monkeypatch):
    """The HTML report's template is compiled once and then read from jinja2's bytecode
    cache in the user's private temporary folder (each ingest used to spend ~0.1 s of CPU
    compiling it): the page is the same either way, and no usable cache folder only means
    compiling every time."""
    import tempfile

    from validation import report as report_module

    _, report, _ = _run([{"column": "speed", "between": [0, 150]}], tmp_path=tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    report_module._template.cache_clear()
    compiled = report.to_html()
    (folder,) = (tmp_path / "tmp").iterdir()
    assert folder.name == f"_jinja2-cache-{os.getuid()}" and folder.stat().st_mode & 0o777 == 0o700
    assert [p.suffix for p in folder.iterdir()] == [".cache"]
    report_module._template.cache_clear()
    assert report.to_html() == compiled  # read from the cache

    folder.rename(tmp_path / "elsewhere")
    folder.write_text("not a folder")  # the private folder cannot be made: no cache
    report_module._template.cache_clear()
    assert report.to_html() == compiled
    report_module._template.cache_clear()


def test_html_escapes_data(tmp_path):
    table = _table().set_column(2, "plate", pa.array(["<script>alert(1)</script>"] * 6))
    _, report, _ = _run([{"column": "plate", "regex": "^粤"}], table=table, tmp_path=tmp_path)
    assert "<script>alert" not in report.to_html()


def test_empty_data(tmp_path):
    table = SCHEMA.empty_table()
    v = BatchValidator(
        "demo",
        [{"column": "speed", "between": [0, 1]}, {"row_count": {"between": [1, None]}}],
        SCHEMA,
    )
    report = v.finish([])
    assert report.results[0].success  # nothing to judge
    assert not report.results[1].success and report.results[1].result["observed_value"] == 0
    assert table.num_rows == 0


# -- property: GX's unexpected count equals a direct pyarrow computation -------------------

values = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.integers(-1000, 1000))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(values, min_size=0, max_size=60),
    st.tuples(st.integers(-500, 500), st.integers(0, 1000)),
    st.integers(1, 25),
)
def test_unexpected_counts_match_pyarrow(xs, bounds, chunk):
    lo, hi = min(bounds), max(bounds)
    arr = pa.array([None if x is None else float(x) for x in xs], pa.float64())
    table = pa.table({"x": arr})
    _, report, _ = _run(
        [{"column": "x", "between": [lo, hi]}, {"column": "x", "not_null": True}],
        table=table,
        chunk=chunk,
    )
    between, not_null = report.results
    outside = pc.or_(pc.less(arr, lo), pc.greater(arr, hi))
    expected = pc.sum(pc.cast(pc.fill_null(outside, False), pa.int64())).as_py() or 0
    assert between.result["unexpected_count"] == expected
    assert not_null.result["unexpected_count"] == arr.null_count
    assert (
        between.result["partial_unexpected_rows"]
        == [i + 1 for i, x in enumerate(xs) if x is not None and not lo <= x <= hi][:20]
    )
    assert report.success == (expected == 0 and arr.null_count == 0)


def test_table_entries_of_a_multi_table_dataset():
    exps = [
        {"table": "stops", "column": "stop_id", "unique": True},
        {"table": "trips", "column": "trip_id", "not_null": True},
        {"row_count": {"between": [1, None]}},
    ]
    stops = parse_expectations(exps, pa.schema([("stop_id", pa.string())]), table="stops")
    assert [(e.index, e.type, e.meta["table"]) for e in stops] == [
        (0, "expect_column_values_to_be_unique", "stops")
    ]
    assert [e.index for e in parse_expectations(exps, None)] == [2]
    with pytest.raises(ExpectationConfigError) as e:
        parse_expectations(
            [{"table": "stops", "column": "nope", "unique": True}], SCHEMA, table="stops"
        )
    assert e.value.index == 0


def test_distinct_value_path_matches_row_by_row(tmp_path):
    """A column with few distinct values is judged per value; counts and rows map back."""
    import pyarrow as pa

    from validation import BatchValidator, runner

    routes = ["南沙1路", "南沙2路", "X99", None] * 5_000  # 20,000 rows, 4 distinct values
    batch = pa.record_batch({"route_id": pa.array(routes, pa.string())})
    exps = [
        {"column": "route_id", "in_set": ["南沙1路", "南沙2路"]},
        {"column": "route_id", "not_null": True},
    ]
    results = []
    for ratio in (1.0, 0.0):  # 1.0: distinct path; 0.0: every row through GX
        runner.DISTINCT_RATIO, saved = ratio, runner.DISTINCT_RATIO
        try:
            v = BatchValidator("r", exps, batch.schema, on_invalid="quarantine_rows")
            valid = v.check_batch(batch, 0)
            pq_path = tmp_path / f"r{ratio}.parquet"
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_batches([batch]), pq_path)
            rep = v.finish([str(pq_path)]).to_dict()
        finally:
            runner.DISTINCT_RATIO = saved
        results.append((valid.to_pylist(), rep))
    (mask_a, rep_a), (mask_b, rep_b) = results
    assert mask_a == mask_b
    assert mask_a[:4] == [True, True, False, False]
    for a, b in zip(rep_a["results"], rep_b["results"], strict=True):
        assert a["result"]["unexpected_count"] == b["result"]["unexpected_count"]
        assert a["result"]["partial_unexpected_rows"] == b["result"]["partial_unexpected_rows"]
    in_set = rep_a["results"][0]["result"]
    assert in_set["unexpected_count"] == 5_000 and in_set["partial_unexpected_list"][0] == "X99"
    assert in_set["partial_unexpected_rows"][:2] == [3, 7]
    assert rep_a["results"][1]["result"]["unexpected_count"] == 5_000


@pytest.mark.filterwarnings("ignore:.*(condition_parser|row_condition).*:DeprecationWarning")
def test_bundled_distinct_values_match_row_by_row(tmp_path):
    """Several columns judged on their distinct values in shared runs (short ones padded):
    every count, sample, row number and quarantine mask is what a run on every row gives."""
    import pyarrow.parquet as pq

    from validation import runner

    rng = np.random.default_rng(7)
    n = 24_000
    table = pa.table(
        {
            "a": pa.array([None if i % 7 == 0 else i % 3 for i in range(n)], pa.int64()),
            "b": pa.array([f"NSB{i % 50:05d}" if i % 11 else f"x{i % 5}" for i in range(n)]),
            "c": pa.array(np.round(rng.uniform(0, 60, n), 2)),  # ~6,000 values
            "d": pa.array(np.round(rng.uniform(0, 90, n), 2)),  # ~9,000 values
            "e": pa.array(
                [dt.datetime(2026, 3, 2) + dt.timedelta(minutes=i % 300) for i in range(n)],
                pa.timestamp("us"),
            ),
            # NaN is missing for great-expectations as null is; dates keep their sample form
            "f": pa.array(
                [
                    None if i % 13 == 0 else float("nan") if i % 17 == 0 else i % 40
                    for i in range(n)
                ],
                pa.float64(),
            ),
            "g": pa.array([dt.date(2026, 3, 1 + i % 20) for i in range(n)], pa.date32()),
        }
    )
    exps = [
        {"column": "a", "between": [0, 1]},
        {"column": "a", "not_null": True, "mostly": 0.5},
        {"column": "b", "regex": "^NSB\\d{5}$"},
        {"column": "b", "in_set": [f"NSB{i:05d}" for i in range(40)] + ["x1"]},
        {"column": "c", "between": [1, 59]},
        {"column": "d", "between": [0, 85], "mostly": 0.9},
        {"column": "e", "between": ["2026-03-02 00:30:00", "2026-03-02 04:00:00"]},
        {"column": "f", "between": [0, 30], "mostly": 0.8},
        {"column": "g", "between": ["2026-03-03", "2026-03-18"]},
        # a condition on another column: judged on whole rows, never on distinct values
        {
            "gx": "expect_column_values_to_be_in_set",
            "column": "a",
            "value_set": [0],
            "row_condition": 'b=="NSB00001"',
            "condition_parser": "pandas",
        },
    ]
    distinct = {g: len(pc.unique(table.column(c))) for g, c in enumerate("abcdefg")}
    assert runner._bundles(distinct) == [[0, 1, 4, 5, 6], [2, 3]]  # two shared runs, padded
    pq.write_table(table, tmp_path / "t.parquet")
    runs = []
    for ratio in (1.0, 0.0):  # 1.0: distinct values, bundled; 0.0: every row through GX
        runner.DISTINCT_RATIO, saved = ratio, runner.DISTINCT_RATIO
        try:
            v = BatchValidator("t", exps, table.schema, on_invalid="quarantine_rows")
            with v:
                masks = [v.check_batch(b, i * 8_000) for i, b in enumerate(table.to_batches(8_000))]
                report = v.finish([str(tmp_path / "t.parquet")]).to_dict()
        finally:
            runner.DISTINCT_RATIO = saved
        runs.append(([m.to_pylist() for m in masks], report))
    (masks_a, rep_a), (masks_b, rep_b) = runs
    assert masks_a == masks_b
    assert [r["result"] for r in rep_a["results"]] == [r["result"] for r in rep_b["results"]]
    assert [r["success"] for r in rep_a["results"]] == [r["success"] for r in rep_b["results"]]
    assert all(r["result"]["unexpected_count"] for r in rep_a["results"])  # all find some


# -- the validation worker process ------------------------------------------------------------

WORKER_EXPECTATIONS = [
    {"column": "speed", "between": [0, 150]},
    {"column": "speed", "between": [0, 150], "mostly": 0.5},
    {"column": "plate", "regex": "^粤[A-Z]"},
    {"column": "route", "in_set": ["R1", "R2"]},
    {"column": "id", "not_null": True},
    {"column": "ts", "between": ["2024-01-02", "2024-01-05"]},
    {"column": "speed", "type": "integer"},
    {"gx": "expect_column_values_to_not_be_null", "column": "plate"},
    {"gx": "expect_column_mean_to_be_between", "column": "speed", "min_value": 0, "max_value": 50},
    {"column": "id", "unique": True},
    {"row_count": {"between": [1, 10]}},
]


def test_worker_gives_the_same_report(tmp_path):
    """Chunks validated in the worker process give exactly the in-process report."""
    reports = []
    for worker in (False, True):
        (tmp_path / str(worker)).mkdir()
        v, report, masks = _run(
            WORKER_EXPECTATIONS, tmp_path=tmp_path / str(worker), chunk=2, worker=worker
        )
        v.close()
        assert masks == [None, None, None]
        reports.append(report.to_dict())
    assert reports[0] == reports[1]
    assert not reports[1]["success"]


def test_worker_reports_a_bad_gx_expectation():
    from validation import worker as w

    v = BatchValidator(
        "demo", [{"gx": "expect_nothing_at_all", "column": "id"}], SCHEMA, worker=True
    )
    try:
        with pytest.raises(ExpectationConfigError, match="expect_nothing_at_all") as e:
            v.check_batch(_table().to_batches()[0], 0)
            v.finish([])
        assert e.value.index == 0 and e.value.dataset_id == "demo"
    finally:
        v.close()
    assert not [p for p in child_workers() if p not in {x.proc.pid for x in w._idle}]


def test_worker_killed_mid_run_is_a_clean_error():
    """A worker that dies (OOM killer, crash) → ValidationWorkerError, the process is reaped,
    and the next validator gets a fresh worker."""
    import signal

    from validation.worker import ValidationWorkerError

    v = BatchValidator("demo", [GX_BETWEEN], SCHEMA, worker=True)
    pid = v._checks._worker.proc.pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ValidationWorkerError, match="stopped unexpectedly.*SIGKILL") as e:
        for i in range(50):  # the sender notices on its next send
            v.check_batch(_table().to_batches()[0], i * 6)
        v.finish([])
    assert "NSDX_VALIDATION_WORKER=0" in e.value.hint
    v.close()
    assert gone(pid)  # reaped: no zombie
    _, report, _ = _run([GX_BETWEEN], worker=True)
    assert report.results[0].result["unexpected_count"] == 2


def test_interrupted_run_leaves_no_worker_behind():
    """Ctrl-C in the middle (any exception out of the with-block) kills the worker."""
    v = BatchValidator("demo", [GX_BETWEEN], SCHEMA, worker=True)
    pid = v._checks._worker.proc.pid
    with pytest.raises(KeyboardInterrupt), v:
        v.check_batch(_table(), 0)
        raise KeyboardInterrupt
    assert gone(pid)


def test_idle_worker_exits_when_its_parent_goes(tmp_path):
    """A worker whose parent dies without cleaning up (SIGKILL) exits on its own."""
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1])\n"
        "from validation import worker\n"
        "worker.prestart()\n"
        "print(worker._idle[0].proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent.parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30  # it may still be importing great-expectations
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z":
                break  # exited; init reaps it
        except OSError:
            break
        time.sleep(0.2)
    else:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the worker outlived its parent")


def test_precomputed_distinct_counts_give_the_same_results():
    """The worker counts distinct values with Arrow while great-expectations imports; the
    checks then give exactly what they give when they count for themselves."""
    from validation.runner import RowChecks, distinct_counts

    table = pa.concat_tables([_table()] * 50)  # values repeat: the distinct-value path
    runs = []
    for counts in (None, distinct_counts(table)):
        checks = RowChecks("demo", WORKER_EXPECTATIONS, SCHEMA)
        try:
            checks.check_batch(table, 0, counts)
            runs.append({i: r.to_dict() for i, r in checks.results([]).items()})
        finally:
            checks.close()
    assert runs[0] == runs[1]
    assert runs[0][0]["result"]["unexpected_count"] == 100  # 200.0 and -1.0, 50 times each


def test_great_expectations_import_defers_unused_heavy_modules():
    """In the worker, scipy.stats and altair load only when something uses them, and then
    work; SQLAlchemy and boto3 are not loaded at all; validation works the same; all of it
    applies only to great-expectations' own import."""
    import subprocess
    import sys

    code = (
        "import importlib.util, sys; sys.path.insert(0, sys.argv[1])\n"
        "from validation import gx\n"
        "gx.warm(defer_unused=True)\n"
        "lazy = importlib.util._LazyModule\n"
        "assert all(type(sys.modules[m]) is lazy for m in gx.LAZY_MODULES), gx.LAZY_MODULES\n"
        "assert not any(m in sys.modules for m in gx.ABSENT_MODULES), gx.ABSENT_MODULES\n"
        "assert not any(isinstance(f, gx._LeanFinder) for f in sys.meta_path)\n"
        "import scipy.stats\n"
        "assert abs(scipy.stats.norm.cdf(0) - 0.5) < 1e-12\n"
        "assert type(sys.modules['scipy.stats']) is not lazy\n"
        "suite = gx.GxSuite('t', [('expect_column_kl_divergence_to_be_less_than', "
        "{'column': 'x', 'partition_object': {'values': [1, 2], 'weights': [0.5, 0.5]}, "
        "'threshold': 0.1})])\n"
        "import pandas as pd\n"
        "r = suite.validate(pd.DataFrame({'x': [1, 2, 1, 2]}))\n"
        "assert r[0]['exception'] is None and r[0]['success'] is True, r\n"
        "import sqlalchemy, boto3\n"  # after the import: installed packages load as usual
        "assert sqlalchemy.__version__ and boto3.__version__\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent.parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
