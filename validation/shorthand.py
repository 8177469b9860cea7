"""The ``expectations:`` shorthand of datasets.yaml, turned into great-expectations configurations.

:func:`parse_expectations` checks every entry against the dataset's Arrow schema and returns one
:class:`Expectation` per entry: the great-expectations type name, its kwargs and *where* it runs:

* ``row`` — a column map expectation, run through great-expectations (pandas engine) on every
  record batch while the data streams in;
* ``dataset`` — needs all rows at once (uniqueness, row count, min/max/mean, distinct count,
  freshness, referential); computed once with DuckDB over the staged Parquet files;
* ``gx_full`` — any other great-expectations expectation given with ``gx:``, run once by
  great-expectations on the named columns of the staged data.

No great-expectations import here: the table of shorthand keys is plain data, so parsing
datasets.yaml stays fast. See docs/validation.md for the full reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .errors import ExpectationConfigError
from .messages import Msg

#: shorthand key -> (great-expectations type, level); the documentation is generated from
#: the same words, see docs/validation.md.
SHORTHAND: dict[str, str] = {
    "not_null": "expect_column_values_to_not_be_null",
    "between": "expect_column_values_to_be_between",
    "in_set": "expect_column_values_to_be_in_set",
    "regex": "expect_column_values_to_match_regex",
    "length": "expect_column_value_lengths_to_be_between  (length: n -> expect_column_value_lengths_to_equal)",
    "type": "expect_column_values_to_be_in_type_list",
    "unique": "expect_column_values_to_be_unique  (columns: [...] -> expect_compound_columns_to_be_unique)",
    "row_count": "expect_table_row_count_to_be_between",
    "min": "expect_column_min_to_be_between",
    "max": "expect_column_max_to_be_between",
    "mean": "expect_column_mean_to_be_between",
    "distinct": "expect_column_unique_value_count_to_be_between",
    "freshness": "expect_column_max_to_be_between  (min_value = now - max_age_days)",
    "in_dataset": "expect_column_values_to_be_in_dataset  (nsdx extension, DuckDB anti-join)",
    "gx": "any great-expectations expectation by name, other keys are its kwargs",
}
CHECK_KEYS = tuple(SHORTHAND)
MODIFIERS = ("column", "columns", "mostly", "strict", "description", "table")

#: ``type:`` names -> the names great-expectations' pandas engine accepts for the pandas form
#: of that Arrow type: numpy dtype names, pandas extension dtype class names (nullable ints),
#: and Python type names for object columns (checked value by value). Dates and tz-aware
#: timestamps reach pandas as datetime64 (tz-aware ones in UTC), so ``timestamptz`` and
#: ``date`` cannot be told from ``timestamp`` here (the Arrow schema already records that).
_INT = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
_NULLABLE_INT = ["Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype"]
_NULLABLE_INT += ["UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype"]
_FLOAT = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype", "float"]
_DT = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]
TYPE_LISTS: dict[str, list[str]] = {
    "integer": _INT + _NULLABLE_INT + ["int"],
    "int32": ["int8", "int16", "int32", "Int8Dtype", "Int16Dtype", "Int32Dtype", "int"],
    "float": _FLOAT,
    "number": _INT + _NULLABLE_INT + _FLOAT + ["int"],
    "string": ["str", "StringDtype"],
    "boolean": ["bool", "BooleanDtype"],
    "timestamp": list(_DT),
    "timestamptz": list(_DT),
    "date": list(_DT),
}

ROW = "row"
DATASET = "dataset"
GX_FULL = "gx_full"
_NO_MOSTLY = ("row_count", "min", "max", "mean", "distinct", "freshness")


@dataclass
class Expectation:
    """One parsed entry of ``expectations:``."""

    index: int  # position in datasets.yaml
    key: str  # the shorthand key (``between``, ``gx`` ...)
    type: str  # great-expectations expectation type (snake_case)
    kwargs: dict[str, Any]  # great-expectations kwargs (JSON-safe, as written in the report)
    level: str  # row | dataset | gx_full
    label: str  # short human-readable name, unique within the suite
    mostly: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        cols = []
        for k in ("column", "column_A", "column_B"):
            if k in self.kwargs:
                cols.append(self.kwargs[k])
        cols.extend(self.kwargs.get("column_list") or [])
        return cols


def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t):
        return "temporal"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    return "other"


def _fmt(v: Any) -> str:
    return "null" if v is None else str(v)


def _supported() -> str:
    return "supported keys: " + ", ".join(CHECK_KEYS) + "; modifiers: " + ", ".join(MODIFIERS)


class _Parser:
    def __init__(self, schema: pa.Schema | None, dataset_id: str | None, file: str | None):
        self.schema = schema
        self.dataset_id = dataset_id
        self.file = file

    def err(self, i: int, key: str | None, message: str, hint: str | None = None):
        return ExpectationConfigError(
            message, index=i, key=key, dataset_id=self.dataset_id, file=self.file, hint=hint
        )

    def column(self, i: int, raw: dict, key: str, kinds: tuple[str, ...] | None = None) -> str:
        col = raw.get("column")
        if not isinstance(col, str) or not col:
            raise self.err(
                i,
                key,
                Msg("'%(key)s' needs 'column: <name>'", key=key),
                hint=f"e.g. {{column: speed_kmh, {key}: ...}}",
            )
        if self.schema is not None:
            if col not in self.schema.names:
                raise self.err(
                    i,
                    key,
                    Msg("column %(column)s is not in the data", column=repr(col)),
                    hint=Msg("columns are: %(names)s", names=", ".join(self.schema.names)),
                )
            kind = _kind(self.schema.field(col).type)
            if kinds is not None and kind not in kinds:
                raise self.err(
                    i,
                    key,
                    Msg(
                        "'%(key)s' needs a %(kinds)s column, but %(column)s is %(type)s",
                        key=key,
                        kinds=" or ".join(kinds),
                        column=repr(col),
                        type=str(self.schema.field(col).type),
                    ),
                    hint="check the column name, or declare its type in schema:",
                )
        return col

    def between(self, i: int, key: str, value: Any) -> tuple[Any, Any]:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise self.err(
                i,
                key,
                Msg(
                    "'%(key)s' must be a list [min, max], got %(value)s", key=key, value=repr(value)
                ),
                hint="use null for an open end, e.g. [0, null]",
            )
        lo, hi = value
        if lo is None and hi is None:
            raise self.err(
                i,
                key,
                Msg("'%(key)s': [null, null] checks nothing", key=key),
                hint="give a min, a max or both",
            )
        for v in (lo, hi):
            if v is not None and not isinstance(v, int | float | str):
                raise self.err(
                    i,
                    key,
                    Msg(
                        "'%(key)s' bounds must be numbers, timestamps (strings) or null, got %(value)s",
                        key=key,
                        value=repr(v),
                    ),
                )
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            raise self.err(
                i,
                key,
                Msg("'%(key)s': min %(min)s is greater than max %(max)s", key=key, min=lo, max=hi),
            )
        return lo, hi

    def nested_between(self, i: int, key: str, value: Any) -> tuple[Any, Any]:
        if not isinstance(value, dict) or set(value) != {"between"}:
            raise self.err(
                i,
                key,
                Msg(
                    "'%(key)s' must be {between: [min, max]}, got %(value)s",
                    key=key,
                    value=repr(value),
                ),
            )
        return self.between(i, key, value["between"])


def parse_expectations(
    expectations: list[dict] | tuple[dict, ...],
    schema: pa.Schema | None = None,
    *,
    dataset_id: str | None = None,
    file: str | None = None,
    table: str | None = None,
) -> list[Expectation]:
    """Turn the shorthand list into :class:`Expectation` objects; raise on the first bad entry.

    With ``schema`` the columns are checked to exist and to have a fitting type. In a dataset
    of several tables (a GTFS feed) entries carry ``table: <name>``; with ``table`` given only
    those entries are kept, without it only the entries that name no table. ``index`` stays the
    position in the full list, so messages point at the right entry.
    """
    p = _Parser(schema, dataset_id, file)
    out: list[Expectation] = []
    labels: set[str] = set()
    for i, raw in enumerate(expectations):
        if not isinstance(raw, dict):
            raise p.err(
                i,
                None,
                Msg("each expectation must be a mapping, got %(value)s", value=repr(raw)),
                hint=_supported(),
            )
        if "table" in raw and not isinstance(raw["table"], str):
            raise p.err(
                i,
                "table",
                Msg("'table' must name one table, got %(value)s", value=repr(raw["table"])),
            )
        if raw.get("table") != table:
            continue
        exp = _parse_one(p, i, raw)
        label = exp.label
        n = 2
        while exp.label in labels:
            exp.label = f"{label} #{n}"
            n += 1
        labels.add(exp.label)
        out.append(exp)
    return out


def _parse_one(p: _Parser, i: int, raw: dict) -> Expectation:
    checks = [k for k in raw if k in CHECK_KEYS]
    if "gx" in raw:
        checks = ["gx"]
    else:
        unknown = [k for k in raw if k not in CHECK_KEYS and k not in MODIFIERS]
        if unknown:
            raise p.err(
                i,
                unknown[0],
                Msg("unknown expectation key %(key)s", key=repr(unknown[0])),
                hint=_supported(),
            )
    if not checks:
        raise p.err(i, None, Msg("no check in %(value)s", value=repr(raw)), hint=_supported())
    if len(checks) > 1:
        raise p.err(
            i,
            checks[1],
            Msg("one check per entry, found %(checks)s", checks=", ".join(checks)),
            hint="split it into one list entry per check",
        )
    key = checks[0]
    mostly = raw.get("mostly", 1.0)
    if not isinstance(mostly, int | float) or isinstance(mostly, bool) or not 0 < mostly <= 1:
        raise p.err(
            i,
            "mostly",
            Msg("mostly must be a number in (0, 1], got %(value)s", value=repr(mostly)),
            hint="e.g. mostly: 0.95",
        )
    if key in _NO_MOSTLY and "mostly" in raw:
        raise p.err(
            i,
            "mostly",
            Msg(
                "mostly does not apply to '%(key)s' (it is one number for the whole dataset)",
                key=key,
            ),
            hint="mostly works on value checks: not_null, between, in_set, regex, length, type, unique, in_dataset",
        )
    if "strict" in raw and key not in ("between", "min", "max", "mean"):
        raise p.err(
            i, "strict", Msg("strict applies to between/min/max/mean, not to '%(key)s'", key=key)
        )
    exp = _BUILDERS[key](p, i, {k: v for k, v in raw.items() if k != "table"})
    if raw.get("table"):
        exp.meta["table"] = raw["table"]
    if mostly < 1 and key not in _NO_MOSTLY:
        exp.mostly = float(mostly)
        exp.kwargs["mostly"] = float(mostly)
    if raw.get("description"):
        exp.meta["description"] = str(raw["description"])
    return exp


def _flag(p: _Parser, i: int, raw: dict, key: str) -> None:
    if raw[key] is not True:
        raise p.err(
            i,
            key,
            Msg("'%(key)s' takes only true, got %(value)s", key=key, value=repr(raw[key])),
            hint=f"write '{key}: true' or remove the entry",
        )


def _not_null(p: _Parser, i: int, raw: dict) -> Expectation:
    _flag(p, i, raw, "not_null")
    col = p.column(i, raw, "not_null")
    return Expectation(
        i,
        "not_null",
        "expect_column_values_to_not_be_null",
        {"column": col},
        ROW,
        f"{col} not_null",
    )


def _between(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "between", ("number", "temporal"))
    lo, hi = p.between(i, "between", raw["between"])
    kwargs: dict[str, Any] = {"column": col, "min_value": lo, "max_value": hi}
    if raw.get("strict"):
        kwargs.update(strict_min=True, strict_max=True)
    return Expectation(
        i,
        "between",
        "expect_column_values_to_be_between",
        kwargs,
        ROW,
        f"{col} between [{_fmt(lo)}, {_fmt(hi)}]" + (" strict" if raw.get("strict") else ""),
    )


def _in_set(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "in_set")
    values = raw["in_set"]
    if not isinstance(values, list | tuple) or not values:
        raise p.err(
            i, "in_set", Msg("'in_set' must be a non-empty list, got %(value)s", value=repr(values))
        )
    short = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
    return Expectation(
        i,
        "in_set",
        "expect_column_values_to_be_in_set",
        {"column": col, "value_set": list(values)},
        ROW,
        f"{col} in_set [{short}]",
    )


def _regex(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "regex", ("string",))
    rx = raw["regex"]
    try:
        re.compile(rx)
    except (re.error, TypeError) as e:
        raise p.err(
            i,
            "regex",
            Msg(
                "not a valid regular expression %(regex)s: %(error)s", regex=repr(rx), error=str(e)
            ),
            hint="quote it in single quotes in YAML",
        ) from None
    return Expectation(
        i,
        "regex",
        "expect_column_values_to_match_regex",
        {"column": col, "regex": rx},
        ROW,
        f"{col} regex {rx}",
    )


def _length(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "length", ("string",))
    v = raw["length"]
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 0:
            raise p.err(i, "length", Msg("length must be >= 0, got %(value)s", value=v))
        return Expectation(
            i,
            "length",
            "expect_column_value_lengths_to_equal",
            {"column": col, "value": v},
            ROW,
            f"{col} length {v}",
        )
    lo, hi = p.between(i, "length", v)
    for b in (lo, hi):
        if b is not None and (not isinstance(b, int) or b < 0):
            raise p.err(
                i,
                "length",
                Msg("length bounds must be whole numbers >= 0, got %(value)s", value=repr(b)),
            )
    return Expectation(
        i,
        "length",
        "expect_column_value_lengths_to_be_between",
        {"column": col, "min_value": lo, "max_value": hi},
        ROW,
        f"{col} length [{_fmt(lo)}, {_fmt(hi)}]",
    )


def _type(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "type")
    t = raw["type"]
    if t not in TYPE_LISTS:
        raise p.err(
            i,
            "type",
            Msg(
                "type %(type)s is not one of %(choices)s",
                type=repr(t),
                choices=", ".join(TYPE_LISTS),
            ),
        )
    return Expectation(
        i,
        "type",
        "expect_column_values_to_be_in_type_list",
        {"column": col, "type_list": list(TYPE_LISTS[t])},
        ROW,
        f"{col} type {t}",
        meta={"nsdx_type": t},
    )


def _unique(p: _Parser, i: int, raw: dict) -> Expectation:
    _flag(p, i, raw, "unique")
    if "columns" in raw:
        cols = raw["columns"]
        if not isinstance(cols, list) or len(cols) < 2 or not all(isinstance(c, str) for c in cols):
            raise p.err(
                i,
                "columns",
                Msg(
                    "'columns' must list two or more column names, got %(value)s", value=repr(cols)
                ),
                hint="for one column write 'column: name'",
            )
        for c in cols:
            p.column(i, {"column": c}, "unique")
        return Expectation(
            i,
            "unique",
            "expect_compound_columns_to_be_unique",
            {"column_list": list(cols)},
            DATASET,
            f"({', '.join(cols)}) unique",
        )
    col = p.column(i, raw, "unique")
    return Expectation(
        i, "unique", "expect_column_values_to_be_unique", {"column": col}, DATASET, f"{col} unique"
    )


def _row_count(p: _Parser, i: int, raw: dict) -> Expectation:
    lo, hi = p.nested_between(i, "row_count", raw["row_count"])
    for b in (lo, hi):
        if b is not None and (not isinstance(b, int) or b < 0):
            raise p.err(
                i,
                "row_count",
                Msg("row_count bounds must be whole numbers >= 0, got %(value)s", value=repr(b)),
            )
    return Expectation(
        i,
        "row_count",
        "expect_table_row_count_to_be_between",
        {"min_value": lo, "max_value": hi},
        DATASET,
        f"row_count between [{_fmt(lo)}, {_fmt(hi)}]",
    )


def _aggregate(stat: str):
    def build(p: _Parser, i: int, raw: dict) -> Expectation:
        kinds = ("number",) if stat == "mean" else ("number", "temporal")
        col = p.column(i, raw, stat, kinds)
        lo, hi = p.nested_between(i, stat, raw[stat])
        kwargs: dict[str, Any] = {"column": col, "min_value": lo, "max_value": hi}
        if raw.get("strict"):
            kwargs.update(strict_min=True, strict_max=True)
        return Expectation(
            i,
            stat,
            f"expect_column_{stat}_to_be_between",
            kwargs,
            DATASET,
            f"{col} {stat} between [{_fmt(lo)}, {_fmt(hi)}]",
        )

    return build


def _distinct(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "distinct")
    lo, hi = p.nested_between(i, "distinct", raw["distinct"])
    return Expectation(
        i,
        "distinct",
        "expect_column_unique_value_count_to_be_between",
        {"column": col, "min_value": lo, "max_value": hi},
        DATASET,
        f"{col} distinct between [{_fmt(lo)}, {_fmt(hi)}]",
    )


def _freshness(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "freshness", ("temporal",))
    v = raw["freshness"]
    age = v.get("max_age_days") if isinstance(v, dict) else None
    if (
        not isinstance(v, dict)
        or set(v) != {"max_age_days"}
        or not isinstance(age, int | float)
        or age <= 0
    ):
        raise p.err(
            i,
            "freshness",
            Msg("'freshness' must be {max_age_days: N} with N > 0, got %(value)s", value=repr(v)),
        )
    # min_value is filled in with (now - max_age_days) when the check runs
    return Expectation(
        i,
        "freshness",
        "expect_column_max_to_be_between",
        {"column": col, "min_value": None, "max_value": None},
        DATASET,
        f"{col} freshness {age:g} days",
        meta={"nsdx_check": "freshness", "max_age_days": age},
    )


def _in_dataset(p: _Parser, i: int, raw: dict) -> Expectation:
    col = p.column(i, raw, "in_dataset")
    v = raw["in_dataset"]
    if (
        not isinstance(v, dict)
        or set(v) != {"dataset", "column"}
        or not all(isinstance(x, str) and x for x in v.values())
    ):
        raise p.err(
            i,
            "in_dataset",
            Msg(
                "'in_dataset' must be {dataset: <id>, column: <name>}, got %(value)s",
                value=repr(v),
            ),
        )
    return Expectation(
        i,
        "in_dataset",
        "expect_column_values_to_be_in_dataset",
        {"column": col, "dataset": v["dataset"], "dataset_column": v["column"]},
        DATASET,
        f"{col} in {v['dataset']}.{v['column']}",
        meta={"nsdx_check": "referential", "note": "nsdx extension; computed with DuckDB"},
    )


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _gx(p: _Parser, i: int, raw: dict) -> Expectation:
    name = raw["gx"]
    if not isinstance(name, str) or not name:
        raise p.err(
            i,
            "gx",
            Msg("'gx' must name an expectation, got %(value)s", value=repr(name)),
            hint="e.g. gx: expect_column_stdev_to_be_between",
        )
    if not name.startswith("expect_"):
        name = _CAMEL.sub("_", name).lower()
    kwargs = {k: v for k, v in raw.items() if k not in ("gx", "description", "table")}
    if _has_suite_parameter(kwargs):  # great-expectations would fail on it mid-validation
        raise p.err(
            i,
            "gx",
            Msg("suite parameters ($PARAMETER) are not supported: write the value itself"),
        )
    if p.schema is not None:
        for k in ("column", "column_A", "column_B"):
            if k in kwargs:
                p.column(i, {"column": kwargs[k]}, "gx")
        for c in kwargs.get("column_list") or []:
            p.column(i, {"column": c}, "gx")
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs] + list(
        kwargs.get("column_list") or []
    )
    # the level (row or gx_full) is decided by great-expectations' class, see validation.gx
    return Expectation(i, "gx", name, kwargs, GX_FULL, f"{name}({', '.join(cols)})")


def _has_suite_parameter(v: Any, depth: int = 0) -> bool:
    """Does ``v`` hold great-expectations' ``{"$PARAMETER": ...}`` anywhere (a value looked
    up at validation time, in a table nsdx never gives it)?"""
    if depth > 64:  # deeper than any expectation's arguments: refused as one
        return True
    if isinstance(v, dict):
        return "$PARAMETER" in v or any(_has_suite_parameter(x, depth + 1) for x in v.values())
    if isinstance(v, list | tuple):
        return any(_has_suite_parameter(x, depth + 1) for x in v)
    return False


_BUILDERS = {
    "not_null": _not_null,
    "between": _between,
    "in_set": _in_set,
    "regex": _regex,
    "length": _length,
    "type": _type,
    "unique": _unique,
    "row_count": _row_count,
    "min": _aggregate("min"),
    "max": _aggregate("max"),
    "mean": _aggregate("mean"),
    "distinct": _distinct,
    "freshness": _freshness,
    "in_dataset": _in_dataset,
    "gx": _gx,
}
