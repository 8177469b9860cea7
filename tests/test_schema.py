"""Type names, inference from samples, and checked conversion (ingest.schema)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from ingest.errors import SchemaMismatch
from ingest.schema import (
    ColumnPlan,
    ConversionFailed,
    arrow_type,
    convert,
    infer_strings,
    mismatch,
    missing_columns,
    plan_column,
    type_name,
)
from ingest.spec import TYPES, FieldSpec


def s(*values):
    return pa.array(list(values), pa.string())


@pytest.mark.parametrize(
    "name, expected",
    [
        ("string", pa.string()),
        ("integer", pa.int64()),
        ("int32", pa.int32()),
        ("float", pa.float64()),
        ("boolean", pa.bool_()),
        ("timestamp", pa.timestamp("us")),
        ("timestamptz", pa.timestamp("us", tz="UTC")),
        ("date", pa.date32()),
        ("time", pa.time64("us")),
        ("geometry", pa.string()),
        ("decimal(10,2)", pa.decimal128(10, 2)),
        ("decimal( 5 , 0 )", pa.decimal128(5, 0)),
    ],
)
def test_arrow_type(name, expected):
    assert arrow_type(name) == expected


def test_every_spec_type_has_an_arrow_type():
    for name in TYPES:
        arrow_type(name)
    assert type_name(arrow_type("decimal(10,2)")) == "decimal(10,2)"
    assert type_name(pa.timestamp("us", tz="UTC")) == "timestamptz"
    with pytest.raises(ValueError):
        arrow_type("varchar")


@pytest.mark.parametrize(
    "values, expected",
    [
        (("1", "-2", "30"), pa.int64()),
        (("00123", "00456"), pa.string()),  # leading zeros: codes
        (("1", "0123"), pa.string()),
        (("1234567890123456",), pa.string()),  # > 15 digits
        (("13800138000", "13900139000"), pa.string()),  # phone numbers: same length >= 11
        (("91440101MA5CXXXX1X", "914401011234567890"), pa.string()),  # credit codes
        (("1.5", "2", "0.00"), pa.float64()),
        (("1e-3", "2.5E4"), pa.float64()),
        (("true", "FALSE", "True"), pa.bool_()),
        (("yes", "no"), pa.string()),  # conservative
        (("0", "1"), pa.int64()),
        (("2020-03-01", "2020-03-02"), pa.date32()),
        (("2025-03-14T01:20:00", "2025-03-14 01:20:00", "2025-03-14 01:20"), pa.timestamp("us")),
        (("2025-03-14T01:20:00Z", "2025-03-14T01:20:00+08:00"), pa.timestamp("us", tz="UTC")),
        (("3/14/2025 1:20", "3/14/2025 13:59"), pa.timestamp("us")),
        (("10/02/2012 01:00:00 PM", "10/03/2012 11:00:00 AM"), pa.timestamp("us")),
        (("2025年3月14日", "2025年3月15日"), pa.date32()),
        (("2025/03/14 08:00:00",), pa.timestamp("us")),
        (("abc", "1"), pa.string()),
        ((None, None), pa.string()),
    ],
)
def test_infer(values, expected):
    assert infer_strings(s(*values)).type == expected


def test_code_column_names_keep_strings():
    assert infer_strings(s("510000", "511400"), name="postcode").type == pa.string()
    assert infer_strings(s("12345", "2345"), name="联系电话").type == pa.string()
    assert infer_strings(s("12345", "2345"), name="count").type == pa.int64()


def test_day_first_and_month_first():
    ambiguous = s("01/02/2012", "03/04/2012")
    assert infer_strings(ambiguous).formats == ("%m/%d/%Y",)  # month-first by default
    assert infer_strings(ambiguous, day_first=True).formats == ("%d/%m/%Y",)
    # 13/01 only reads day-first, whatever the preference
    assert infer_strings(s("01/01/2012", "13/01/2012")).formats == ("%d/%m/%Y",)
    # declared formats come first
    inf = infer_strings(s("14.03.2025"), date_formats=("%d.%m.%Y",))
    assert (inf.type, inf.formats) == (pa.date32(), ("%d.%m.%Y",))


def test_several_formats_in_one_column():
    inf = infer_strings(s("3/14/2025 1:20", "3/14/2025 1:20:33"))
    assert inf.formats == ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S")
    plan = ColumnPlan("t", inf.type, pa.string(), inf.formats)
    out = convert(s("3/14/2025 1:20", "3/14/2025 1:20:33", None), plan)
    assert out.to_pylist() == [
        dt.datetime(2025, 3, 14, 1, 20),
        dt.datetime(2025, 3, 14, 1, 20, 33),
        None,
    ]


def test_thousands():
    assert infer_strings(s("1,234", "12"), thousands=",").type == pa.int64()
    assert infer_strings(s("1.234,5", "2,25"), thousands=".").type == pa.float64()
    plan = plan_column("n", s("1,234"), None, thousands=",")
    assert plan.read_type == pa.string() and plan.type == pa.int64()
    assert convert(s("1,234", "12,345,678"), plan).to_pylist() == [1234, 12345678]


def test_declared_plan_with_format_and_inference():
    plan = plan_column("d", s("14/03/2025"), FieldSpec("d", "date", format="%d/%m/%Y"))
    assert (plan.type, plan.read_type, plan.formats, plan.origin) == (
        pa.date32(),
        pa.string(),
        ("%d/%m/%Y",),
        "declared",
    )
    plan = plan_column("t", s("3/14/2025 1:20"), FieldSpec("t", "timestamptz"))
    assert plan.type == pa.timestamp("us", tz="UTC") and plan.formats == ("%m/%d/%Y %H:%M",)
    out = convert(s("3/14/2025 1:20"), plan)
    assert out.to_pylist() == [dt.datetime(2025, 3, 14, 1, 20, tzinfo=dt.UTC)]


def test_convert_reports_rows_and_values():
    plan = ColumnPlan("n", pa.int64(), pa.string())
    with pytest.raises(ConversionFailed) as e:
        convert(s("1", "x", "2", "y", "x"), plan)
    assert e.value.rows == [1, 3, 4] and e.value.values == ["x", "y"]
    b = ColumnPlan("b", pa.bool_(), pa.string())
    assert convert(s("yes", "N", None), b).to_pylist() == [True, False, None]
    with pytest.raises(ConversionFailed):
        convert(s("maybe"), b)


def test_mismatch_message_word_for_word():
    plan = ColumnPlan("count", pa.int64(), pa.int64(), origin="inferred", sample_rows=5000)
    err = mismatch(plan, ["N/A", "-"], file="data/x.csv", line=9002)
    assert isinstance(err, SchemaMismatch)
    assert str(err) == (
        "data/x.csv:9002 column 'count': value 'N/A' is not a valid integer (inferred type); "
        "bad values: 'N/A', '-'\n"
        "  hint: column 'count' was inferred as integer from the first 5000 rows; declare "
        "`type: string` for it in datasets.yaml's schema, or add 'N/A' to source.null_values"
    )
    assert err.to_dict()["values"] == ["N/A", "-"] and err.line == 9002


def test_missing_columns():
    err = missing_columns([FieldSpec("z", "integer")], ["x", "y"], file="f.csv")
    assert str(err) == (
        "f.csv column 'z': declared column 'z' not found; the file has: 'x', 'y'\n"
        "  hint: fix the column name in datasets.yaml's schema (names are matched exactly, "
        "after stripping spaces and BOM)"
    )
    assert missing_columns([FieldSpec("x")], ["x"], file="f.csv") is None
