"""Row-level value checks judged with Arrow give great-expectations' own results, word for word.

:mod:`validation.native` replaces great-expectations (and its ~2 s import) for the simple value
checks of the shorthand; these tests run the same batches through both and compare the reports.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from validation import worker as validation_worker
from validation.native import NativeChecks, supported
from validation.runner import BatchValidator, RowChecks
from validation.shorthand import parse_expectations

BATCH = pa.table(
    {
        "vehicle_id": ["NSB00001", "NSB00002", "XX1", None, "NSB0000３", "NSB00006"] * 50,
        "speed": [10.0, 200.0, -1.0, None, math.nan, 80.0] * 50,
        "heading": [0, 359, 400, None, 12, 7] * 50,
        "route": ["南沙1路", "南沙2路", "other", None, "南沙1路", ""] * 50,
    }
)
EXPECTATIONS = [
    {"column": "vehicle_id", "not_null": True},
    {"column": "speed", "not_null": True, "mostly": 0.5},
    {"column": "speed", "between": [0, 150]},
    {"column": "speed", "between": [0, 80], "strict": True, "mostly": 0.4},
    {"column": "heading", "between": [0, 359]},
    {"column": "heading", "between": [None, 100]},
    {"column": "route", "in_set": ["南沙1路", "南沙2路"]},
    {"column": "vehicle_id", "regex": r"^NSB[0-9]{5}$"},
    {"column": "vehicle_id", "length": [3, 7]},
    {"column": "route", "length": 4},
]


def _results(checks, batches) -> dict:
    offset = 0
    for b in batches:
        checks.check_batch(b, offset)
        offset += b.num_rows
    out = checks.finish([])()
    return {i: r.to_dict() for i, r in out.items()}


def test_native_results_equal_great_expectations():
    parsed = parse_expectations(EXPECTATIONS, BATCH.schema)
    assert all(supported(e, BATCH.schema) for e in parsed)
    batches = [BATCH.slice(0, 100), BATCH.slice(100, 200)]
    native = _results(NativeChecks(parsed), batches)
    gx = RowChecks("d", EXPECTATIONS, BATCH.schema)
    try:
        expected = _results(gx, batches)
    finally:
        gx.close()
    assert native.keys() == expected.keys()
    for i in native:
        n, g = native[i], expected[i]
        assert n["success"] == g["success"], EXPECTATIONS[i]
        for k in ("element_count", "unexpected_count", "missing_count"):
            assert n["result"].get(k) == g["result"].get(k), (EXPECTATIONS[i], k)
        assert n["result"]["unexpected_percent"] == pytest.approx(g["result"]["unexpected_percent"])
        assert n["result"]["partial_unexpected_rows"] == g["result"]["partial_unexpected_rows"]
        assert n["result"]["partial_unexpected_list"] == g["result"]["partial_unexpected_list"]


def test_quarantine_mask_and_reasons_natively():
    exps = [{"column": "heading", "between": [0, 359]}, {"column": "route", "not_null": True}]
    v = BatchValidator("d", exps, BATCH.schema, on_invalid="quarantine_rows")
    batch = BATCH.slice(0, 6)
    mask = v.check_batch(batch, 0)
    assert mask.to_pylist() == [True, True, False, False, True, True]
    assert v.quarantine_reason(batch).to_pylist() == [
        None,
        None,
        "heading between [0, 359]",
        "route not_null",
        None,
        None,
    ]
    v.close()


def test_what_arrow_cannot_judge_goes_to_great_expectations():
    schema = pa.schema([("t", pa.timestamp("us")), ("s", pa.string()), ("n", pa.int64())])
    [between_time, lookahead, in_numbers, typed] = parse_expectations(
        [
            {"column": "t", "between": ["2024-01-01", None]},
            {"column": "s", "regex": "^a(?=b)"},
            {"column": "n", "in_set": [1, 2]},
            {"column": "n", "type": "integer"},
        ],
        schema,
    )
    for e in (between_time, lookahead, in_numbers, typed):
        assert not supported(e, schema)


def test_no_validation_worker_when_arrow_judges_everything():
    assert not validation_worker.may_be_wanted(EXPECTATIONS, "fail")
    assert not validation_worker.may_be_wanted([{"columns": ["a"], "unique": True}], "fail")
    assert validation_worker.may_be_wanted([{"column": "t", "between": ["2024", None]}], "fail")
    assert validation_worker.may_be_wanted(
        [{"gx": "expect_column_to_exist", "column": "a"}], "warn"
    )
