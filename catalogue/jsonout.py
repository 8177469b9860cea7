"""Query results as JSON: the one renderer of `nsdx query --format json`, the HTTP query API
and every `--json` document of the CLI.

The rules (docs/query.md, "JSON types"):

* integers stay JSON numbers, whatever their size: DuckDB's HUGEINT (``sum()`` of integers)
  arrives as a DECIMAL(38,0) and is written as an integer, not as the string ``"4130230"``;
* DECIMAL is a JSON number written exactly (``12.50`` stays ``12.50``, 38 digits stay 38);
* NaN, +Infinity and -Infinity (DOUBLE, FLOAT, DECIMAL) and DuckDB's infinite DATE and
  TIMESTAMP values become ``null``: JSON has no such numbers, and output must parse with any
  strict parser (``json.loads(s, parse_constant=reject)``);
* BLOB (and other binary values) are base64 (RFC 4648, with padding);
* DATE, TIME, TIMESTAMP are ISO 8601 (``2024-02-29``, ``12:34:56``,
  ``2024-01-01T12:34:56.789000``; TIMESTAMPTZ with its offset, in UTC);
* INTERVAL is an ISO 8601 duration (``P1M2DT3.5S``; each part keeps its sign, as PostgreSQL's
  ``iso_8601`` style writes it);
* LIST and ARRAY are arrays, STRUCT an object, MAP an object keyed by the key's JSON text,
  UUID and ENUM strings, UNION the member's value.

Domain code (no web framework, no CLI): both shells call :func:`dumps` and :func:`rows`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import secrets
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pyarrow as pa


class _Number:
    """A number written verbatim (an exact DECIMAL)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def value(v: Any) -> Any:
    """``v`` (as pyarrow's ``to_pylist`` gives it) made of JSON values only."""
    if v is None or isinstance(v, bool | int | str | _Number):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Decimal):
        if not v.is_finite():
            return None
        if v == v.to_integral_value():
            return int(v)
        return _Number(format(v, "f"))
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, pa.MonthDayNano):
        return duration(v.months, v.days, v.nanoseconds)
    if isinstance(v, dt.timedelta):
        return duration(0, v.days, (v.seconds * 1_000_000 + v.microseconds) * 1000)
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):  # a STRUCT, or a MAP (read with maps_as_pydicts)
        return {_key(k): value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [value(x) for x in v]
    return str(v)


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    k = value(k)
    return k if isinstance(k, str) else k.text if isinstance(k, _Number) else json.dumps(k)


def duration(months: int, days: int, nanoseconds: int) -> str:
    """An ISO 8601 duration: ``P1Y2M3DT4H5M6.5S``; ``PT0S`` for zero."""
    out = "P"
    years, months = int(months / 12), months - int(months / 12) * 12  # both keep the sign
    for n, unit in ((years, "Y"), (months, "M"), (days, "D")):
        if n:
            out += f"{n}{unit}"
    sign = "-" if nanoseconds < 0 else ""
    ns = abs(nanoseconds)
    hours, ns = divmod(ns, 3_600 * 10**9)
    minutes, ns = divmod(ns, 60 * 10**9)
    secs, frac = divmod(ns, 10**9)
    t = ""
    if hours:
        t += f"{sign}{hours}H"
    if minutes:
        t += f"{sign}{minutes}M"
    if secs or frac:
        t += f"{sign}{secs}" + (f".{frac:09d}".rstrip("0") if frac else "") + "S"
    if t:
        out += "T" + t
    return out if out != "P" else "PT0S"


def column_values(col: pa.ChunkedArray | pa.Array) -> list[Any]:
    """The Python values of one column; a value Python cannot hold (DuckDB's infinite DATE
    or TIMESTAMP, a year past 9999) becomes None instead of failing the whole answer."""
    try:
        return col.to_pylist(maps_as_pydicts="strict")
    except (ValueError, OverflowError, pa.ArrowException):
        chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
        out = []
        for chunk in chunks:
            for s in chunk:
                try:
                    out.append(s.as_py(maps_as_pydicts="strict"))
                except (ValueError, OverflowError, pa.ArrowException):
                    out.append(None)
        return out


def finite_times(table: pa.Table) -> pa.Table:
    """The table with DuckDB's infinite DATE and TIMESTAMP values (the largest value of the
    type, or its negation) as null, as :func:`column_values` gives them to JSON: Arrow's CSV
    writer would otherwise write ``<value out of range: 2147483647>`` into a date column."""
    import pyarrow.compute as pc

    for i, f in enumerate(table.schema):
        if pa.types.is_date32(f.type):
            width, top = pa.int32(), 2**31 - 1
        elif pa.types.is_timestamp(f.type) or pa.types.is_date64(f.type):
            width, top = pa.int64(), 2**63 - 1
        else:
            continue
        col = table.column(i)
        raw = pc.cast(col, width)
        infinite = pc.or_(pc.equal(raw, top), pc.equal(raw, -top))
        if pc.any(infinite).as_py():
            table = table.set_column(i, f, pc.if_else(infinite, pa.scalar(None, f.type), col))
    return table


def rows(table: pa.Table) -> list[list[Any]]:
    """The table's rows as lists of JSON values (column order kept)."""
    cols = [[value(v) for v in column_values(c)] for c in table.columns]
    return [list(r) for r in zip(*cols, strict=True)] if cols else []


def unique_names(names: Iterable[str]) -> list[str]:
    """Column names usable as object keys: a repeated name gets ``_1``, ``_2`` ... (as DuckDB
    names the columns of a table created from such a result), so no column is lost."""
    seen: set[str] = set()
    out = []
    for name in names:
        key, i = name, 0
        while key in seen:
            i += 1
            key = f"{name}_{i}"
        seen.add(key)
        out.append(key)
    return out


def records(table: pa.Table) -> list[dict[str, Any]]:
    """The table's rows as objects keyed by column name (`nsdx query --format json`)."""
    names = unique_names(table.column_names)
    return [dict(zip(names, r, strict=True)) for r in rows(table)]


_MARK = re.compile(r'"\\u0000([0-9a-f]{16}):(\d+)\\u0000"')


def dumps(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    """``obj`` as strict JSON text (UTF-8 characters kept, no NaN/Infinity): values are
    converted by :func:`value` unless they are JSON values already."""
    nonce = secrets.token_hex(8)
    numbers: list[str] = []

    def default(o: Any) -> Any:  # only exact numbers reach it: value() made the rest
        numbers.append(o.text)
        return f"\0{nonce}:{len(numbers) - 1}\0"

    text = json.dumps(
        value(obj),
        ensure_ascii=False,
        allow_nan=False,
        indent=indent,
        sort_keys=sort_keys,
        default=default,
    )
    if numbers:
        text = _MARK.sub(
            lambda m: numbers[int(m.group(2))] if m.group(1) == nonce else m.group(0), text
        )
    return text
