"""Excel (.xlsx) reader: openpyxl in read-only mode, rows turned into Arrow batches.

* ``sheet``: a sheet name, or a 0-based index; default the first sheet.
* The first non-empty row is the header (names normalised as for CSV: ``column_N`` for empty
  cells, ``_2`` suffixes for duplicates). Columns right of the last non-empty header cell are
  ignored when empty; a value there is a SourceError naming the row.
* Rows whose cells are all empty are skipped.
* Cell types are kept: numbers, booleans, text; a datetime cell is a timestamp, and a column
  whose date cells all have a date-only number format (no h/m/s) and midnight times is a date.
  Text columns get the same inference as CSV text (codes stay strings, dates are recognised).
  Mixed columns (numbers and text) are strings.
* Error line numbers are sheet row numbers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from ..errors import SchemaMismatch, SourceError
from ..schema import INFER_ROWS, ColumnPlan, mismatch, missing_columns, plan_column
from ..spec import FieldSpec, SourceSpec
from . import SourceTable
from .csv import normalise_names
from .parquet import finish_batch

_TIME_FMT = re.compile(r"[hs]|(?<![a-z])AM/PM", re.IGNORECASE)


def _open_sheet(path: Path, sheet: str | int | None):
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many types for a broken file
        raise SourceError(
            f"not a readable .xlsx workbook: {e}", file=str(path), hint="check source.format"
        ) from None
    names = wb.sheetnames
    if sheet is None:
        ws = wb[names[0]]
    elif isinstance(sheet, int) or (
        isinstance(sheet, str) and re.fullmatch(r"[0-9]{1,6}", sheet) and sheet not in names
    ):
        idx = int(sheet)
        if not 0 <= idx < len(names):
            wb.close()
            raise SourceError(
                f"sheet index {idx} out of range; the workbook has {names}",
                file=str(path),
                hint="source.sheet is a sheet name or a 0-based index",
            )
        ws = wb[names[idx]]
    elif sheet in names:
        ws = wb[sheet]
    else:
        wb.close()
        raise SourceError(
            f"no sheet named {sheet!r}; the workbook has {names}",
            file=str(path),
            hint="fix source.sheet in datasets.yaml",
        )
    return wb, ws


def _rows(ws) -> Iterator[tuple[int, tuple, tuple]]:
    """(sheet row number, values, number formats) for every row."""
    for n, row in enumerate(ws.iter_rows(), 1):
        values = tuple(c.value for c in row)
        fmts = tuple(getattr(c, "number_format", None) for c in row)
        rownum = next((c.row for c in row if getattr(c, "row", None)), n)
        yield rownum, values, fmts


def _py_type(values: Sequence, formats: Sequence) -> pa.DataType | None:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds <= {bool}:
        return pa.bool_()
    if kinds <= {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds <= {dt.datetime, dt.date}:
        date_only = all(
            not isinstance(v, dt.datetime)
            or (v.time() == dt.time() and not _TIME_FMT.search(f or ""))
            for v, f in zip(values, formats, strict=True)
            if v is not None
        )
        return pa.date32() if date_only else pa.timestamp("us")
    if kinds <= {dt.time}:
        return pa.time64("us")
    if kinds <= {str}:
        return pa.string()
    return pa.string()  # mixed: kept as text


def _to_array(values: list, t: pa.DataType) -> pa.Array:
    if pa.types.is_string(t):
        return pa.array([None if v is None else _text(v) for v in values], pa.string())
    if pa.types.is_date(t):
        values = [v.date() if isinstance(v, dt.datetime) else v for v in values]
    if pa.types.is_floating(t):
        values = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values]
    return pa.array(values, t)


def _text(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    return str(v)


def read_xlsx_source(
    source: SourceSpec, files: list[Path], fields: tuple[FieldSpec, ...], batch_rows: int
) -> list[SourceTable]:
    first = files[0]
    wb, ws = _open_sheet(first, source.sheet)
    try:
        rows = _rows(ws)
        header = None
        for _n, values, _f in rows:
            if any(v not in (None, "") for v in values):
                header = values
                break
        if header is None:
            raise SourceError("the sheet is empty (no header row)", file=str(first))
        width = max(i for i, v in enumerate(header) if v not in (None, "")) + 1
        names = normalise_names([_text(v) if v is not None else "" for v in header[:width]])
        sample = []
        for n, values, fmts in rows:
            if any(v not in (None, "") for v in values):
                sample.append((n, values, fmts))
            if len(sample) >= INFER_ROWS:
                break
    finally:
        wb.close()
    err = missing_columns(fields, names, file=str(first))
    if err is not None:
        raise err
    declared = {f.name: f for f in fields}
    plans: list[ColumnPlan] = []
    for i, name in enumerate(names):
        col = [r[1][i] if i < len(r[1]) else None for r in sample]
        col_fmts = [r[2][i] if i < len(r[2]) else None for r in sample]
        t = _py_type(col, col_fmts) or pa.string()
        strings = _to_array(col, pa.string()) if pa.types.is_string(t) else None
        spec = declared.get(name)
        if spec is not None and spec.type:
            p = plan_column(name, strings, spec, native=False, day_first=source.day_first)
            plans.append(ColumnPlan(name, p.type, t, p.formats, None, "declared", len(sample)))
        elif strings is not None:
            p = plan_column(
                name,
                strings,
                spec,
                native=False,
                day_first=source.day_first,
                date_formats=source.date_formats,
            )
            plans.append(ColumnPlan(name, p.type, t, p.formats, None, "inferred", len(sample)))
        else:
            plans.append(ColumnPlan(name, t, t, origin="inferred", sample_rows=len(sample)))
    schema = pa.schema([pa.field(p.name, p.type) for p in plans])
    chunk = max(1, min(batch_rows, 65_536))

    def batches() -> Iterator[pa.RecordBatch]:
        for path in files:
            yield from _iter_sheet(path, source, names, plans, schema, chunk)

    return [SourceTable(None, schema, batches(), [str(p) for p in files], None)]


def _iter_sheet(path, source, names, plans, schema, chunk) -> Iterator[pa.RecordBatch]:
    wb, ws = _open_sheet(path, source.sheet)
    width = len(names)
    try:
        rows = _rows(ws)
        for _n, values, _f in rows:
            if any(v not in (None, "") for v in values):
                got = [_text(v) if v is not None else "" for v in values]
                got = got[: max(i for i, v in enumerate(got) if v) + 1]
                if normalise_names(got) != names:
                    raise SourceError(
                        f"header {normalise_names(got)} differs from the first file's {names}",
                        file=str(path),
                        hint="every file matched by source.path must have the same header",
                    )
                break
        buf: list[tuple[int, tuple]] = []
        for n, values, _f in rows:
            if not any(v not in (None, "") for v in values):
                continue
            extra = [v for v in values[width:] if v not in (None, "")]
            if extra:
                raise SourceError(
                    f"row has values right of the last header column: {extra[:5]}",
                    file=str(path),
                    line=n,
                    hint="give those columns a header, or delete the stray cells",
                )
            buf.append((n, values))
            if len(buf) >= chunk:
                yield _batch(buf, path, plans, schema, width)
                buf = []
        if buf:
            yield _batch(buf, path, plans, schema, width)
    finally:
        wb.close()


def _batch(buf, path, plans, schema, width) -> pa.RecordBatch:
    arrays = []
    for i, p in enumerate(plans):
        col = [v[i] if i < len(v) else None for _n, v in buf]
        try:
            arrays.append(_to_array(col, p.read_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            for j, v in enumerate(col):
                try:
                    _to_array([v], p.read_type)
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                    bad = [x for x in col[j:] if _bad(x, p.read_type)][:5]
                    raise mismatch(p, bad, file=str(path), line=buf[j][0]) from None
            raise
    raw = pa.RecordBatch.from_arrays(arrays, names=[p.name for p in plans])
    rownums = [n for n, _v in buf]
    try:
        return finish_batch(raw, plans, schema, label=str(path), first_row=1)
    except SchemaMismatch as e:
        # finish_batch numbers rows from first_row; map the batch index to the sheet row
        if e.line is not None and e.values is not None:
            p = next(p for p in plans if p.name == e.column)
            raise mismatch(p, e.values, file=str(path), line=rownums[e.line - 1]) from None
        raise


def _bad(v, t) -> bool:
    try:
        _to_array([v], t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return True
    return False
