"""The seeded sample-data generator (nsdx.samples) and the datasets.yaml that declares it."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pytest

from ingest.spec import load_specs
from nsdx.samples import SAMPLE_FILES, generate
from nsdx.samples._common import BBOX, PLATE_RE
from nsdx.samples.transport import BUS_ROUTE_IDS

pytestmark = pytest.mark.xdist_group("samples")  # one worker builds the samples once

ROOT = Path(__file__).resolve().parents[1]
DATASETS_YAML = ROOT / "datasets.yaml"
ROWS = 5_000
SEED = 7

LINE4_NANSHA = [
    "黄阁汽车城",
    "黄阁",
    "蕉门",
    "金洲",
    "飞沙角",
    "广隆",
    "大涌",
    "塘坑",
    "南横",
    "南沙客运港",
]
LINE18_NANSHA = ["万顷沙", "横沥", "番禺广场"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    return generate(tmp_path_factory.mktemp("samples"), rows=ROWS, seed=SEED)


@pytest.fixture(scope="module")
def specs():
    return {s.id: s for s in load_specs(DATASETS_YAML)}


@pytest.fixture(scope="module")
def tables(samples, specs) -> dict[str, pa.Table]:
    out = {}
    for ds_id, path in samples.items():
        src = specs[ds_id].source
        out[ds_id] = read_table(path, src.format, src.encoding)
    return out


def read_table(path: Path, fmt: str, encoding: str = "utf-8") -> pa.Table:
    """Read a generated file the simple way, independent of the ingest readers."""
    if fmt == "csv":
        data = path.read_bytes()
        if encoding not in ("utf-8", "auto"):
            data = data.decode(encoding).encode("utf-8")
        return pacsv.read_csv(io.BytesIO(data))
    if fmt == "ndjson":
        return pajson.read_json(path)
    if fmt == "xlsx":
        wb = openpyxl.load_workbook(path, read_only=True)
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
        wb.close()
        header, body = rows[0], rows[1:]
        return pa.table({h: [r[i] for r in body] for i, h in enumerate(header)})
    raise AssertionError(fmt)


# --------------------------------------------------------------------------- generator


def test_returns_every_sample_file(samples):
    assert set(samples) == set(SAMPLE_FILES)
    assert len(samples) >= 8
    for ds_id, path in samples.items():
        assert path.name == SAMPLE_FILES[ds_id]
        assert path.is_file() and path.stat().st_size > 1000, ds_id


def test_same_seed_same_bytes(samples, tmp_path):
    again = generate(tmp_path / "again", rows=ROWS, seed=SEED)
    for ds_id, path in samples.items():
        assert again[ds_id].read_bytes() == path.read_bytes(), ds_id


def test_other_seed_other_data(samples, tmp_path):
    other = generate(tmp_path, rows=ROWS, seed=SEED + 1, only=["nansha-bus-gps"])
    assert other["nansha-bus-gps"].read_bytes() != samples["nansha-bus-gps"].read_bytes()


def test_rerun_does_not_rewrite(samples, tmp_path):
    out = tmp_path / "samples"
    shutil.copytree(next(iter(samples.values())).parent, out)
    files = {k: out / p.name for k, p in samples.items()}
    mtimes = {k: p.stat().st_mtime_ns for k, p in files.items()}
    seen: list[tuple[str, int]] = []
    generate(out, rows=ROWS, seed=SEED, progress=lambda d, n: seen.append((d, n)))
    assert {k: p.stat().st_mtime_ns for k, p in files.items()} == mtimes
    assert [d for d, _ in seen] == list(SAMPLE_FILES)
    assert dict(seen)["nansha-bus-gps"] == ROWS
    # without the stamp everything is regenerated, but identical bytes are not rewritten
    (out / ".nsdx-samples.json").unlink()
    generate(out, rows=ROWS, seed=SEED)
    assert {k: p.stat().st_mtime_ns for k, p in files.items()} == mtimes
    # a file changed on disk is noticed (its checksum no longer matches) and restored
    hotline = files["nansha-hotline-cases"]
    original = hotline.read_bytes()
    hotline.write_bytes(b"case_id\n")
    generate(out, rows=ROWS, seed=SEED)
    assert hotline.read_bytes() == original
    mtimes["nansha-hotline-cases"] = hotline.stat().st_mtime_ns
    # a new row count only touches the bus file
    generate(out, rows=ROWS + 10, seed=SEED)
    changed = {k for k, p in files.items() if p.stat().st_mtime_ns != mtimes[k]}
    assert changed == {"nansha-bus-gps"}


def test_bus_gps_rows_and_columns(samples, tables):
    t = tables["nansha-bus-gps"]
    assert t.num_rows == ROWS
    assert t.column_names == [
        "ts",
        "vehicle_id",
        "plate",
        "route_id",
        "lon",
        "lat",
        "speed_kmh",
        "heading",
        "occupancy",
    ]
    assert pa.types.is_timestamp(t["ts"].type)
    first = samples["nansha-bus-gps"].read_text(encoding="utf-8").splitlines()[1]
    assert re.match(r"^2026-03-0\d \d\d:\d\d:\d\d,", first)


def test_bus_positions_inside_nansha(tables):
    t = tables["nansha-bus-gps"]
    lon0, lon1, lat0, lat1 = BBOX
    assert all(lon0 <= v <= lon1 for v in t["lon"].to_pylist())
    assert all(lat0 <= v <= lat1 for v in t["lat"].to_pylist())
    assert all(0 <= v <= 359 for v in t["heading"].to_pylist())
    assert all(0 <= v <= 90 for v in t["speed_kmh"].to_pylist())


def test_bus_plates_and_routes(tables):
    t = tables["nansha-bus-gps"].to_pydict()
    assert all(PLATE_RE.match(p) for p in t["plate"])
    assert set(t["route_id"]) <= set(BUS_ROUTE_IDS)
    assert len(set(BUS_ROUTE_IDS)) == 30
    route_of: dict[tuple[str, dt.date], str] = {}
    plate_of: dict[str, str] = {}
    for ts, vid, plate, route in zip(
        t["ts"], t["vehicle_id"], t["plate"], t["route_id"], strict=True
    ):
        assert route_of.setdefault((vid, ts.date()), route) == route, (vid, ts)
        assert plate_of.setdefault(vid, plate) == plate
    assert len(set(plate_of.values())) == len(plate_of)  # one plate per vehicle


def test_bus_positions_move_plausibly(tables):
    """Consecutive pings of one vehicle are 30 s apart and no further than the speed allows."""
    t = tables["nansha-bus-gps"].to_pydict()
    last: dict[str, tuple] = {}
    jumps = 0
    for ts, vid, lon, lat in zip(t["ts"], t["vehicle_id"], t["lon"], t["lat"], strict=True):
        if vid in last and last[vid][0].date() == ts.date():
            pts, plon, plat = last[vid]
            assert 28 <= (ts - pts).total_seconds() <= 32
            km = ((lon - plon) * 102.7) ** 2 + ((lat - plat) * 110.6) ** 2
            jumps += km**0.5 > 0.9  # 90 km/h for 30 s is 0.75 km (plus GPS noise)
        last[vid] = (ts, lon, lat)
    assert jumps == 0


def test_gb18030_files_are_gb18030(samples, specs):
    for ds_id in ("nansha-traffic-detector-counts", "nansha-hotline-cases"):
        assert specs[ds_id].source.encoding == "gb18030"
        data = samples[ds_id].read_bytes()
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        text = data.decode("gb18030")
        assert "南沙" in text or "大道" in text
    assert samples["nansha-bus-gps"].read_bytes().decode("utf-8")


def test_xlsx_files_open(samples, tables):
    for ds_id in ("gz-metro-station-flow", "nansha-streetlight-faults"):
        wb = openpyxl.load_workbook(samples[ds_id], read_only=True)
        assert len(wb.worksheets) == 1
        wb.close()
    t = tables["nansha-streetlight-faults"]
    assert isinstance(t["reported_at"][0].as_py(), dt.datetime)
    assert t["repaired_at"].null_count > 0  # some lights are not repaired yet


def test_metro_real_station_names(tables):
    t = tables["gz-metro-station-flow"].to_pydict()
    names = set(t["station_name_zh"])
    assert set(LINE4_NANSHA) <= names
    assert set(LINE18_NANSHA) <= names
    lines = {(line, s) for line, s in zip(t["line"], t["station_name_zh"], strict=True)}
    assert all(("4号线", s) in lines for s in LINE4_NANSHA)
    assert all(("18号线", s) in lines for s in LINE18_NANSHA)
    assert ("Line 4", "Nansha Passenger Port") in set(
        zip(t["line_en"], t["station_name_en"], strict=True)
    )
    assert isinstance(t["time_slot"][0], dt.datetime)
    assert {v.minute for v in t["time_slot"]} == {0, 15, 30, 45}


def test_coordinates_inside_nansha(tables):
    lon0, lon1, lat0, lat1 = BBOX
    for ds_id, t in tables.items():
        for name in t.column_names:
            values = [v for v in t[name].to_pylist() if v is not None]
            if name.endswith("lon"):
                assert all(lon0 <= v <= lon1 for v in values), (ds_id, name)
            if name.endswith("lat"):
                assert all(lat0 <= v <= lat1 for v in values), (ds_id, name)


def test_personal_data_shapes(samples):
    orders = [
        json.loads(line) for line in samples["nansha-ride-hailing-orders"].open(encoding="utf-8")
    ]
    assert all(re.fullmatch(r"1[3-9]\d{9}", o["passenger_phone"]) for o in orders)
    assert all(PLATE_RE.match(o["driver_plate"]) for o in orders)
    assert all(o["dropoff_time"] > o["pickup_time"] for o in orders)
    runs = [
        json.loads(line) for line in samples["nansha-sanitation-truck-runs"].open(encoding="utf-8")
    ]
    assert all(PLATE_RE.match(r["truck_plate"]) for r in runs)
    assert all(r["end_time"] > r["start_time"] for r in runs)


def test_hotline_text_is_clean_and_consistent(tables):
    t = tables["nansha-hotline-cases"].to_pydict()
    phone = re.compile(r"1[3-9]\d{9}|\d{3,4}-\d{7,8}")
    for desc in t["description"]:
        assert desc and not phone.search(desc) and "粤A" not in desc
        assert not re.search(r"先生|女士|小姐", desc)
    for created, closed, status in zip(t["created_at"], t["closed_at"], t["status"], strict=True):
        assert (closed is not None) == (status == "已办结")
        assert closed is None or closed > created
    assert {"南沙街道", "万顷沙镇", "黄阁镇", "东涌镇"} <= set(t["street"])


# --------------------------------------------------------------------------- datasets.yaml


def test_datasets_yaml_parses(specs):
    assert len(specs) >= 12
    for spec in specs.values():
        assert spec.title and spec.title_en and spec.notes and spec.notes_en, spec.id
        assert spec.tags and spec.licence
        assert spec.domain in ("transport", "urban-management")


def test_every_sample_is_declared_with_its_generated_path(specs, samples):
    for ds_id, path in samples.items():
        spec = specs[ds_id]
        assert spec.source.path == f"data/samples/{path.name}", ds_id
        assert spec.on_invalid == "fail"
    restricted = [s for s in specs.values() if s.access == "restricted"]
    assert {s.id for s in restricted} >= {"nansha-ride-hailing-orders", "nansha-drone-flight-logs"}
    assert all(s.price_fen and s.price_fen > 0 for s in restricted)


def test_personal_columns_are_declared(specs):
    pii = {(s.id, f.name): f.pii for s in specs.values() for f in s.schema if f.pii}
    assert pii[("nansha-bus-gps", "plate")] == "plate"
    assert pii[("nansha-ride-hailing-orders", "passenger_phone")] == "phone"
    assert pii[("nansha-ride-hailing-orders", "driver_plate")] == "plate"
    assert pii[("nansha-sanitation-truck-runs", "truck_plate")] == "plate"


def test_real_datasets_declared(specs):
    real = {s.id: s for s in specs.values() if s.source.path.startswith("data/real/")}
    assert {
        "cairns-gtfs",
        "nyc-311-animal-complaints",
        "hk-mtr-lines-and-stations",
        "montreal-bike-counts",
    } <= set(real)
    assert real["cairns-gtfs"].source.format == "gtfs"
    assert real["montreal-bike-counts"].source.delimiter == ";"
    assert real["montreal-bike-counts"].source.day_first
    for spec in real.values():
        assert spec.attribution and spec.source_url and spec.licence, spec.id
    for spec in real.values():  # the files are in the repository: a clone publishes them all
        files = spec.source.resolve()
        assert files and all(p.is_file() for p in files), spec.id
        assert all(p.resolve().is_relative_to(ROOT / "data" / "real") for p in files), spec.id


def test_generated_headers_match_declared_schema(tables, specs):
    for ds_id, t in tables.items():
        declared = [f.name for f in specs[ds_id].schema]
        assert declared == t.column_names, ds_id


# ------------------------------------------------ the generated data meets its expectations


def _bound(v, sample):
    if isinstance(v, str) and isinstance(sample, dt.datetime):
        return dt.datetime.fromisoformat(v)
    return v


def _check(t: pa.Table, e: dict) -> bool:
    n = t.num_rows
    mostly = e.get("mostly", 1.0)
    if "row_count" in e:
        lo, hi = e["row_count"]["between"]
        return (lo is None or n >= lo) and (hi is None or n <= hi)
    if "min" in e or "max" in e:
        stat = "min" if "min" in e else "max"
        present = [v for v in t[e["column"]].to_pylist() if v is not None]
        value = min(present) if stat == "min" else max(present)
        lo, hi = (_bound(b, value) for b in e[stat]["between"])
        return (lo is None or value >= lo) and (hi is None or value <= hi)
    if "columns" in e:
        assert e.get("unique")
        return t.group_by(e["columns"]).aggregate([]).num_rows == n
    values = t[e["column"]].to_pylist()
    present = [v for v in values if v is not None]
    if e.get("not_null"):
        return len(present) >= mostly * n
    if e.get("unique"):
        return len(set(present)) == len(present)
    if "between" in e:
        if not present:
            return True
        lo, hi = (_bound(b, present[0]) for b in e["between"])
        ok = sum((lo is None or v >= lo) and (hi is None or v <= hi) for v in present)
        return ok >= mostly * len(present)
    if "in_set" in e:
        allowed = set(e["in_set"])
        return sum(v in allowed for v in present) >= mostly * len(present)
    if "regex" in e:
        rx = re.compile(e["regex"])
        return sum(bool(rx.search(v)) for v in present) >= mostly * len(present)
    raise AssertionError(f"unknown expectation {e}")


def test_generated_data_meets_declared_expectations(tables, specs):
    for ds_id, t in tables.items():
        spec = specs[ds_id]
        assert spec.expectations, ds_id
        for e in spec.expectations:
            assert _check(t, e), (ds_id, e)


@pytest.mark.parametrize("rows", [1, 7, 123])
def test_tiny_bus_files_have_exactly_rows(tmp_path, rows):
    out = generate(tmp_path, rows=rows, seed=SEED, only=["nansha-bus-gps"])
    assert out["nansha-bus-gps"].read_bytes().count(b"\n") == rows + 1
