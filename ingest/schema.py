"""Column types: datasets.yaml type names, Arrow types, inference, and checked conversion.

Type names (``spec.TYPES``) map to Arrow as follows::

    string -> string            integer -> int64          int32 -> int32
    float -> float64            boolean -> bool           timestamp -> timestamp[us]
    timestamptz -> timestamp[us, tz=UTC]                  date -> date32
    time -> time64[us]          decimal(p,s) -> decimal128(p,s)      geometry -> string (WKT)

Inference (no ``type:`` declared) looks at a sample of string values (the readers pass the
first :data:`INFER_ROWS` rows) and answers, conservatively:

* ``int64`` - every value is an integer of at most 15 digits without a leading zero.
  Codes stay strings: ``00123``, numbers longer than 15 digits, columns whose values all have
  the same length of 11 or more digits (phone numbers, ID numbers), and columns whose name says
  phone / tel / mobile / id card / credit code / zip / postcode (or the Chinese words).
* ``float64`` - decimal numbers (``1.5``, ``0.00``, ``1e-3``).
* ``bool`` - only ``true``/``false`` in any letter case (``yes``/``no`` and ``0``/``1`` are not
  guessed; declare ``type: boolean`` for those).
* ``date32`` / ``timestamp[us]`` - ISO 8601 (``2020-03-01``, ``2025-03-14T01:20:00``,
  ``2025-03-14 01:20``); with a zone offset or ``Z`` -> ``timestamp[us, UTC]``. Other layouts are
  matched against strptime formats: ``source.date_formats`` first, then ``YYYY/MM/DD``,
  Chinese ``YYYY年MM月DD日``, and the slash/dot/dash day-month forms with and without a time
  (``3/14/2025 1:20``, ``10/02/2012 01:00:00 PM``, ``01/01/2012``). When both month-first and
  day-first read the whole sample, month-first wins unless ``day_first: true`` is declared.
  A column may need several formats (with and without seconds); they are tried in order.
* otherwise ``string``.

A value that does not fit the declared or inferred type raises :class:`SchemaMismatch`; the
readers compute the file line, this module finds the bad rows and the sample values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .errors import SchemaMismatch
from .numbers import NumberStyle, clean_numbers, infer_style
from .spec import FieldSpec

INFER_ROWS = 5000

_SIMPLE = {
    "string": pa.string(),
    "integer": pa.int64(),
    "int32": pa.int32(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "geometry": pa.string(),
}
_DECIMAL_RE = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
TRUE_VALUES = ["true", "True", "TRUE", "t", "T", "yes", "Yes", "YES", "y", "Y", "1"]
FALSE_VALUES = ["false", "False", "FALSE", "f", "F", "no", "No", "NO", "n", "N", "0"]


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a datasets.yaml type name (``decimal`` alone is decimal(38,9))."""
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name == "decimal":
        return pa.decimal128(38, 9)
    m = _DECIMAL_RE.match(name)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        if precision > 38:
            return pa.decimal256(precision, scale)
        return pa.decimal128(precision, scale)
    raise ValueError(f"unknown type name {name!r}")


def type_name(t: pa.DataType) -> str:
    """The datasets.yaml name of an Arrow type (for messages and the catalogue)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_int64(t):
        return "integer"
    if pa.types.is_int32(t):
        return "int32"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    return str(t)


# ---------------------------------------------------------------------------------------------
# column plans


@dataclass(frozen=True)
class ColumnPlan:
    """How one column is read: the final type, and what the fast reader produces first.

    ``read_type`` is what the format reader is asked for (the CSV reader parses int64, float64,
    bool, ISO dates/timestamps, time and decimal natively); when it differs from ``type`` the
    reader's output is converted with :func:`convert` (strptime ``formats``, numbers written
    for people - ``number``, see :mod:`ingest.numbers` - and casts).
    """

    name: str
    type: pa.DataType
    read_type: pa.DataType
    formats: tuple[str, ...] = ()
    number: NumberStyle | None = None
    origin: str = "inferred"  # declared | inferred | gtfs | file
    sample_rows: int = 0

    @property
    def label(self) -> str:
        name = type_name(self.type)
        if self.formats:
            name += f" (format {' or '.join(self.formats)})"
        return name

    @property
    def needs_conversion(self) -> bool:
        return self.read_type != self.type or bool(self.formats) or self.number is not None


def _has_time(fmt: str) -> bool:
    return any(d in fmt for d in ("%H", "%I", "%M", "%S", "%p", "%T", "%R", "%X", "%c", "%z"))


_GENERAL_FORMATS = (
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y年%m月%d日",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H时%M分",
    "%Y年%m月%d日 %H时%M分%S秒",
)
_MONTH_FIRST = (
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
)
_DAY_FIRST = (
    "%d/%m/%Y",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y",
    "%d-%m-%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
)
_INT_RE = r"^[+-]?(0|[1-9][0-9]{0,14})$"
_FLOAT_RE = r"^[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?$"
_BOOL_RE = r"^(?i:true|false)$"
_ISO_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_ISO_TS_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"
_ISO_TSTZ_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$"
)
_DATEISH_RE = r"^[0-9][0-9/.:\- TAPMapm年月日时分秒]*$"
_CODE_NAME_RE = re.compile(
    r"(phone|tel\b|mobile|id_?card|idno|id_number|credit_code|uscc|zip|post_?code|"
    r"电话|手机|身份证|信用代码|邮编|邮政编码)",
    re.IGNORECASE,
)


@dataclass
class Inferred:
    type: pa.DataType
    formats: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def _all_match(values: pa.Array, pattern: str) -> bool:
    return len(values) > 0 and pc.all(pc.match_substring_regex(values, pattern)).as_py()


def infer_strings(
    values: pa.Array,
    *,
    name: str = "",
    day_first: bool = False,
    date_formats: Sequence[str] = (),
    thousands: str | None = None,
) -> Inferred:
    """Infer the type of a column from a sample of string values (nulls ignored)."""
    values = pc.unique(values.drop_null()) if len(values) else values
    if pa.types.is_null(values.type) or len(values) == 0:
        return Inferred(pa.string())
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    numeric = values
    if thousands:
        numeric, _ = clean_numbers(values, NumberStyle(thousands=thousands))
        numeric = numeric.drop_null()
    if _all_match(numeric, _INT_RE):
        if _looks_like_code(numeric, name):
            return Inferred(pa.string(), notes=["digit codes kept as strings"])
        return Inferred(pa.int64())
    if _all_match(numeric, _FLOAT_RE) and not _all_match(numeric, r"^[0-9]+$"):
        if pc.any(pc.match_substring_regex(numeric, r"^[+-]?0[0-9]")).as_py():
            return Inferred(pa.string(), notes=["leading zeros kept as strings"])
        return Inferred(pa.float64())
    if _all_match(values, _BOOL_RE):
        return Inferred(pa.bool_())
    dt = infer_datetime(values, day_first=day_first, date_formats=date_formats)
    if dt is not None:
        return dt
    return Inferred(pa.string())


def _looks_like_code(values: pa.Array, name: str) -> bool:
    if _CODE_NAME_RE.search(name or ""):
        return True
    digits = pc.utf8_length(pc.replace_substring_regex(values, r"^[+-]", ""))
    mn, mx = pc.min_max(digits).values()
    return mn.as_py() >= 11 and mn.as_py() == mx.as_py()


def _parses(values: pa.Array, fmt: str) -> pa.Array:
    out = pc.strptime(values, format=fmt, unit="us", error_is_null=True)
    return pc.is_valid(out)


def infer_datetime(
    values: pa.Array,
    *,
    day_first: bool = False,
    date_formats: Sequence[str] = (),
    want: str | None = None,
) -> Inferred | None:
    """date32 / timestamp inference for string values; None when they are not dates.

    ``want`` ("date", "timestamp", "timestamptz") restricts the answer's type when a type was
    declared but no ``format:``; the formats are still inferred.
    """
    values = values.drop_null()
    if len(values) == 0:
        return None
    if not date_formats and _all_match(values, _ISO_DATE_RE) and _casts(values, pa.date32()):
        return Inferred(pa.date32())
    if not date_formats and _all_match(values, _ISO_TS_RE) and _casts(values, pa.timestamp("us")):
        return Inferred(pa.timestamp("us"))
    if _all_match(values, _ISO_TSTZ_RE) and _casts(values, pa.timestamp("us", tz="UTC")):
        return Inferred(pa.timestamp("us", tz="UTC"))
    if not want and not date_formats and not _all_match(values, _DATEISH_RE):
        return None
    groups = (_DAY_FIRST, _MONTH_FIRST) if day_first else (_MONTH_FIRST, _DAY_FIRST)
    candidates_sets = [tuple(date_formats) + _GENERAL_FORMATS + g for g in groups]
    if date_formats:
        candidates_sets.insert(0, tuple(date_formats))
    found = [_cover(values, c) for c in candidates_sets]
    if want and not any(c is not None for c in found):
        # a declared date/timestamp column with some bad values: use the formats that read
        # most of the sample, so the bad values are reported rather than every value
        best = max((_cover(values, c, partial=True) for c in candidates_sets), key=lambda x: x[1])
        found = [best[0] if best[1] >= 0.5 else None]
    for chosen in found:
        if chosen is not None:
            timed = any(_has_time(f) for f in chosen)
            if want == "timestamptz":
                return Inferred(pa.timestamp("us", tz="UTC"), chosen)
            if want == "timestamp" or (timed and want != "date"):
                return Inferred(pa.timestamp("us"), chosen)
            return Inferred(pa.date32(), chosen)
    return None


def _cover(values: pa.Array, candidates: Sequence[str], partial: bool = False):
    """The formats, in candidate order, that together parse every value (None if none do).
    With ``partial``: (formats, share of values parsed) even when not all parse."""
    covered = pa.array([False] * len(values))
    chosen: list[str] = []
    for fmt in candidates:
        try:
            ok = _parses(values, fmt)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        new = pc.and_(ok, pc.invert(covered))
        if pc.any(new).as_py():
            chosen.append(fmt)
            covered = pc.or_(covered, ok)
            if pc.all(covered).as_py():
                return (tuple(chosen), 1.0) if partial else tuple(chosen)
    if partial:
        share = pc.sum(covered.cast(pa.int64())).as_py() / max(1, len(values))
        return tuple(chosen) or None, share
    return None


def _casts(values: pa.Array, t: pa.DataType) -> bool:
    try:
        pc.cast(values, t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def plan_column(
    name: str,
    sample: pa.Array | None,
    declared: FieldSpec | None,
    *,
    day_first: bool = False,
    date_formats: Sequence[str] = (),
    thousands: str | None = None,
    origin: str | None = None,
    native: bool = True,
    number: NumberStyle | None = None,
    messy: bool = False,
) -> ColumnPlan:
    """Decide how to read one column from its declaration and/or a sample of string values.

    ``native``: the reader parses every plain type itself from text (the CSV reader does: ints,
    floats, bools, ISO dates and timestamps, time, decimal); when False, non-string columns
    are read as strings and converted by :func:`convert`.

    ``number``: how the source declares its numbers are written (``thousands``, ``currency``,
    ``percent``; ``thousands`` alone is the same as ``number=NumberStyle(thousands)``);
    ``messy``: also infer numbers written for people when nothing is declared (the rule is
    :func:`ingest.numbers.infer_style`'s).
    """
    n = 0 if sample is None else len(sample)
    style_decl = number or (NumberStyle(thousands=thousands) if thousands else None)
    style: NumberStyle | None = None
    strings = _as_strings(sample) if sample is not None else pa.array([], pa.string())
    if declared is not None and declared.type:
        final = arrow_type(declared.type)
        formats: tuple[str, ...] = (declared.format,) if declared.format else ()
        kind = declared.type
        if not formats and kind in ("timestamp", "timestamptz", "date") and sample is not None:
            inf = infer_datetime(strings, day_first=day_first, date_formats=date_formats, want=kind)
            if inf is not None:
                formats = inf.formats
        if _numeric(final) and (style_decl is not None or messy):
            style = style_decl or infer_style(strings, None)
        origin = origin or "declared"
    else:
        inf = None
        if declared is not None and declared.format:
            inf = infer_datetime(strings, date_formats=(declared.format,), day_first=day_first)
            inf = inf or Inferred(pa.timestamp("us"), (declared.format,))
        elif declared is not None and declared.pii in ("phone", "id_card", "plate"):
            inf = Inferred(pa.string())
        elif style_decl is not None or messy:
            style = infer_style(strings, style_decl)
            if style is not None:
                cleaned, _ = clean_numbers(strings, style)
                inf = infer_strings(cleaned.drop_null(), name=name)
                if not _numeric(inf.type):
                    inf, style = None, None
        if inf is None:
            inf = infer_strings(strings, name=name, day_first=day_first, date_formats=date_formats)
        final, formats = inf.type, inf.formats
        origin = origin or "inferred"
    if not _numeric(final):
        style = None
    if formats or style is not None or not native:
        read_type = pa.string()
    else:
        read_type = final
    return ColumnPlan(name, final, read_type, formats, style, origin, n)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _as_strings(arr: pa.Array) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_null(arr.type):
        return pa.array([None] * len(arr), pa.string())
    return pc.cast(arr, pa.string())


# ---------------------------------------------------------------------------------------------
# conversion with located errors


class ConversionFailed(Exception):
    """Raised by :func:`convert`: ``rows`` are 0-based indices into the converted array."""

    def __init__(self, plan: ColumnPlan, rows: list[int], values: list) -> None:
        super().__init__(f"column {plan.name!r}: {len(rows)} values do not fit {plan.label}")
        self.plan, self.rows, self.values = plan, rows, values


def convert(
    arr: pa.Array, plan: ColumnPlan, repairs: dict[str, dict[str, int]] | None = None
) -> pa.Array:
    """Convert a reader column to ``plan.type``; ConversionFailed names the bad rows.
    ``repairs``: what was changed to read numbers written for people is added to
    ``repairs[plan.name]`` (kind -> values, see :mod:`ingest.numbers`)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type == plan.type and not plan.formats and plan.number is None:
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), plan.type)
    src = arr
    if plan.number is not None and pa.types.is_string(arr.type):
        arr, done = clean_numbers(arr, plan.number)
        if repairs is not None:
            done.add_to(repairs.setdefault(plan.name, {}))
    if plan.formats and pa.types.is_string(arr.type):
        out = _strptime_all(arr, plan.formats)
        bad = pc.and_(pc.is_valid(arr), pc.is_null(out))
        if pc.any(bad).as_py():
            _fail(plan, src, bad)
        return _finish_datetime(out, plan.type)
    if pa.types.is_boolean(plan.type) and pa.types.is_string(arr.type):
        t = pc.is_in(arr, pa.array(TRUE_VALUES))
        f = pc.is_in(arr, pa.array(FALSE_VALUES))
        bad = pc.and_(pc.is_valid(arr), pc.invert(pc.or_(t, f)))
        if pc.any(bad).as_py():
            _fail(plan, src, bad)
        return pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), t)
    try:
        return pc.cast(arr, plan.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        _fail(plan, src, bad_mask(arr, plan.type))
    raise AssertionError("unreachable")


def _strptime_all(arr: pa.Array, formats: Sequence[str]) -> pa.Array:
    parsed = [pc.strptime(arr, format=f, unit="us", error_is_null=True) for f in formats]
    return parsed[0] if len(parsed) == 1 else pc.coalesce(*parsed)


def _finish_datetime(ts: pa.Array, t: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(t) and t.tz and ts.type.tz is None:
        return pc.assume_timezone(ts, timezone=t.tz)  # naive values are taken as UTC
    return pc.cast(ts, t)


def bad_mask(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """Boolean array: which non-null values of ``arr`` fail to cast to ``t`` (value by value
    over the distinct values, so it is only used on the error path)."""
    uniques = pc.unique(arr.drop_null())
    bad = []
    for v in uniques:
        try:
            pc.cast(pa.array([v.as_py()], arr.type), t)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            bad.append(v.as_py())
    if not bad:
        return pa.array([False] * len(arr))
    return pc.fill_null(pc.is_in(arr, pa.array(bad, arr.type)), False)


def _fail(plan: ColumnPlan, src: pa.Array, bad: pa.Array) -> None:
    bad = pc.fill_null(bad, False)
    rows = pc.indices_nonzero(bad).to_pylist()
    values: list = []
    for i in rows:
        v = src[i].as_py()
        if v not in values:
            values.append(v)
        if len(values) == 5:
            break
    raise ConversionFailed(plan, rows, values)


def mismatch(
    plan: ColumnPlan,
    values: list,
    *,
    file: str | None,
    line: int | None,
) -> SchemaMismatch:
    """The SchemaMismatch users see, for a column, its first bad line and sample values."""
    shown = ", ".join(repr(v) for v in values[:5])
    first = values[0] if values else None
    kind = f"{plan.origin} type"
    if plan.formats:
        kind += f", format {' or '.join(plan.formats)}"
    message = f"value {first!r} is not a valid {type_name(plan.type)} ({kind}); bad values: {shown}"
    if plan.origin == "inferred":
        hint = (
            f"column {plan.name!r} was inferred as {type_name(plan.type)} from the first "
            f"{plan.sample_rows} rows; declare `type: string` for it in datasets.yaml's schema, "
            f"or add {first!r} to source.null_values"
        )
    elif plan.origin == "gtfs":
        hint = f"column {plan.name!r} must be {plan.label} in GTFS; fix the feed"
    else:
        hint = f"fix the file or change `type:` of column {plan.name!r} in datasets.yaml"
    return SchemaMismatch(message, file=file, line=line, column=plan.name, values=values, hint=hint)


def missing_columns(
    declared: Sequence[FieldSpec], names: Sequence[str], *, file: str
) -> SchemaMismatch | None:
    """SchemaMismatch for declared columns that are absent from the file, else None."""
    have = set(names)
    missing = [f.name for f in declared if f.name not in have]
    if not missing:
        return None
    word = "column" if len(missing) == 1 else "columns"
    return SchemaMismatch(
        f"declared {word} {', '.join(map(repr, missing))} not found; the file has: "
        + ", ".join(map(repr, names)),
        file=file,
        column=missing[0],
        hint="fix the column name in datasets.yaml's schema (names are matched exactly, "
        "after stripping spaces and BOM)",
    )
