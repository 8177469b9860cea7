"""Shared pieces of the sample-data generator: Nansha geography, identifiers and writers.

Every writer returns the file's bytes, so the caller can compare them with what is on disk
and leave an unchanged file untouched. Everything is deterministic for a given seed: no wall
clock, no hash randomisation, fixed zip timestamps in the xlsx files.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

# --------------------------------------------------------------------------- geography

#: Nansha district bounding box (lon_min, lon_max, lat_min, lat_max); every generated
#: coordinate lies inside it.
BBOX = (113.30, 113.70, 22.55, 22.95)

KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON = 111.32 * float(np.cos(np.radians(22.75)))

#: The district's three sub-districts (街道) and six towns (镇) with an approximate centre.
STREETS: dict[str, tuple[float, float]] = {
    "南沙街道": (113.535, 22.795),
    "珠江街道": (113.548, 22.715),
    "龙穴街道": (113.650, 22.690),
    "万顷沙镇": (113.570, 22.665),
    "横沥镇": (113.500, 22.748),
    "黄阁镇": (113.520, 22.838),
    "东涌镇": (113.460, 22.890),
    "大岗镇": (113.410, 22.800),
    "榄核镇": (113.400, 22.848),
}

#: Landmarks used as bus termini, pick-up hot spots and drone bases (lon, lat).
PLACES: dict[str, tuple[float, float]] = {
    "南沙客运港": (113.628, 22.742),
    "蕉门": (113.536, 22.797),
    "金洲": (113.553, 22.786),
    "黄阁": (113.521, 22.826),
    "黄阁汽车城": (113.512, 22.846),
    "庆盛": (113.496, 22.875),
    "东涌": (113.460, 22.893),
    "大岗": (113.410, 22.800),
    "榄核": (113.400, 22.846),
    "横沥": (113.500, 22.745),
    "万顷沙": (113.562, 22.690),
    "珠江街": (113.545, 22.718),
    "龙穴岛": (113.650, 22.688),
    "南沙湾": (113.618, 22.763),
    "明珠湾": (113.570, 22.770),
    "大涌": (113.590, 22.768),
    "南横": (113.610, 22.752),
    "南沙港": (113.660, 22.660),
    "滨海公园": (113.612, 22.738),
    "南沙体育馆": (113.560, 22.800),
}

#: Roads: name, short code, two end points, the street (街道/镇) it runs through.
ROADS: list[tuple[str, str, tuple[float, float], tuple[float, float], str]] = [
    ("进港大道", "JGDD", (113.575, 22.805), (113.625, 22.740), "南沙街道"),
    ("凤凰大道", "FHDD", (113.530, 22.780), (113.572, 22.812), "南沙街道"),
    ("环市大道北", "HSDB", (113.518, 22.812), (113.560, 22.822), "南沙街道"),
    ("环市大道南", "HSDN", (113.540, 22.772), (113.582, 22.780), "南沙街道"),
    ("黄阁大道", "HGDD", (113.498, 22.818), (113.540, 22.862), "黄阁镇"),
    ("港前大道", "GQDD", (113.600, 22.785), (113.632, 22.722), "南沙街道"),
    ("蕉门路", "JML", (113.520, 22.792), (113.552, 22.800), "南沙街道"),
    ("金岭北路", "JLBL", (113.530, 22.800), (113.552, 22.822), "南沙街道"),
    ("金岭南路", "JLNL", (113.528, 22.770), (113.540, 22.798), "南沙街道"),
    ("海滨路", "HBL", (113.590, 22.760), (113.630, 22.748), "南沙街道"),
    ("双山大道", "SSDD", (113.540, 22.815), (113.585, 22.832), "南沙街道"),
    ("丰泽东路", "FZDL", (113.552, 22.790), (113.592, 22.800), "南沙街道"),
    ("龙穴大道", "LXDD", (113.632, 22.722), (113.662, 22.652), "龙穴街道"),
    ("市南公路", "SNGL", (113.445, 22.920), (113.482, 22.872), "东涌镇"),
    ("灵新大道", "LXND", (113.478, 22.762), (113.522, 22.728), "横沥镇"),
    ("万环西路", "WHXL", (113.548, 22.705), (113.578, 22.640), "万顷沙镇"),
]

# --------------------------------------------------------------------------- randomness


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible generator per dataset (stable across Python runs)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def clip_bbox(lon: np.ndarray, lat: np.ndarray, margin: float = 0.002):
    lon0, lon1, lat0, lat1 = BBOX
    return (
        np.clip(lon, lon0 + margin, lon1 - margin),
        np.clip(lat, lat0 + margin, lat1 - margin),
    )


def km_between(lon1, lat1, lon2, lat2):
    """Equirectangular distance in km (good to ~0.1 % at this scale)."""
    dx = (np.asarray(lon2) - lon1) * KM_PER_DEG_LON
    dy = (np.asarray(lat2) - lat1) * KM_PER_DEG_LAT
    return np.hypot(dx, dy)


# --------------------------------------------------------------------------- identifiers

_PLATE_LETTERS = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))  # no I or O on plates
_PLATE_ALNUM = np.array(list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"))

#: Guangzhou plates: 粤A + 5 characters (ordinary), 粤A + 5 digits + D/F (new-energy large
#: vehicle such as an electric bus), 粤A + D/F + 5 characters (new-energy small car).
PLATE_RE = re.compile(r"^粤A(?:[0-9A-HJ-NP-Z]{5}|[0-9]{5}[DF]|[DF][0-9A-HJ-NP-Z][0-9]{4})$")


def _digits(rng: np.random.Generator, n: int, k: int) -> list[str]:
    return ["".join(map(str, row)) for row in rng.integers(0, 10, size=(n, k))]


def plates(rng: np.random.Generator, n: int, kind: str) -> list[str]:
    """``n`` distinct Guangzhou plates. kind: ordinary | ev_large | ev_small | mixed_large."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        m = (n - len(out)) * 2 + 4
        if kind == "ordinary":
            body = ["".join(r) for r in rng.choice(_PLATE_ALNUM, size=(m, 5))]
            # at least one digit in the last 4, as real plates have
            cand = [
                b[:4] + str(d) if not any(c.isdigit() for c in b) else b
                for b, d in zip(body, rng.integers(0, 10, m), strict=True)
            ]
        elif kind == "ev_large":
            cand = [
                d + s for d, s in zip(_digits(rng, m, 5), rng.choice(["D", "F"], m), strict=True)
            ]
        elif kind == "ev_small":
            cand = [
                s + a + d
                for s, a, d in zip(
                    rng.choice(["D", "F"], m, p=[0.85, 0.15]),
                    rng.choice(_PLATE_ALNUM, m),
                    _digits(rng, m, 4),
                    strict=True,
                )
            ]
        elif kind == "mixed_large":  # 75 % electric, the rest ordinary
            k = int(rng.binomial(m, 0.75))
            cand = plates(rng, k, "ev_large") + plates(rng, m - k, "ordinary")
            cand = [c[2:] for c in cand]
            rng.shuffle(cand)
        else:
            raise ValueError(kind)
        for c in cand:
            p = "粤A" + c
            if p not in seen:
                seen.add(p)
                out.append(p)
                if len(out) == n:
                    break
    return out


def phones(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mainland mobile numbers 1[3-9]xxxxxxxxx (synthetic)."""
    prefixes = np.array(
        ["133", "135", "136", "137", "138", "139", "150", "152", "155", "156", "158", "159"]
        + ["166", "173", "176", "177", "180", "181", "186", "187", "188", "189", "191", "199"]
    )
    pre = rng.choice(prefixes, n)
    rest = rng.integers(0, 100_000_000, n)
    return np.char.add(pre, np.char.zfill(rest.astype(str), 8))


def seq_ids(prefix: str, n: int, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width))


# --------------------------------------------------------------------------- time

EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


def ts(text: str) -> int:
    """Seconds since the epoch of a naive local (Beijing) timestamp string."""
    return int((np.datetime64(text, "s") - EPOCH).astype(np.int64))


def to_dt64(seconds: np.ndarray) -> np.ndarray:
    return np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")


def ts_strings(seconds: np.ndarray) -> np.ndarray:
    """'2026-03-02 07:15:30' strings, vectorised."""
    return np.char.replace(np.datetime_as_string(to_dt64(seconds), unit="s"), "T", " ")


# --------------------------------------------------------------------------- writers


def csv_bytes(table: pa.Table, encoding: str = "utf-8") -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(batch_size=65536))
    data = buf.getvalue()
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        data = data.decode("utf-8").encode(encoding)
    return data


# a generated column: a numpy array, or a plain sequence of values
Column = np.ndarray | Sequence[Any]


def ndjson_bytes(columns: dict[str, Column]) -> bytes:
    """One JSON object per line; None becomes null. Values must be JSON-native types."""
    names = list(columns)
    cols = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in columns.values()]
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    lines = [dumps(dict(zip(names, row, strict=True))) for row in zip(*cols, strict=True)]
    return ("\n".join(lines) + "\n").encode("utf-8")


_FIXED_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
_FIXED_DOC_TIME = dt.datetime(2026, 1, 1, 0, 0, 0)


def xlsx_bytes(
    sheet: str,
    header: Sequence[str],
    columns: Iterable[Column],
    *,
    widths: Sequence[int] | None = None,
    title: str | None = None,
) -> bytes:
    """A one-sheet workbook (openpyxl write-only mode), made byte-reproducible.

    numpy datetime64 columns become real Excel date-times; None becomes an empty cell.
    """
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    cols: list[Sequence[Any]] = []
    for c in columns:
        if isinstance(c, np.ndarray):
            if np.issubdtype(c.dtype, np.datetime64):
                c = c.astype("datetime64[s]").tolist()  # -> datetime.datetime
            else:
                c = c.tolist()
        cols.append(c)
    wb = Workbook(write_only=True)
    wb.properties.creator = "nsdx sample generator"
    if title:
        wb.properties.title = title
    wb.properties.created = _FIXED_DOC_TIME
    ws = wb.create_sheet(sheet)
    for i, w in enumerate(widths or []):
        ws.column_dimensions[get_column_letter(i + 1)].width = w
    ws.append(list(header))
    for row in zip(*cols, strict=True):
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return _normalise_zip(buf.getvalue())


def _normalise_zip(data: bytes) -> bytes:
    """Fixed entry times and document times, so the same workbook gives the same bytes."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as zin,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout,
    ):
        for info in zin.infolist():
            body = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                    rb"\g<1>2026-01-01T00:00:00Z\g<2>",
                    body,
                )
            zi = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zout.writestr(zi, body, compresslevel=6)
    return out.getvalue()
