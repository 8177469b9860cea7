"""Source readers on the real files in data/real (see SOURCES.md there) and on generated ones."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import SchemaMismatch, SourceError
from ingest.readers import READERS, SourceTable, open_source, register_reader, source_files
from ingest.schema import type_name
from ingest.spec import FieldSpec, SourceSpec

REAL = Path(__file__).resolve().parent.parent / "data" / "real"


def read(path, fmt="csv", fields=(), batch_rows=256_000, **opts) -> tuple[SourceTable, pa.Table]:
    [t] = open_source(
        SourceSpec(path=str(path), format=fmt, **opts), tuple(fields), batch_rows=batch_rows
    )
    batches = list(t.batches)
    for b in batches:
        assert b.schema == t.schema
    return t, pa.Table.from_batches(batches, schema=t.schema)


def write(tmp_path, name, text, encoding="utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return p


# ---------------------------------------------------------------------------------------------
# real files


def test_nyc_311():
    t, table = read(REAL / "nyc_311_animals/311_Animals_short.csv")
    assert table.shape == (4969, 31)
    assert t.encoding == "utf-8"
    created = table.column("Created Date")
    assert created.type == pa.timestamp("us")
    assert created[0].as_py() == dt.datetime(2025, 3, 14, 1, 20)
    assert table.column("Resolution Action Updated Date").type == pa.timestamp("us")
    assert table.column("Unique Key").type == pa.int64()
    assert table.column("Latitude").type == pa.float64()
    assert table.column("Incident Zip").type == pa.string()  # a code, by its name
    assert table.column("Location")[0].as_py().startswith("POINT (")


def test_mtr_barrier_free_bom_and_embedded_newlines():
    t, table = read(REAL / "hk_mtr/barrier_free_facilities.csv")
    assert t.encoding == "utf-8-sig"
    assert table.shape == (3564, 6)
    assert table.column_names[0] == "Station_No"  # BOM stripped
    zh = table.column("AJTextZh").to_pylist()
    assert "B2 出口" in zh
    multiline = [
        v for c in ("AJTextEn", "AJTextZh") for v in table.column(c).to_pylist() if v and "\n" in v
    ]
    assert len(multiline) == 8


def test_mtr_lines_and_stations():
    t, table = read(REAL / "hk_mtr/mtr_lines_and_stations.csv")
    assert table.shape == (273, 7)
    assert "機場" in table.column("Chinese Name").to_pylist()
    assert table.column("Station ID").type == pa.int64()


def test_mtr_fares():
    t, table = read(REAL / "hk_mtr/mtr_lines_fares.csv")
    assert table.shape == (9216, 13)
    assert table.column("OCT_ADT_FARE").type == pa.float64()
    assert table.column("OCT_ADT_FARE")[1].as_py() == 4.9


def test_montreal_latin1_semicolon_day_first_ragged():
    t, table = read(REAL / "montreal_bikes_latin1/bikes.csv")
    assert t.encoding == "latin-1"
    assert table.shape == (310, 10)
    assert "Côte-Sainte-Catherine" in table.column_names
    assert "Brébeuf (données non disponibles)" in table.column_names
    date = table.column("Date")
    assert date.type == pa.date32()  # day-first dates, no time part
    assert date[0].as_py() == dt.date(2012, 1, 1)
    assert date[298].as_py() == dt.date(2012, 10, 25)
    assert table.column("Berri 1")[0].as_py() == 35
    # the short rows at the end were padded with nulls
    assert table.column("St-Urbain (données non disponibles)")[-1].as_py() is None
    assert table.column("Rachel1")[-1].as_py() == 2430


def test_cairns_gtfs():
    tables = {
        t.name: t
        for t in open_source(
            SourceSpec(path=str(REAL / "gtfs_cairns/cairns_gtfs.zip"), format="gtfs")
        )
    }
    assert set(tables) == {
        "agency",
        "calendar",
        "calendar_dates",
        "routes",
        "shapes",
        "stop_times",
        "stops",
        "trips",
    }
    read_all = {
        name: pa.Table.from_batches(list(t.batches), schema=t.schema) for name, t in tables.items()
    }
    counts = {name: t.num_rows for name, t in read_all.items()}
    assert counts["stop_times"] == 37_790
    assert counts["stops"] == 416
    assert counts["routes"] == 22
    assert counts["trips"] == 1_339
    assert counts["shapes"] == 22_784
    st_ = read_all["stop_times"]
    assert st_.schema.field("arrival_time").type == pa.string()
    assert "24:02:00" in st_.column("arrival_time").to_pylist()
    for name, col in [
        ("stop_times", "stop_id"),
        ("stops", "stop_id"),
        ("trips", "shape_id"),
        ("routes", "route_id"),
        ("shapes", "shape_id"),
    ]:
        assert read_all[name].schema.field(col).type == pa.string(), (name, col)
    assert read_all["trips"].schema.field("direction_id").type == pa.int64()
    cal = read_all["calendar"]
    assert cal.schema.field("start_date").type == pa.date32()
    assert cal.column("start_date")[0].as_py() == dt.date(2014, 5, 26)
    assert read_all["calendar_dates"].schema.field("date").type == pa.date32()
    stops = read_all["stops"]
    assert stops.column("parent_station").null_count == 416  # the empty last column
    assert stops.schema.field("stop_lat").type == pa.float64()
    assert tables["stops"].files == [f"{REAL / 'gtfs_cairns/cairns_gtfs.zip'}!stops.txt"]


def test_gtfs_tables_option_and_qualified_fields():
    src = SourceSpec(
        path=str(REAL / "gtfs_cairns/cairns_gtfs.zip"), format="gtfs", tables=("stops",)
    )
    [t] = open_source(src, (FieldSpec("stops.location_type", "int32"),))
    assert t.name == "stops" and t.schema.field("location_type").type == pa.int32()
    with pytest.raises(SourceError, match="not in the feed"):
        open_source(SourceSpec(path=src.path, format="gtfs", tables=("nope",)))


# ---------------------------------------------------------------------------------------------
# generated CSV


def test_gb18030_chinese(tmp_path):
    p = write(
        tmp_path,
        "gb.csv",
        "站点,名称,数量\n南沙站,广州市南沙区黄阁镇,1\n蕉门,南沙区政府,2\n",
        "gb18030",
    )
    t, table = read(p)
    assert t.encoding == "gb18030"
    assert table.column("名称").to_pylist() == ["广州市南沙区黄阁镇", "南沙区政府"]
    assert table.column("数量").type == pa.int64()


def test_utf8_bom_crlf_and_header_cleanup(tmp_path):
    p = write(tmp_path, "bom.csv", "\ufeff id ,,id,名称\r\n1,2,3,南沙\r\n4,5,6,黄阁\r\n")
    t, table = read(p)
    assert t.encoding == "utf-8-sig"
    assert table.column_names == ["id", "column_2", "id_2", "名称"]
    assert table.column("名称").to_pylist() == ["南沙", "黄阁"]


@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiter_sniffing(tmp_path, delim):
    rows = [["a", "b", "c"], ["1", "x, y", "2.5"], ["2", "z", "3.5"]]
    p = write(
        tmp_path,
        "d.csv",
        "\n".join(delim.join(f'"{v}"' if "," in v else v for v in r) for r in rows) + "\n",
    )
    _, table = read(p)
    assert table.column_names == ["a", "b", "c"]
    assert table.column("b").to_pylist() == ["x, y", "z"]


def test_options_skip_rows_nulls_thousands(tmp_path):
    p = write(
        tmp_path,
        "o.csv",
        "report of 2025\ngenerated today\nname;amount;n\nA;1.234.567,5;-\nB;12,25;3\n",
    )
    _, table = read(p, skip_rows=2, thousands=".", null_values=("-",), delimiter=";")
    assert table.column("amount").to_pylist() == [1234567.5, 12.25]
    assert table.column("n").to_pylist() == [None, 3]
    assert table.column("n").type == pa.int64()


def test_empty_fields_are_null_everywhere(tmp_path):
    p = write(tmp_path, "e.csv", "a,b,c\n1,,x\n,2,\n")
    _, table = read(p)
    assert table.to_pylist() == [{"a": 1, "b": None, "c": "x"}, {"a": None, "b": 2, "c": None}]


def test_declared_types(tmp_path):
    p = write(
        tmp_path,
        "t.csv",
        "id,price,when,day,at,ok,shape,code\n"
        "007,1.25,3/14/2025 1:20,14.03.2025,12:30:00,yes,POINT (1 2),42\n"
        "008,2.50,3/15/2025 13:20,15.03.2025,08:00:00,no,POINT (3 4),43\n",
    )
    fields = [
        FieldSpec("id", "string"),
        FieldSpec("price", "decimal(10,2)"),
        FieldSpec("when", "timestamptz"),
        FieldSpec("day", "date", format="%d.%m.%Y"),
        FieldSpec("at", "time"),
        FieldSpec("ok", "boolean"),
        FieldSpec("shape", "geometry"),
        FieldSpec("code", "int32"),
    ]
    t, table = read(p, fields=fields)
    assert [type_name(f.type) for f in t.schema] == [
        "string",
        "decimal(10,2)",
        "timestamptz",
        "date",
        "time",
        "boolean",
        "string",
        "int32",
    ]
    row = table.to_pylist()[1]
    assert row["id"] == "008" and str(row["price"]) == "2.50"
    assert row["when"] == dt.datetime(2025, 3, 15, 13, 20, tzinfo=dt.UTC)
    assert row["day"] == dt.date(2025, 3, 15) and row["at"] == dt.time(8, 0) and row["ok"] is False


def test_declared_column_missing(tmp_path):
    p = write(tmp_path, "m.csv", "x,y\n1,2\n")
    with pytest.raises(
        SchemaMismatch, match=r"declared column 'z' not found; the file has: 'x', 'y'"
    ):
        open_source(SourceSpec(path=str(p), format="csv"), (FieldSpec("z", "integer"),))


def test_schema_mismatch_message_word_for_word(tmp_path):
    p = write(tmp_path, "bad.csv", 'id,count,note\n1,5,"two\nlines"\n2,N/A,x\n3,7,y\n4,lots,z\n')
    t = open_source(SourceSpec(path=str(p), format="csv"), (FieldSpec("count", "integer"),))[0]
    with pytest.raises(SchemaMismatch) as e:
        list(t.batches)
    assert str(e.value) == (
        f"{p}:4 column 'count': value 'N/A' is not a valid integer (declared type); "
        "bad values: 'N/A', 'lots'\n"
        "  hint: fix the file or change `type:` of column 'count' in datasets.yaml"
    )
    assert (e.value.file, e.value.line, e.value.column, e.value.values) == (
        str(p),
        4,
        "count",
        ["N/A", "lots"],
    )


def test_inferred_type_broken_after_the_sample(tmp_path):
    lines = ["id,count"] + [f"{i},{i}" for i in range(9000)] + ["9000,N/A", "9001,-"]
    p = write(tmp_path, "late.csv", "\n".join(lines) + "\n")
    t = open_source(SourceSpec(path=str(p), format="csv"), batch_rows=1000)[0]
    assert t.schema.field("count").type == pa.int64()
    with pytest.raises(SchemaMismatch) as e:
        list(t.batches)
    assert e.value.line == 9002 and e.value.column == "count" and e.value.values[:2] == ["N/A", "-"]
    assert "declare `type: string`" in e.value.hint and "source.null_values" in e.value.hint


def test_custom_format_error_line(tmp_path):
    lines = ["when"] + ["3/14/2025 1:20"] * 6000 + ["yesterday"]
    p = write(tmp_path, "f.csv", "\n".join(lines) + "\n")
    t = open_source(SourceSpec(path=str(p), format="csv"), batch_rows=1000)[0]
    with pytest.raises(SchemaMismatch) as e:
        list(t.batches)
    assert e.value.line == 6002 and e.value.values == ["yesterday"]
    assert "format %m/%d/%Y %H:%M" in e.value.message


def test_ragged_rows_after_the_sample_are_padded(tmp_path):
    lines = ["a;b;c"] + [f"{i};{i};{i}" for i in range(8000)] + ["8000;8000", "8001;8001;8001"]
    p = write(tmp_path, "r.csv", "\r\n".join(lines) + "\r\n")
    t, table = read(p, batch_rows=1000)
    assert table.num_rows == 8002
    assert table.column("a").to_pylist() == list(range(8002))
    assert table.column("c").to_pylist()[-3:] == [7999, None, 8001]


def test_row_longer_than_header(tmp_path):
    p = write(tmp_path, "long.csv", "a,b\n1,2\n3,4,5\n")
    t = open_source(SourceSpec(path=str(p), format="csv"))[0]
    with pytest.raises(SourceError) as e:
        list(t.batches)
    assert e.value.line == 3 and "row has 3 fields but the header has 2" in str(e.value)


def test_decode_error_found_while_streaming(tmp_path):
    p = write(tmp_path, "late.csv", b"a,b\n" + b"1,x\n" * 400_000 + b"2,\xe9t\xe9\n")
    t = open_source(SourceSpec(path=str(p), format="csv", encoding="utf-8"), batch_rows=50_000)[0]
    with pytest.raises(SourceError) as e:
        list(t.batches)
    assert e.value.line == 400_002
    assert f"at byte offset {4 + 4 * 400_000 + 2} as utf-8" in e.value.message


def test_streaming_many_small_batches(tmp_path):
    p = tmp_path / "big.csv"
    with open(p, "w") as f:
        f.write("id,name,value,when\n")
        for i in range(200_000):
            f.write(f'{i},"name {i}\nsecond line",{i * 0.5},2025-03-14 01:{i % 60:02d}:00\n')
    [t] = open_source(SourceSpec(path=str(p), format="csv"), batch_rows=5_000)
    sizes = [b.num_rows for b in t.batches]
    assert sum(sizes) == 200_000
    assert len(sizes) >= 20 and max(sizes) <= 20_000  # bounded by batch_rows, not the file


def test_glob_concatenates_files(tmp_path):
    write(tmp_path, "part1.csv", "a,b\n1,x\n")
    write(tmp_path, "part2.csv", "b,a\ny,2\n")  # same columns, other order
    t, table = read(tmp_path / "part*.csv")
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert len(t.files) == 2
    write(tmp_path, "part3.csv", "a,c\n3,z\n")
    with pytest.raises(SourceError, match="part3.csv: columns differ from the first file"):
        open_source(SourceSpec(path=str(tmp_path / "part*.csv"), format="csv"))


def test_missing_file_and_remote(tmp_path):
    with pytest.raises(SourceError, match="file not found") as e:
        source_files(SourceSpec(path="nope/*.csv", format="csv", base_dir=tmp_path))
    assert "check source.path in datasets.yaml" in e.value.hint
    with pytest.raises(SourceError, match="downloaded by the pipeline"):
        open_source(SourceSpec(path="https://example.org/x.csv", format="csv"))


def test_register_reader(tmp_path):
    p = write(tmp_path, "x.demo", "")

    def demo(source, files, fields, batch_rows):
        schema = pa.schema([("n", pa.int64())])
        return [
            SourceTable(
                None, schema, iter([pa.record_batch([[1]], schema=schema)]), [str(files[0])]
            )
        ]

    register_reader("demo", demo)
    try:
        [t] = open_source(SourceSpec(path=str(p), format="demo"))
        assert [b.num_rows for b in t.batches] == [1]
    finally:
        READERS.pop("demo")


# ---------------------------------------------------------------------------------------------
# JSON, NDJSON, xlsx, parquet


def test_ndjson(tmp_path):
    rows = [
        {
            "id": i,
            "at": f"2025-03-14T01:{i % 60:02d}:00",
            "pos": {"lat": 22.8, "lon": 113.5},
            "tags": ["a"],
        }
        for i in range(3000)
    ]
    p = write(tmp_path, "x.ndjson", "\n".join(json.dumps(r) for r in rows) + "\n")
    t, table = read(p, "ndjson", batch_rows=500)
    assert table.num_rows == 3000
    assert t.schema.field("at").type == pa.timestamp("us")
    assert pa.types.is_struct(t.schema.field("pos").type)
    assert table.column("pos")[0].as_py() == {"lat": 22.8, "lon": 113.5}


def test_ndjson_type_change_names_the_line(tmp_path):
    lines = [json.dumps({"a": i}) for i in range(6000)] + [json.dumps({"a": "x"})]
    p = write(tmp_path, "x.ndjson", "\n".join(lines) + "\n")
    t = open_source(SourceSpec(path=str(p), format="ndjson"), batch_rows=1000)[0]
    with pytest.raises(SchemaMismatch) as e:
        list(t.batches)
    assert e.value.line == 6001 and e.value.column == "a" and e.value.values == ["x"]


@pytest.mark.parametrize("wrap", [False, True])
def test_json_array_streamed(tmp_path, wrap):
    rows = [
        {"id": i, "name": f"站{i}", "day": "2020-03-01", "obj": {"k": [i]}} for i in range(2500)
    ]
    doc = {"total": 2500, "data": rows} if wrap else rows
    p = write(tmp_path, "x.json", json.dumps(doc, ensure_ascii=False, indent=1))
    t, table = read(p, "json", batch_rows=1000)
    assert table.num_rows == 2500
    assert t.schema.field("day").type == pa.date32()
    assert table.column("name")[2499].as_py() == "站2499"
    assert table.column("obj")[3].as_py() == {"k": [3]}


def test_json_not_records(tmp_path):
    p = write(tmp_path, "x.json", '"just a string"')
    with pytest.raises(SourceError, match="expected a top-level array"):
        open_source(SourceSpec(path=str(p), format="json"))


def test_xlsx(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "cases"
    ws.append([])
    ws.append(["编号", "受理时间", "日期", "数量", "比例", "code", None])
    for i in range(1, 301):
        ws.append(
            [
                f"C{i}",
                dt.datetime(2025, 3, 14, 1, 20) + dt.timedelta(hours=i),
                dt.date(2025, 3, 14),
                i,
                i / 4,
                f"{i:05d}",
            ]
        )
    other = wb.create_sheet("other")
    other.append(["a"])
    other.append([1])
    wb.save(tmp_path / "x.xlsx")
    t, table = read(tmp_path / "x.xlsx", "xlsx", batch_rows=100)
    assert table.num_rows == 300
    assert [type_name(f.type) for f in t.schema] == [
        "string",
        "timestamp",
        "date",
        "integer",
        "float",
        "string",
    ]
    assert table.column("受理时间")[0].as_py() == dt.datetime(2025, 3, 14, 2, 20)
    assert table.column("code")[0].as_py() == "00001"
    _, other_t = read(tmp_path / "x.xlsx", "xlsx", sheet="other")
    _, by_index = read(tmp_path / "x.xlsx", "xlsx", sheet=1)
    assert other_t.to_pylist() == by_index.to_pylist() == [{"a": 1}]
    with pytest.raises(SourceError, match="no sheet named 'nope'"):
        open_source(SourceSpec(path=str(tmp_path / "x.xlsx"), format="xlsx", sheet="nope"))


def test_xlsx_mismatch_names_the_sheet_row(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["n"])
    for i in range(6000):
        ws.append([i])
    ws.append(["n/a"])
    wb.save(tmp_path / "x.xlsx")
    t = open_source(SourceSpec(path=str(tmp_path / "x.xlsx"), format="xlsx"))[0]
    with pytest.raises(SchemaMismatch) as e:
        list(t.batches)
    assert e.value.line == 6002 and e.value.values == ["n/a"]


def test_parquet(tmp_path):
    pq.write_table(
        pa.table(
            {
                "a": list(range(1000)),
                "s": ["2025-03-14"] * 999 + ["x"],
                "ts": pa.array(range(1000), pa.timestamp("ms")),
            }
        ),
        tmp_path / "p.parquet",
    )
    t, table = read(tmp_path / "p.parquet", "parquet", batch_rows=100)
    assert table.num_rows == 1000 and t.schema.field("ts").type == pa.timestamp("us")
    t = open_source(
        SourceSpec(path=str(tmp_path / "p.parquet"), format="parquet"),
        (FieldSpec("s", "date"),),
        batch_rows=100,
    )[0]
    with pytest.raises(SchemaMismatch) as e:
        list(t.batches)
    assert e.value.line == 1000 and e.value.values == ["x"]


# ---------------------------------------------------------------------------------------------
# property: CSV write -> read with the declared schema -> equal

_TYPES = {
    "integer": (pa.int64(), st.integers(-(2**62), 2**62)),
    "float": (pa.float64(), st.floats(allow_nan=False, allow_infinity=False, width=64)),
    "string": (
        pa.string(),
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            min_size=1,
            max_size=20,
        ),
    ),
    "boolean": (pa.bool_(), st.booleans()),
    "date": (pa.date32(), st.dates(dt.date(1900, 1, 1), dt.date(2200, 1, 1))),
    "timestamp": (
        pa.timestamp("us"),
        st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)),
    ),
}


@st.composite
def tables(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(_TYPES)), min_size=1, max_size=5))
    n = draw(st.integers(1, 30))
    # a row id first: in a one-column CSV a null row is a blank line, which readers skip
    cols, fields = {"id": pa.array(range(n), pa.int64())}, [FieldSpec("id", "integer")]
    for i, kind in enumerate(kinds):
        t, values = _TYPES[kind]
        cols[f"c{i}"] = pa.array(draw(st.lists(st.none() | values, min_size=n, max_size=n)), t)
        fields.append(FieldSpec(f"c{i}", kind))
    return pa.table(cols), tuple(fields)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_csv_round_trip(case):
    table, fields = case
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "rt.csv"
        pa_csv.write_csv(table, p)
        [t] = open_source(SourceSpec(path=str(p), format="csv", delimiter=","), fields)
        back = pa.Table.from_batches(list(t.batches), schema=t.schema)
    assert back.schema == table.schema
    assert back.to_pylist() == table.to_pylist()


@settings(deadline=None)  # the first pa.array imports pandas
@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=60))
def test_string_array_from_buffers_equals_pa_array(values):
    """The sample's string arrays are built from buffers (no pandas import); same result."""
    from ingest.readers.csv import string_array

    built = string_array(values)
    built.validate(full=True)
    assert built.equals(pa.array(values, pa.string()))
