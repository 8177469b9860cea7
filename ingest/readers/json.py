"""JSON and NDJSON readers.

* ``ndjson``: one object per line, streamed with ``pyarrow.json.open_json``.
* ``json``: a top-level array of objects, or an object holding the records in its **first
  list-valued member** (``{"total": 2, "data": [...]}``; members after that list are not read).
  It is streamed too: ``json.JSONDecoder.raw_decode`` finds each element (C speed, one element
  in memory at a time) and chunks of elements go through pyarrow's JSON parser. The limit is
  one element: an element larger than memory cannot be read.

Types come from the first rows (pyarrow's JSON inference; nested objects stay structs, arrays
lists). Top-level string columns are checked for dates and timestamps (numbers in strings stay
strings: in JSON the quotes are deliberate). A column that is null in every sampled row is a
string column. The schema is then fixed: a later value of another JSON type, or a key that is
not in the schema, is an error naming the line (NDJSON) or element number (JSON array).

Declared columns absent from the sampled rows are kept (JSON records may omit keys); if such a
column never appears in the whole file, the end of the stream raises SchemaMismatch.
"""

from __future__ import annotations

import io
import json as pyjson
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..errors import SchemaMismatch, SourceError
from ..schema import INFER_ROWS, ColumnPlan, arrow_type, infer_datetime, mismatch, plan_column
from ..spec import FieldSpec, SourceSpec
from . import SourceTable
from .encoding import Opener, decode_error, detect_encoding, normalise_encoding
from .parquet import finish_batch

SAMPLE_BYTES = 1 << 20
# pyarrow's streaming JSON reader reads up to 32 blocks ahead whatever the consumer's pace, so
# the block size bounds memory (32 MiB blocks held the first GiB of a file); 4 MiB still fits
# large objects (a record must fit in one block).
MAX_BLOCK_BYTES = 4 << 20
_ROW_RE = re.compile(r"in row (\d+)")
_JSON_NATIVE = {"string", "integer", "float", "boolean"}


class _Utf8Stream(io.RawIOBase):
    """Transcodes a text stream to UTF-8 bytes for pyarrow (non-UTF-8 JSON, rare)."""

    def __init__(self, raw, encoding: str) -> None:
        self._text = io.TextIOWrapper(raw, encoding=encoding, errors="strict")
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while len(self._pending) < len(b):
            chunk = self._text.read(1 << 16)
            if not chunk:
                break
            self._pending += chunk.encode("utf-8")
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._text.close()
        super().close()


def _open_utf8(path: Path, encoding: str):
    f = open(path, "rb")
    if encoding == "utf-8-sig":
        f.seek(3)
    elif encoding != "utf-8":
        return _Utf8Stream(f, encoding)
    return f


def _encoding(source: SourceSpec, path: Path) -> str:
    if source.encoding and source.encoding.lower() != "auto":
        return normalise_encoding(source.encoding)
    return detect_encoding(path)


# ---------------------------------------------------------------------------------------------
# schema from a sample


_CHANGED_RE = re.compile(r"Column\((/[^)]*)\) changed from (\w+) to (\w+) in row (\d+)")


def _sample_error(e: Exception, label: str, row_word: str) -> SourceError:
    m = _CHANGED_RE.search(str(e))
    if m:
        col, was, now, row = m.group(1).lstrip("/"), m.group(2), m.group(3), int(m.group(4))
        return SourceError(
            f"key {col!r} holds a {was} in earlier records and a {now} in {row_word} "
            f"{row + 1}; a column must keep one JSON type",
            file=label,
            line=row + 1,
            column=col,
            hint="fix the file so the key always holds the same JSON type (e.g. quote every "
            "value to make it text)",
        )
    m = _ROW_RE.search(str(e))
    return SourceError(f"not valid JSON: {e}", file=label, line=int(m.group(1)) + 1 if m else None)


def _read_schema(
    sample: bytes, label: str, fields: Sequence[FieldSpec], row_word: str = "line"
) -> pa.Schema:
    try:
        inferred = pa_json.read_json(
            io.BytesIO(sample), parse_options=pa_json.ParseOptions(newlines_in_values=True)
        ).schema
    except pa.ArrowInvalid as e:
        raise _sample_error(e, label, row_word) from None
    declared = {f.name: f for f in fields}
    out = []
    for f in inferred:
        t = f.type
        if pa.types.is_null(t) or pa.types.is_timestamp(t):
            t = pa.string()  # timestamps: re-inferred from the strings by ingest.schema
        if (dec := _decimal_type(declared.get(f.name))) is not None:
            t = arrow_type(dec)  # pyarrow parses JSON numbers exactly
        out.append(pa.field(f.name, t))
    for spec in fields:
        if spec.name not in inferred.names:
            native = spec.type in _JSON_NATIVE or _decimal_type(spec) is not None
            t = arrow_type(spec.type) if spec.type is not None and native else pa.string()
            out.append(pa.field(spec.name, t))
    return pa.schema(out)


def _opener(path: str | Path) -> Opener:
    """Opens ``path`` again (bound now, not when called: a loop's variable moves on)."""
    return lambda: open(path, "rb")


def _decimal_type(spec: FieldSpec | None) -> str | None:
    """The declared ``decimal(p,s)`` type of ``spec``, or None."""
    t = spec.type if spec is not None else None
    return t if t and str(t).startswith("decimal") else None


INT64_LIMIT = float(2**63)


def check_int_range(batch: pa.RecordBatch, plans: Sequence[ColumnPlan], label: str, first: int):
    """An inferred float column holding a number beyond int64 (a JSON integer such as
    99999999999999999999999 that pyarrow turned into the double 1e+23) is an error: its
    digits would be lost. Declared ``decimal`` or ``float`` columns are the provider's choice."""
    for p in plans:
        if p.origin != "inferred" or not pa.types.is_floating(p.type):
            continue
        col = pc.abs(batch.column(p.name))
        top = pc.max(col).as_py()
        if top is not None and top >= INT64_LIMIT:
            i = pc.index(pc.greater_equal(col, INT64_LIMIT), True).as_py()
            raise SourceError(
                f"a number beyond the 64-bit integer range ({batch.column(p.name)[i].as_py():g}) "
                "would lose its digits as a float",
                file=label,
                line=first + i,
                column=p.name,
                hint=f"declare `{{name: {p.name}, type: decimal(38,0)}}` (exact) or `type: float` "
                "or `type: string` in datasets.yaml's schema",
            )


def _plans(
    read_schema: pa.Schema, sample: pa.Table, fields: Sequence[FieldSpec], source: SourceSpec
) -> list[ColumnPlan]:
    declared = {f.name: f for f in fields}
    plans = []
    for fld in read_schema:
        col = sample.column(fld.name) if fld.name in sample.column_names else None
        strings = col.combine_chunks() if col is not None and pa.types.is_string(fld.type) else None
        spec = declared.get(fld.name)
        if spec is not None and spec.type:
            p = plan_column(fld.name, strings, spec, native=False, day_first=source.day_first)
            plans.append(
                ColumnPlan(p.name, p.type, fld.type, p.formats, None, "declared", len(sample))
            )
            continue
        if strings is not None:
            inf = infer_datetime(
                strings, day_first=source.day_first, date_formats=source.date_formats
            )
            if inf is not None:
                plans.append(
                    ColumnPlan(
                        fld.name, inf.type, fld.type, inf.formats, None, "inferred", len(sample)
                    )
                )
                continue
        plans.append(
            ColumnPlan(fld.name, fld.type, fld.type, origin="inferred", sample_rows=len(sample))
        )
    return plans


def _parse(data: bytes, schema: pa.Schema | None) -> pa.Table:
    opts = pa_json.ParseOptions(
        explicit_schema=schema,
        newlines_in_values=True,
        unexpected_field_behavior="error" if schema is not None else "infer",
    )
    return pa_json.read_json(io.BytesIO(data), parse_options=opts)


# ---------------------------------------------------------------------------------------------
# locating a bad record (error path only)


def _fits(value, t: pa.DataType) -> bool:
    if value is None:
        return True
    if pa.types.is_string(t):
        return isinstance(value, str)
    if pa.types.is_boolean(t):
        return isinstance(value, bool)
    if pa.types.is_integer(t):
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if pa.types.is_floating(t):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if pa.types.is_struct(t):
        return isinstance(value, dict)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return isinstance(value, list)
    return True


def _check_records(
    records: Sequence[object], schema: pa.Schema, plans: Sequence[ColumnPlan]
) -> tuple[int, str, list] | None:
    """(index, column, sample values) of the first record that does not fit ``schema``."""
    types = {f.name: f.type for f in schema}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            return i, "", [rec]
        for k, v in rec.items():
            if k not in types:
                return i, k, [v]
            if not _fits(v, types[k]):
                bad = [v]
                for later in records[i + 1 :]:
                    if isinstance(later, dict) and not _fits(later.get(k), types[k]):
                        if later.get(k) not in bad:
                            bad.append(later.get(k))
                    if len(bad) == 5:
                        break
                return i, k, bad
    return None


def _record_error(
    found: tuple[int, str, list] | None,
    plans: Sequence[ColumnPlan],
    *,
    label: str,
    line: int | None,
    err: Exception,
) -> SourceError:
    if found is None:
        return SourceError(f"cannot read records: {err}", file=label, line=line)
    _, column, values = found
    plan = next((p for p in plans if p.name == column), None)
    if plan is None:
        return SourceError(
            f"key {column!r} is not in the first {INFER_ROWS} records"
            if column
            else "record is not a JSON object",
            file=label,
            line=line,
            column=column or None,
            values=values,
            hint=f"declare {column!r} in datasets.yaml's schema" if column else None,
        )
    return mismatch(plan, values, file=label, line=line)


class _Presence:
    """Tracks declared columns missing from the sample until a value shows up."""

    def __init__(self, names: Sequence[str], label: str, file_columns: Sequence[str]) -> None:
        self.pending = set(names)
        self.label, self.file_columns = label, list(file_columns)

    def see(self, batch: pa.RecordBatch) -> None:
        for name in list(self.pending):
            if batch.column(name).null_count < batch.num_rows:
                self.pending.discard(name)

    def check(self) -> None:
        if self.pending:
            missing = sorted(self.pending)
            raise SchemaMismatch(
                f"declared column(s) {', '.join(map(repr, missing))} not found in any record; "
                "records have: " + ", ".join(map(repr, self.file_columns)),
                file=self.label,
                column=missing[0],
                hint="fix the column name in datasets.yaml's schema",
            )


# ---------------------------------------------------------------------------------------------
# NDJSON


def _ndjson_sample(path: Path, encoding: str) -> bytes:
    with _open_utf8(path, encoding) as f:
        data = f.read(SAMPLE_BYTES + 1)
    if len(data) > SAMPLE_BYTES:
        data = data[: data.rfind(b"\n") + 1] or data
    lines = data.splitlines(keepends=True)[:INFER_ROWS]
    return b"".join(lines)


def _ndjson_lines(path: Path, encoding: str, start: int, count: int) -> tuple[list, list[int]]:
    """Records ``start``..``start+count`` (0-based, blank lines not counted) and their lines."""
    records, lines = [], []
    n = 0
    with open(path, encoding=encoding, errors="replace") as f:
        for lineno, text in enumerate(f, 1):
            if not text.strip():
                continue
            if n >= start:
                try:
                    records.append(pyjson.loads(text))
                except ValueError:
                    records.append(_Invalid(text))
                lines.append(lineno)
                if len(records) >= count:
                    break
            n += 1
    return records, lines


class _Invalid:
    def __init__(self, text: str) -> None:
        self.text = text[:80]

    def __repr__(self) -> str:
        return repr(self.text)


def read_ndjson_source(
    source: SourceSpec, files: list[Path], fields: tuple[FieldSpec, ...], batch_rows: int
) -> list[SourceTable]:
    encoding = _encoding(source, files[0])
    label = str(files[0])
    sample_bytes = _ndjson_sample(files[0], encoding)
    read_schema = _read_schema(sample_bytes, label, fields)
    sample = (
        _parse(sample_bytes, read_schema) if sample_bytes.strip() else read_schema.empty_table()
    )
    plans = _plans(read_schema, sample, fields, source)
    schema = pa.schema([pa.field(p.name, p.type) for p in plans])
    absent = [f.name for f in fields if f.name not in sample.column_names]
    avg = max(1, len(sample_bytes) // max(1, sample.num_rows))

    def batches() -> Iterator[pa.RecordBatch]:
        presence = _Presence(absent, label, sample.column_names)
        for path in files:
            enc = _encoding(source, path) if path != files[0] else encoding
            block = int(min(max(avg * batch_rows, 64 << 10), MAX_BLOCK_BYTES))
            delivered = 0
            f = _open_utf8(path, enc)
            try:
                reader = pa_json.open_json(
                    f,
                    read_options=pa_json.ReadOptions(block_size=block),
                    parse_options=pa_json.ParseOptions(
                        explicit_schema=read_schema, unexpected_field_behavior="error"
                    ),
                )
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    except pa.ArrowInvalid as e:
                        m = _ROW_RE.search(str(e))
                        start = delivered + (int(m.group(1)) if m else 0)
                        recs, lines = _ndjson_lines(path, enc, start if m else delivered, block)
                        found = _check_records(recs, read_schema, plans)
                        line = lines[found[0]] if found and lines else (lines[0] if lines else None)
                        raise _record_error(
                            found, plans, label=str(path), line=line, err=e
                        ) from None
                    out = finish_batch(
                        batch, plans, schema, label=str(path), first_row=delivered + 1
                    )
                    check_int_range(out, plans, str(path), delivered + 1)
                    presence.see(out)
                    delivered += batch.num_rows
                    yield out
            except UnicodeDecodeError:
                raise decode_error(_opener(path), enc, str(path)) from None
            finally:
                f.close()
        presence.check()

    return [SourceTable(None, schema, batches(), [str(p) for p in files], encoding)]


# ---------------------------------------------------------------------------------------------
# JSON array


_WS = re.compile(r"[ \t\n\r]*")


class _ArrayScanner:
    """Yields the raw text of each record of a top-level JSON array (or the first list member
    of a top-level object), reading the file in 1 MiB pieces."""

    def __init__(self, text: io.TextIOBase, label: str) -> None:
        self._text, self.label = text, label
        self._buf, self._pos, self._eof = "", 0, False
        self._lines_before = 1  # line number at the start of _buf
        self._decoder = pyjson.JSONDecoder()

    def _fill(self) -> None:
        chunk = self._text.read(1 << 20)
        if not chunk:
            self._eof = True
        self._lines_before += self._buf.count("\n", 0, self._pos)
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0

    def _peek(self) -> str:
        while True:
            ws = _WS.match(self._buf, self._pos)  # always matches (maybe nothing)
            self._pos = ws.end() if ws else self._pos
            if self._pos < len(self._buf) or self._eof:
                return self._buf[self._pos : self._pos + 1]
            self._fill()

    def _line(self) -> int:
        return self._lines_before + self._buf.count("\n", 0, self._pos)

    def _error(self, what: str) -> SourceError:
        return SourceError(f"not valid JSON: {what}", file=self.label, line=self._line())

    def _value(self) -> tuple[object, str]:
        self._peek()
        while True:
            try:
                obj, end = self._decoder.raw_decode(self._buf, self._pos)
            except pyjson.JSONDecodeError as e:
                if self._eof:
                    raise self._error(e.msg) from None
                self._fill()
                continue
            if end >= len(self._buf) and not self._eof:
                self._fill()  # a number may continue in the next piece
                continue
            raw = self._buf[self._pos : end]
            self._pos = end
            return obj, raw

    def _expect(self, ch: str) -> None:
        if self._peek() != ch:
            raise self._error(f"expected {ch!r}")
        self._pos += 1

    def records(self) -> Iterator[tuple[object, str]]:
        first = self._peek()
        if first == "{":
            self._pos += 1
            while True:
                if self._peek() == "}":
                    raise self._error("the top-level object has no list of records")
                key, _ = self._value()
                self._expect(":")
                if self._peek() == "[":
                    break
                self._value()
                if self._peek() == ",":
                    self._pos += 1
        elif first != "[":
            raise self._error("expected a top-level array of objects or an object with one list")
        self._expect("[")
        if self._peek() == "]":
            return
        while True:
            yield self._value()
            nxt = self._peek()
            if nxt == ",":
                self._pos += 1
                continue
            if nxt == "]":
                return
            raise self._error("expected ',' or ']' between records")


def _json_chunks(path: Path, encoding: str, size: int) -> Iterator[tuple[list, list[str]]]:
    with open(path, encoding=encoding, errors="strict") as text:
        scanner = _ArrayScanner(text, str(path))
        objs, raws = [], []
        for obj, raw in scanner.records():
            objs.append(obj)
            raws.append(raw)
            if len(raws) >= size:
                yield objs, raws
                objs, raws = [], []
        if raws:
            yield objs, raws


def read_json_source(
    source: SourceSpec, files: list[Path], fields: tuple[FieldSpec, ...], batch_rows: int
) -> list[SourceTable]:
    encoding = _encoding(source, files[0])
    label = str(files[0])
    first = next(_json_chunks(files[0], encoding, INFER_ROWS), ([], []))
    sample_bytes = "\n".join(first[1]).encode("utf-8")
    read_schema = _read_schema(sample_bytes, label, fields, "record") if first[1] else pa.schema([])
    sample = _parse(sample_bytes, read_schema) if first[1] else read_schema.empty_table()
    plans = _plans(read_schema, sample, fields, source)
    schema = pa.schema([pa.field(p.name, p.type) for p in plans])
    absent = [f.name for f in fields if f.name not in sample.column_names]
    chunk = max(1, min(batch_rows, 65_536))

    def batches() -> Iterator[pa.RecordBatch]:
        presence = _Presence(absent, label, sample.column_names)
        for path in files:
            enc = _encoding(source, path) if path != files[0] else encoding
            row = 1
            try:
                for objs, raws in _json_chunks(path, enc, chunk):
                    try:
                        table = _parse("\n".join(raws).encode("utf-8"), read_schema)
                    except pa.ArrowInvalid as e:
                        found = _check_records(objs, read_schema, plans)
                        line = row + (found[0] if found else 0)
                        raise _record_error(
                            found, plans, label=str(path), line=line, err=e
                        ) from None
                    for batch in table.to_batches():
                        out = finish_batch(batch, plans, schema, label=str(path), first_row=row)
                        check_int_range(out, plans, str(path), row)
                        presence.see(out)
                        row += batch.num_rows
                        yield out
            except UnicodeDecodeError:
                raise decode_error(_opener(path), enc, str(path)) from None
        presence.check()

    return [SourceTable(None, schema, batches(), [str(p) for p in files], encoding)]
