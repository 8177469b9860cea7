"""What a published table covers, computed from its Parquet files at ingest and kept in the
version's manifest: the time span of its date and timestamp columns and the bounding box of
its longitude/latitude columns. Read from the Parquet column statistics (no data pass);
a row group without statistics is read one column at a time."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

LON_RE = re.compile(r"(^|_)(lon|lng|long|longitude)(_|$)", re.I)
LAT_RE = re.compile(r"(^|_)(lat|latitude)(_|$)", re.I)


def _kind(name: str, typ: pa.DataType) -> str | None:
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return "time"
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ) or pa.types.is_integer(typ):
        if LON_RE.search(name):
            return "lon"
        if LAT_RE.search(name):
            return "lat"
    return None


def _extent(files: list[Path], col: str) -> tuple[object, object] | None:
    lo = hi = None
    for path in files:
        pf = pq.ParquetFile(path)
        idx = pf.schema_arrow.get_field_index(col)
        if idx < 0:
            continue
        leaf = pf.schema.names.index(col) if col in pf.schema.names else None
        for g in range(pf.metadata.num_row_groups):
            rg = pf.metadata.row_group(g)
            if rg.num_rows == 0:
                continue
            st = rg.column(leaf).statistics if leaf is not None else None
            if st is not None and st.has_min_max:
                a, b = st.min, st.max
                if isinstance(a, int) and pa.types.is_timestamp(pf.schema_arrow.field(idx).type):
                    a = b = None  # raw units: read instead
            else:
                a = b = None
            if a is None or b is None:
                mm = pc.min_max(pf.read_row_group(g, columns=[col]).column(0)).as_py()
                a, b = mm["min"], mm["max"]
            if a is None or b is None:
                continue
            lo = a if lo is None or a < lo else lo
            hi = b if hi is None or b > hi else hi
    return (lo, hi) if lo is not None else None


def _iso(v) -> str:
    if isinstance(v, datetime):
        return v.isoformat(timespec="seconds")
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def table_coverage(files: list[Path], schema: pa.Schema) -> dict:
    """``{"temporal": {"start", "end"}, "spatial": {"west", "south", "east", "north"}}``
    (either left out when the table has no such columns, or only empty/out-of-range ones)."""
    times: list[tuple[object, object]] = []
    lons: list[tuple[object, object]] = []
    lats: list[tuple[object, object]] = []
    for f in schema:
        kind = _kind(f.name, f.type)
        if kind is None:
            continue
        ext = _extent(files, f.name)
        if ext is None:
            continue
        {"time": times, "lon": lons, "lat": lats}[kind].append(ext)
    out: dict = {}
    if times:
        # a date and a datetime compare as dates
        def day(v):
            return v.date() if isinstance(v, datetime) else v

        start = min((t[0] for t in times), key=lambda v: (day(v), _iso(v)))
        end = max((t[1] for t in times), key=lambda v: (day(v), _iso(v)))
        out["temporal"] = {"start": _iso(start), "end": _iso(end)}
    box = _box(lons, lats)
    if box:
        out["spatial"] = box
    return out


def _box(lons: list, lats: list) -> dict | None:
    lons = [(float(a), float(b)) for a, b in lons]
    lats = [(float(a), float(b)) for a, b in lats]
    if not lons or not lats:
        return None
    w, e = min(a for a, _ in lons), max(b for _, b in lons)
    s, n = min(a for a, _ in lats), max(b for _, b in lats)
    if any(math.isnan(v) for v in (w, e, s, n)):
        return None
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        return None  # not degrees (projected coordinates, or bad values)
    return {"west": w, "south": s, "east": e, "north": n}


def merge(coverages: list[dict]) -> dict:
    """One coverage for a dataset of several tables."""
    out: dict = {}
    temporal = [c["temporal"] for c in coverages if c.get("temporal")]
    if temporal:
        out["temporal"] = {
            "start": min(t["start"] for t in temporal),
            "end": max(t["end"] for t in temporal),
        }
    spatial = [c["spatial"] for c in coverages if c.get("spatial")]
    if spatial:
        out["spatial"] = {
            "west": min(b["west"] for b in spatial),
            "south": min(b["south"] for b in spatial),
            "east": max(b["east"] for b in spatial),
            "north": max(b["north"] for b in spatial),
        }
    return out
