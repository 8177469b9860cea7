"""Real exports are messy: each trait of issue 18 in a small fixture, and the real files.

CR-only line endings, title rows, padded thousands (" 1,137 "), full-width digits and comma,
accounting dashes for zero, parentheses for negatives, declared currency and percent signs,
blank rows anywhere, empty unnamed columns, the header repeated inside the data - each is read,
and listed in the validation report as a repair; a number that cannot be read is an error
naming file, line and column, and nothing is published.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.errors import ConfigError, SchemaMismatch
from ingest.numbers import NumberStyle, clean_numbers, infer_style
from ingest.pipeline import run_pipeline
from ingest.readers import open_source
from ingest.spec import FieldSpec, SourceSpec, parse_specs
from ingest.storage.local import LocalStore

REAL = Path(__file__).resolve().parent.parent / "data" / "real"
KEY = b"k"

# A TLC-style export: CR-only endings, title rows, an empty leading column, quoted padded
# thousands, accounting zeros, a blank row inside and one at the end, the header repeated.
TLC = (
    "NYC Taxi & Limousine Commission,,,,\r"
    "Monthly trips by base,,,,\r"
    ",,,,\r"
    "Report generated 2024-05-01,,,,\r"
    ",Month,Trips,Fare,Vehicles\r"
    ',2024-01," 1,137 ",$12.50," -   "\r'
    ',2024-02," 23,456 ","($3.00)"," 12 "\r'
    ",,,,\r"
    ",Month,Trips,Fare,Vehicles\r"
    ',2024-03,"１，２３４",$1.00," 7 "\r'
    ",,,,\r"
)


def read(path: Path, **opts) -> tuple:
    [t] = open_source(SourceSpec(path=str(path), format="csv", **opts))
    table = pa.Table.from_batches(list(t.batches), schema=t.schema)
    return t, table


def publish(tmp_path: Path, csv: Path, source_extra: str = "", more: str = ""):
    (spec,) = parse_specs(
        f"""datasets:
  - id: trips
    title: trips
    domain: transport
    organization: tlc
    source: {{path: {csv.name}, format: csv{source_extra}}}
{more}""",
        base_dir=csv.parent,
    )
    store = LocalStore(tmp_path / "objects")
    result = run_pipeline(spec, store, previous=None, pii_key=KEY, reports_dir=tmp_path / "reports")
    return store, result


def report_of(tmp_path: Path) -> dict:
    [path] = sorted((tmp_path / "reports" / "trips").glob("*.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def published(tmp_path: Path, result) -> pa.Table:
    files = sorted((tmp_path / "objects" / result.prefix / "data").rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def test_tlc_style_export_is_read_and_every_repair_reported(tmp_path):
    csv = tmp_path / "tlc.csv"
    csv.write_bytes(TLC.encode("utf-8"))
    _store, result = publish(tmp_path, csv, ', currency: "$"')
    table = published(tmp_path, result)
    assert table.column_names == ["Month", "Trips", "Fare", "Vehicles"]  # column_1 dropped
    assert table.schema.field("Trips").type == pa.int64()
    assert table.schema.field("Vehicles").type == pa.int64()
    assert table.to_pylist() == [
        {"Month": "2024-01", "Trips": 1137, "Fare": 12.5, "Vehicles": 0},
        {"Month": "2024-02", "Trips": 23456, "Fare": -3.0, "Vehicles": 12},
        {"Month": "2024-03", "Trips": 1234, "Fare": 1.0, "Vehicles": 7},
    ]
    assert result.row_count == 3
    repairs = {r["kind"]: r for r in report_of(tmp_path)["meta"]["repairs"]}
    assert repairs["line_endings"]["message"].startswith("lines end in CR only")
    assert repairs["title_rows"]["rows"] == [
        "NYC Taxi & Limousine Commission",
        "Monthly trips by base",
        "Report generated 2024-05-01",
    ]
    assert repairs["blank_rows"]["count"] == 3  # one above the header, two in the data
    assert repairs["repeated_header"]["count"] == 1
    assert repairs["empty_column"]["message"] == (
        "column 'column_1' has no name and no value in any row: dropped"
    )
    numbers = {
        r["column"]: r["counts"] for r in report_of(tmp_path)["meta"]["repairs"] if "counts" in r
    }
    assert numbers["Trips"] == {"full_width": 1, "spaces": 2, "thousands": 3}
    assert numbers["Fare"] == {"currency": 3, "parentheses": 1}
    assert numbers["Vehicles"] == {"spaces": 3, "dash_zero": 1}
    # the catalogue's summary and the HTML page carry the same words
    assert any("accounting dash read as 0" in m for m in result.validation["repairs"])
    [html] = sorted((tmp_path / "reports" / "trips").glob("*.html"))
    assert "Repairs made to read the source" in html.read_text(encoding="utf-8")


def test_unparseable_number_names_file_line_and_column_and_publishes_nothing(tmp_path):
    rows = ["id,count"] + [f'{i}," {1000 + i:,} "' for i in range(6000)]
    rows[5500] = "5499,n/a"  # after the inference sample
    csv = tmp_path / "counts.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(SchemaMismatch) as e:
        publish(tmp_path, csv)
    assert e.value.file.endswith("counts.csv")
    assert (e.value.line, e.value.column) == (5501, "count")
    assert "'n/a' is not a valid integer" in str(e.value)
    assert not list((tmp_path / "objects").rglob("manifest.json"))


def test_declared_thousands_currency_percent(tmp_path):
    csv = tmp_path / "fares.csv"
    csv.write_text(
        "route;fare;share\nA;¥1.234,50;12,5%\nB;(¥2.000);7 %\nC; - ;100%\n", encoding="utf-8"
    )
    t, table = read(csv, thousands=".", currency=("¥",), percent=True)
    assert table.column("fare").to_pylist() == [1234.5, -2000.0, 0.0]
    assert table.column("share").to_pylist() == [12.5, 7.0, 100.0]
    reported = t.repairs.numbers
    assert reported["fare"]["currency"] == 2 and reported["fare"]["dash_zero"] == 1
    assert reported["share"]["percent"] == 3


def test_declared_type_reads_numbers_written_for_people(tmp_path):
    csv = tmp_path / "n.csv"
    csv.write_text('k,v\na," 1,137 "\nb," -   "\nc,(12)\n', encoding="utf-8")
    [t] = open_source(
        SourceSpec(path=str(csv), format="csv"),
        fields=(FieldSpec("v", "float"),),
    )
    table = pa.Table.from_batches(list(t.batches), schema=t.schema)
    assert table.column("v").to_pylist() == [1137.0, 0.0, -12.0]


def test_number_rule_does_not_take_codes_or_decimal_commas():
    assert infer_style(pa.array(["1,5", "2,25"]), None) is None  # not grouped by three
    assert infer_style(pa.array(["12", "13"]), None) is None  # plain: parsed natively
    assert infer_style(pa.array([" 12 ", "13"]), None) == NumberStyle()
    assert infer_style(pa.array(["1,137", "(2,000)"]), None) == NumberStyle(thousands=",")
    assert infer_style(pa.array(["Bob", " 12 "]), None) is None


def test_full_width_digits_and_comma():
    cleaned, done = clean_numbers(pa.array(["１２３", "４，５６７", "－８"]), NumberStyle(","))
    assert cleaned.to_pylist() == ["123", "4567", "-8"]
    assert done.counts["full_width"] == 3


def test_text_columns_are_left_alone(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("name,code\n - ,00123\n(note),00456\n", encoding="utf-8")
    _t, table = read(csv)
    assert table.column("name").to_pylist() == [" - ", "(note)"]
    assert table.column("code").to_pylist() == ["00123", "00456"]


def test_repeated_header_in_a_typed_file_names_its_line(tmp_path):
    csv = tmp_path / "pages.csv"
    csv.write_text(
        "station,entries\n蕉门,10\n金洲,20\nstation,entries\n南沙,30\nstation,entries\n",
        encoding="utf-8",
    )
    t, table = read(csv)
    assert table.column("entries").to_pylist() == [10, 20, 30]
    assert t.repairs.header_rows == 2
    assert t.repairs.header_lines == [4, 6]


def test_single_column_file_has_no_title_rows(tmp_path):
    csv = tmp_path / "one.csv"
    csv.write_text("name\nalpha\nbeta\n", encoding="utf-8")
    t, table = read(csv)
    assert table.column_names == ["name"] and table.num_rows == 2
    assert t.repairs.title_rows == []


def test_named_empty_column_is_kept(tmp_path):
    csv = tmp_path / "k.csv"
    csv.write_text("a,remark,\n1,,\n2,,\n", encoding="utf-8")
    _store, result = publish(tmp_path, csv)
    table = published(tmp_path, result)
    assert table.column_names == ["a", "remark"]  # named: kept though empty


def test_unnamed_column_with_a_value_is_kept(tmp_path):
    csv = tmp_path / "k.csv"
    csv.write_text("a,\n1,\n2,x\n", encoding="utf-8")
    _store, result = publish(tmp_path, csv)
    assert published(tmp_path, result).column_names == ["a", "column_2"]


def test_hk_trailing_blank_rows_are_not_published(tmp_path):
    """The real MTR file ends in three rows of commas: 273 records, 270 stations."""
    src = REAL / "hk_mtr" / "mtr_lines_and_stations.csv"
    csv = tmp_path / "mtr.csv"
    csv.write_bytes(src.read_bytes())
    _store, result = publish(tmp_path, csv)
    assert result.row_count == 270
    assert result.validation["score"] == 100.0
    assert result.validation["repairs"] == [
        "3 blank rows (no value in any column) skipped: not published"
    ]


def test_bad_source_options_name_their_line(tmp_path):
    with pytest.raises(ConfigError, match="thousands: '#'"):
        parse_specs(
            "datasets:\n  - {id: ab, title: t, domain: d, organization: oo,\n"
            "     source: {path: a.csv, format: csv, thousands: '#'}}\n"
        )
    with pytest.raises(ConfigError, match="currency"):
        parse_specs(
            "datasets:\n  - {id: ab, title: t, domain: d, organization: oo,\n"
            "     source: {path: a.csv, format: csv, currency: 'dollars'}}\n"
        )
