"""CSV reader: pyarrow's streaming parser on the hot path, Python's csv module as the fallback.

How a file is read
------------------
1. :func:`inspect_csv` decodes the first MiB (encoding declared or detected), sniffs the
   delimiter (``,`` ``;`` tab ``|``) unless declared, skips ``skip_rows`` records, reads the
   header, and keeps up to :data:`~ingest.schema.INFER_ROWS` rows as the inference sample.
   Header names are stripped of BOM and whitespace; an **empty header name becomes
   ``column_N``** (N = 1-based position; the column is kept, never dropped, because whether
   it is empty everywhere is unknown until the end of a streamed file); duplicate names get
   ``_2``, ``_3`` ... suffixes.
2. :func:`plan_columns` decides each column's type (declared types enforced, the rest
   inferred, see :mod:`ingest.schema`).
3. The fast path streams the data with ``pyarrow.csv.open_csv`` from the byte offset just
   after the header, with explicit ``column_types`` (nothing is inferred by pyarrow) and
   ``newlines_in_values=True`` (quoted fields with line breaks). Empty fields and
   ``null_values`` are null in every column, strings included. Columns that need strptime
   formats or a ``thousands`` separator are read as strings and converted per batch.
4. Whenever the fast path stops - a short row (the header has more fields than the row: it is
   padded with nulls), a long row, a value that does not fit its type, a bad byte - reading
   restarts at the first record not yet delivered with the exact path: Python's csv module
   gives each record and its line number, short rows are padded, and chunks are converted by
   the same pyarrow converter. So errors always name the right physical line, and a ragged
   file is read completely without per-row Python work on well-formed files.

A row with more fields than the header is a SourceError naming file and line.
Batches hold about ``batch_rows`` rows (the block size is estimated from the sample).

Bounds: a field (or a physical line) longer than :data:`MAX_FIELD_CHARS` characters is an
error naming the line and the limit; a field larger than the fast path's block (a 10 MB text
cell) is read by the exact path. A quote that is never closed - it would swallow every later
line into one field - is an error naming the line where the quote opened, never a silently
shorter table.
"""

from __future__ import annotations

import codecs
import csv as pycsv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from ..errors import SourceError
from ..numbers import style_from_source
from ..repairs import Repairs
from ..schema import (
    FALSE_VALUES,
    INFER_ROWS,
    TRUE_VALUES,
    ColumnPlan,
    ConversionFailed,
    bad_mask,
    convert,
    mismatch,
    missing_columns,
    plan_column,
)
from ..spec import FieldSpec, SourceSpec
from . import SourceTable
from .encoding import (
    Opener,
    arrow_encoding,
    decode_error,
    detect_encoding,
    normalise_encoding,
)

SAMPLE_BYTES = 1 << 20
# Title rows (a report's title, date, unit) are detected when skip_rows is not declared: the
# leading rows holding at most one value, text, above a header of at least two names, none of
# them a number; at most this many. Otherwise the first row is the header.
MAX_TITLE_ROWS = 20
_NUMBER_RE = re.compile(r"^[\d\s.,+\-()%]+$")
MAX_SAMPLE_BYTES = 16 << 20
DELIMITERS = (",", ";", "\t", "|")
SLOW_CHUNK_ROWS = 65_536
# pyarrow's streaming CSV reader reads up to 32 blocks ahead in a background thread, whatever
# the consumer's pace: with 16 MiB blocks that is 512 MiB of raw text held at once (the whole
# of a smaller file). 1 MiB blocks bound the read-ahead to ~32 MiB and parse as fast; the
# pipeline gathers the small batches into bigger chunks without copying them.
MAX_BLOCK_BYTES = 1 << 20
_CONV_RE = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (.+?): invalid value '(.*)'\s*$",
    re.S,
)

# The longest field (and physical line) read: a 10 MB cell is fine, a quote left open on
# line 501 of a 10 GB file is an error long before memory runs out.
MAX_FIELD_CHARS = 64 << 20
pycsv.field_size_limit(MAX_FIELD_CHARS)


@dataclass
class CsvLayout:
    """What :func:`inspect_csv` learnt about one file."""

    label: str
    opener: Opener
    encoding: str
    delimiter: str
    names: list[str]
    data_offset: int  # byte offset of the first data record
    header_lines: int  # physical lines before the first data record (preamble + header)
    sample: list[list[str]]
    avg_row_bytes: float
    ragged: bool  # the sample has rows shorter than the header
    null_values: tuple[str, ...]
    path: Path | None = None  # a local file: the fast path reads it natively (no GIL)
    header_raw: list[str] = field(default_factory=list)  # as written, stripped
    title_rows: list[str] = field(default_factory=list)  # skipped above the header
    blank_above: int = 0  # blank rows (",,,") among the title rows
    cr_only: bool = False  # lines end in CR alone
    unnamed: list[str] = field(default_factory=list)  # columns whose header is empty


def file_opener(path: Path) -> Opener:
    return lambda: open(path, "rb")


def normalise_names(raw: Sequence[str]) -> list[str]:
    """Strip BOM/whitespace, name empty headers ``column_N``, suffix duplicates ``_2``..."""
    names: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(raw):
        name = (name or "").replace("\ufeff", "").strip() or f"column_{i + 1}"
        base, k = name, 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


class _LineCounter:
    """Iterates the lines of a text stream (``newline=''``), counting characters consumed."""

    def __init__(self, text: str) -> None:
        self._it = iter(io.StringIO(text, newline=""))
        self.chars = 0
        self.lines = 0

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> str:
        line = next(self._it)
        self.chars += len(line)
        self.lines += 1
        return line


def _read_sample(opener: Opener, encoding: str, label: str, min_lines: int) -> tuple[str, bool]:
    size = SAMPLE_BYTES
    while True:
        with opener() as f:
            raw = f.read(size + 1)
        at_eof = len(raw) <= size
        raw = raw[:size]
        try:
            text = codecs.getincrementaldecoder(encoding)("strict").decode(raw, final=at_eof)
        except UnicodeDecodeError:
            raise decode_error(opener, encoding, label) from None
        if not at_eof:
            cut = max(text.rfind("\n"), text.rfind("\r"))
            text = text[: cut + 1] if cut >= 0 else ""
        if at_eof or text.count("\n") + text.count("\r") >= min_lines or size >= MAX_SAMPLE_BYTES:
            return text, at_eof
        size *= 4


def sniff_delimiter(text: str) -> str:
    """The candidate delimiter giving the most consistent field count (>= 2) over the first
    records; ``,`` when none does."""
    head = text[:65536]
    best, best_key = ",", None
    for d in DELIMITERS:
        counts: list[int] = []
        try:
            for row in pycsv.reader(io.StringIO(head, newline=""), delimiter=d, strict=False):
                if row:
                    counts.append(len(row))
                if len(counts) >= 50:
                    break
        except pycsv.Error:
            continue
        if len(head) < len(text) and len(counts) > 1:
            counts.pop()  # the last record may be cut
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        if mode < 2:
            continue
        consistency = counts.count(mode) / len(counts)
        key = (consistency >= 0.8, mode, consistency)
        if best_key is None or key > best_key:
            best, best_key = d, key
    return best


def inspect_csv(
    opener: Opener,
    label: str,
    source: SourceSpec,
    *,
    delimiter: str | None = None,
    path: Path | None = None,
) -> CsvLayout:
    """Encoding, delimiter, header, data offset and an inference sample of one CSV file."""
    if source.encoding and source.encoding.lower() != "auto":
        encoding = normalise_encoding(source.encoding)
    else:
        encoding = detect_encoding(opener, label=label)
    text, at_eof = _read_sample(opener, encoding, label, source.skip_rows + 2)
    if not text.strip():
        raise SourceError(
            "file is empty (no header row)",
            file=label,
            hint="a CSV source needs a header row naming its columns",
        )
    delimiter = (
        delimiter or source.delimiter or sniff_delimiter(_after_lines(text, source.skip_rows))
    )
    lines = _LineCounter(text)
    reader = pycsv.reader(lines, delimiter=delimiter, strict=False)
    header: list[str] | None = None
    skipped = 0
    titles: list[list[str]] = []
    blank_above = 0
    try:
        for row in reader:
            if skipped < source.skip_rows:
                skipped += 1
                continue
            if not row:
                continue
            filled = [v.strip() for v in row if v.strip()]
            if not source.skip_rows and len(filled) <= 1:
                if filled and _NUMBER_RE.match(filled[0]):
                    titles.append(row)  # a number: data, not a title -> no titles (below)
                    blank_above = MAX_TITLE_ROWS + 1
                    break
                if filled:
                    titles.append(row)  # a title row above the header? (decided below)
                else:
                    blank_above += 1  # ",,,," above the header: a blank row
                if len(titles) + blank_above <= MAX_TITLE_ROWS:
                    continue
                break
            if (titles or blank_above) and any(_NUMBER_RE.match(v) for v in filled):
                blank_above = MAX_TITLE_ROWS + 1  # a row of data, not a header: no titles
                break
            header = row
            break  # a title row above the header? (see _title_rows)

    except pycsv.Error as e:
        raise SourceError(f"cannot parse the header: {e}", file=label) from None
    if (titles or blank_above) and (header is None or len(titles) + blank_above > MAX_TITLE_ROWS):
        # no row with two names after them: not titles, the first row is the header
        lines = _LineCounter(text)
        reader = pycsv.reader(lines, delimiter=delimiter, strict=False)
        header = next((r for r in reader if r), None)
        titles, blank_above = [], 0
    if header is None:
        raise SourceError(
            "no header row found" + (f" after skipping {source.skip_rows} rows" if skipped else ""),
            file=label,
            hint="check source.skip_rows in datasets.yaml",
        )
    names = normalise_names(header)
    header_chars, header_lines = lines.chars, lines.lines
    data_offset = len(text[:header_chars].encode(encoding))
    nulls = tuple(dict.fromkeys(("", *source.null_values)))
    sample: list[list[str]] = []
    ragged = False
    width = len(names)
    sample_end = header_chars
    try:
        for row in reader:
            if not row:
                continue
            if len(row) < width:
                ragged = True
                row = row + [""] * (width - len(row))
            sample.append(row)
            sample_end = lines.chars
            if len(sample) >= INFER_ROWS:
                break
    except pycsv.Error:
        pass
    if not at_eof and len(sample) < INFER_ROWS and sample:
        sample.pop()  # the last record of a cut sample may be incomplete
    nbytes = len(text[header_chars:sample_end].encode(encoding)) if sample else 0
    avg = nbytes / max(1, len(sample)) if sample else 100.0
    head = text[:header_chars]
    return CsvLayout(
        label=label,
        opener=opener,
        encoding=encoding,
        delimiter=delimiter,
        names=names,
        data_offset=data_offset,
        header_lines=header_lines,
        sample=[r for r in sample if not _is_header(r, header)],
        avg_row_bytes=max(avg, 1.0),
        ragged=ragged,
        null_values=nulls,
        path=path,
        header_raw=[v.strip() for v in header],
        title_rows=[" ".join(v.strip() for v in r if v.strip()) for r in titles],
        blank_above=blank_above,
        cr_only="\r" in head and "\n" not in text[: max(header_chars, len(text) // 4 + 1)],
        unnamed=[n for n, raw in zip(names, header, strict=True) if not raw.strip(" \ufeff")],
    )


def _is_header(row: Sequence[str], header: Sequence[str]) -> bool:
    """Is this data row the header again (a header repeated on every printed page)?"""
    return (
        len(row) >= len(header)
        and all(
            (row[i] or "").strip() == (h or "").replace("\ufeff", "").strip()
            for i, h in enumerate(header)
        )
        and not any((v or "").strip() for v in row[len(header) :])
    )


def _after_lines(text: str, n: int) -> str:
    if n <= 0:
        return text
    it = _LineCounter(text)
    for _ in range(n):
        if next(it, None) is None:
            break
    return text[it.chars :]


def sample_columns(layout: CsvLayout) -> dict[str, pa.Array]:
    """The inference sample as one string array per column (null values already null)."""
    nulls = set(layout.null_values)
    cols: dict[str, pa.Array] = {}
    for i, name in enumerate(layout.names):
        vals = [None if (i >= len(r) or r[i] in nulls) else r[i] for r in layout.sample]
        cols[name] = string_array(vals)
    return cols


def string_array(values: Sequence[str | None]) -> pa.Array:
    """A string array built from its buffers: ``pa.array`` on Python objects imports pandas
    (to recognise pandas types), a third of a second of every ingest command."""
    data = [b"" if v is None else v.encode("utf-8") for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    valid = np.packbits(
        np.fromiter((v is not None for v in values), bool, len(values)), bitorder="little"
    )
    return pa.LargeStringArray.from_buffers(
        len(values), pa.py_buffer(offsets), pa.py_buffer(b"".join(data)), pa.py_buffer(valid)
    ).cast(pa.string())


def plan_columns(
    layout: CsvLayout,
    fields: Sequence[FieldSpec],
    source: SourceSpec,
    *,
    implied: Callable[[str], FieldSpec | None] | None = None,
) -> list[ColumnPlan]:
    """One ColumnPlan per file column: declared fields win, then ``implied`` (GTFS), then
    inference on the sample. A declared column absent from the file is a SchemaMismatch."""
    err = missing_columns(fields, layout.names, file=layout.label)
    if err is not None:
        raise err
    declared = {f.name: f for f in fields}
    samples = sample_columns(layout)
    plans = []
    for name in layout.names:
        spec, origin = declared.get(name), None
        if (spec is None or spec.type is None) and implied is not None:
            hint = implied(name)
            if hint is not None:
                spec, origin = hint, "gtfs"
        plans.append(
            plan_column(
                name,
                samples[name],
                spec,
                day_first=source.day_first,
                date_formats=source.date_formats,
                number=style_from_source(source.thousands, source.currency, source.percent),
                messy=True,
                origin=origin,
            )
        )
    return plans


# ---------------------------------------------------------------------------------------------
# reading


def _convert_options(plans: Sequence[ColumnPlan], null_values: Sequence[str]):
    return pa_csv.ConvertOptions(
        column_types={p.name: p.read_type for p in plans},
        null_values=list(null_values),
        strings_can_be_null=True,
        true_values=TRUE_VALUES,
        false_values=FALSE_VALUES,
        check_utf8=True,
    )


def _finish(
    batch: pa.RecordBatch,
    plans: Sequence[ColumnPlan],
    schema: pa.Schema,
    repairs: Repairs | None = None,
):
    done: dict[str, dict[str, int]] = {}
    arrays = [
        convert(batch.column(p.name), p, done) if p.needs_conversion else batch.column(p.name)
        for p in plans
    ]
    if repairs is not None:  # counted once the whole batch converted (a failed one is replayed)
        for name, counts in done.items():
            repairs.count_numbers(name, counts)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _drop_header_rows(batch: pa.RecordBatch, layout: CsvLayout) -> pa.RecordBatch:
    """The fast path's check for the header repeated inside the data: only possible when every
    column is read as text (a typed column fails on it, and the exact path drops it)."""
    mask = None
    for i, name in enumerate(layout.header_raw):
        col = batch.column(i)
        hit = pc.is_null(col) if name == "" else pc.equal(pc.utf8_trim_whitespace(col), name)
        hit = pc.fill_null(hit, False)
        mask = hit if mask is None else pc.and_(mask, hit)
        if not pc.any(mask).as_py():
            return batch
    if mask is None:
        return batch
    return batch.filter(pc.invert(mask))


def _open_at(layout: CsvLayout, *, native: bool = False):
    if native and layout.path is not None:
        f = pa.OSFile(str(layout.path))
        f.seek(layout.data_offset)
        return f
    f = layout.opener()
    try:
        f.seek(layout.data_offset)
    except (OSError, io.UnsupportedOperation):
        f.read(layout.data_offset)
    return f


def iter_csv(
    layout: CsvLayout,
    plans: Sequence[ColumnPlan],
    schema: pa.Schema,
    batch_rows: int,
    repairs: Repairs | None = None,
) -> Iterator[pa.RecordBatch]:
    """Batches of one file, in order, with exactly ``schema`` (see the module docstring).
    What was changed to read it is added to ``repairs``."""
    by_name = {p.name: p for p in plans}
    file_plans = [by_name[n] for n in layout.names]  # the file's column order
    delivered = 0
    if not layout.ragged:
        block = int(min(max(layout.avg_row_bytes * batch_rows, 64 << 10), MAX_BLOCK_BYTES))
        f = _open_at(layout, native=True)
        try:
            reader = pa_csv.open_csv(
                f,
                read_options=pa_csv.ReadOptions(
                    column_names=layout.names,
                    block_size=block,
                    encoding=arrow_encoding(layout.encoding),
                ),
                parse_options=pa_csv.ParseOptions(
                    delimiter=layout.delimiter, newlines_in_values=True
                ),
                convert_options=_convert_options(file_plans, layout.null_values),
            )
            last = None
            all_text = all(pa.types.is_string(p.read_type) for p in file_plans)
            for batch in reader:
                raw_rows = batch.num_rows
                headers = 0
                if all_text and layout.header_raw:
                    kept = _drop_header_rows(batch, layout)
                    headers, batch = batch.num_rows - kept.num_rows, kept
                out = _finish(batch, plans, schema, repairs)
                delivered += raw_rows
                if repairs is not None:
                    for _ in range(headers):
                        repairs.header_row(None)
                last = batch
                yield out
            if _may_end_in_open_quote(layout, last, f):
                _check_quotes(layout)  # rare: a full pass with the exact parser
            return
        except UnicodeDecodeError:
            raise decode_error(layout.opener, layout.encoding, layout.label) from None
        except (pa.ArrowInvalid, ConversionFailed):
            pass  # replay from the first undelivered record with the exact path
        finally:
            f.close()
    yield from _iter_exact(layout, plans, schema, batch_rows, start=delivered, repairs=repairs)


def _iter_exact(
    layout: CsvLayout,
    plans: Sequence[ColumnPlan],
    schema: pa.Schema,
    batch_rows: int,
    *,
    start: int,
    repairs: Repairs | None = None,
) -> Iterator[pa.RecordBatch]:
    width = len(layout.names)
    chunk_rows = max(1, min(batch_rows, SLOW_CHUNK_ROWS))
    by_name = {p.name: p for p in plans}
    file_plans = [by_name[n] for n in layout.names]
    options = _convert_options(file_plans, layout.null_values)
    f = _open_at(layout)
    text = io.TextIOWrapper(f, encoding=layout.encoding, errors="strict", newline="")
    try:
        src = _Lines(text, layout)
        reader = pycsv.reader(src, delimiter=layout.delimiter, strict=False)
        rows: list[list[str]] = []
        lines: list[int] = []
        record, prev_line = 0, 0
        while True:
            src.record.clear()
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError:
                raise decode_error(layout.opener, layout.encoding, layout.label) from None
            except pycsv.Error as e:
                raise _parse_error(e, layout, layout.header_lines + prev_line + 1) from None
            line = layout.header_lines + prev_line + 1
            prev_line = reader.line_num
            if src.at_eof:
                _check_final_record(src.record, layout, line)
            if not row:
                continue
            record += 1
            if record <= start:
                continue
            if layout.header_raw and _is_header(row, layout.header_raw):
                if repairs is not None:
                    repairs.header_row(line)
                continue
            if len(row) > width:
                raise SourceError(
                    f"row has {len(row)} fields but the header has {width}",
                    file=layout.label,
                    line=line,
                    values=row[width:][:5],
                    hint="quote fields that contain the delimiter "
                    f"({layout.delimiter!r}), or check source.delimiter in datasets.yaml",
                )
            if len(row) < width:
                row = row + [""] * (width - len(row))
            rows.append(row)
            lines.append(line)
            if len(rows) >= chunk_rows:
                yield _convert_chunk(
                    layout, plans, file_plans, schema, options, rows, lines, repairs
                )
                rows, lines = [], []
        if rows:
            yield _convert_chunk(layout, plans, file_plans, schema, options, rows, lines, repairs)
    finally:
        text.close()


class _Lines:
    """The physical lines of a text stream for Python's csv module, each at most
    MAX_FIELD_CHARS characters (a 10 GB line without a newline is refused, not read into
    memory); ``record`` holds the lines of the record being parsed, ``at_eof`` says the
    stream has ended (so the last record can be checked for a quote left open)."""

    def __init__(self, text: io.TextIOBase, layout: CsvLayout) -> None:
        self._text, self._layout = text, layout
        self.record: list[str] = []
        self.at_eof = False
        self.line = layout.header_lines

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._text.readline(MAX_FIELD_CHARS + 1)
        if not line:
            self.at_eof = True
            raise StopIteration
        self.line += 1
        if len(line) > MAX_FIELD_CHARS:
            raise SourceError(
                f"line is longer than {MAX_FIELD_CHARS:,} characters (the limit of one field "
                "or line)",
                file=self._layout.label,
                line=self.line,
                hint="check that this is a CSV file with line breaks, or split the long value",
            )
        self.record.append(line)
        return line


def _parse_error(e: pycsv.Error, layout: CsvLayout, line: int) -> SourceError:
    if "field larger than field limit" in str(e):
        return SourceError(
            f"a field starting on this line is longer than {MAX_FIELD_CHARS:,} characters "
            "(the limit of one field); a quote opened here and never closed reads the rest of "
            "the file as one field",
            file=layout.label,
            line=line,
            hint='close the quote (write a quote inside a field as two quotes ""), or split '
            "the value",
        )
    return SourceError(f"malformed CSV: {e}", file=layout.label, line=line)


def _check_final_record(record_lines: list[str], layout: CsvLayout, line: int) -> None:
    """The stream ended during this record: was a quote still open?"""
    text = "".join(record_lines)
    if '"' not in text:
        return
    try:
        for _ in pycsv.reader(
            io.StringIO(text, newline=""), delimiter=layout.delimiter, strict=True
        ):
            pass
    except pycsv.Error as e:
        if "unexpected end of data" in str(e):
            raise SourceError(
                "a quote opened in this record is never closed: the rest of the file would be "
                "read as one field",
                file=layout.label,
                line=line,
                hint='close the quote (write a quote inside a field as two quotes "")',
            ) from None


def _may_end_in_open_quote(layout: CsvLayout, last: pa.RecordBatch | None, stream) -> bool:
    """Cheap test after the fast path: could its last record be a quote left open? (pyarrow
    reads a field that runs to the end of the file without complaint.) True when the last
    row holds a line break in a text field, or when the file's last line alone does not
    parse (a quote opened on it)."""
    if last is not None and last.num_rows:
        row = last.slice(last.num_rows - 1)
        for col in row.columns:
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                v = col[0].as_py()
                if v and ("\n" in v or "\r" in v):
                    return True
    if hasattr(stream, "tail"):  # a zip member keeps what it delivered last
        tail = stream.tail()
    elif layout.path is not None:
        with open(layout.path, "rb") as f:
            size = f.seek(0, io.SEEK_END)
            f.seek(max(layout.data_offset, size - (1 << 20)))
            tail = f.read()
    else:
        return True  # no cheap way to look at the end: let the exact pass decide
    text = tail.decode(layout.encoding, errors="replace").rstrip("\r\n")
    cut = max(text.rfind("\n"), text.rfind("\r"))
    if cut < 0 and len(tail) >= 1 << 20:
        return True
    last_line = text[cut + 1 :]
    if '"' not in last_line:
        return False
    try:
        for _ in pycsv.reader([last_line], delimiter=layout.delimiter, strict=True):
            pass
    except pycsv.Error:
        return True
    return False


def _check_quotes(layout: CsvLayout) -> None:
    """Parse the whole file with Python's csv module to check that its last record does not
    end inside an open quote (rarely needed: see _may_end_in_open_quote)."""
    f = _open_at(layout)
    text = io.TextIOWrapper(f, encoding=layout.encoding, errors="replace", newline="")
    try:
        src = _Lines(text, layout)
        reader = pycsv.reader(src, delimiter=layout.delimiter, strict=False)
        prev_line = 0
        while True:
            src.record.clear()
            try:
                next(reader)
            except StopIteration:
                return
            except pycsv.Error as e:
                raise _parse_error(e, layout, layout.header_lines + prev_line + 1) from None
            line = layout.header_lines + prev_line + 1
            prev_line = reader.line_num
            if src.at_eof:
                _check_final_record(src.record, layout, line)
    finally:
        text.close()


def _convert_chunk(
    layout, plans, file_plans, schema, options, rows, lines, repairs=None
) -> pa.RecordBatch:
    buf = io.StringIO()
    pycsv.writer(buf, lineterminator="\n").writerows(rows)
    data = buf.getvalue().encode("utf-8")
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(
                column_names=layout.names,
                use_threads=False,
                # one block: a field as long as MAX_FIELD_CHARS must not straddle two
                block_size=max(1 << 20, len(data) + 1),
            ),
            parse_options=pa_csv.ParseOptions(delimiter=",", newlines_in_values=True),
            convert_options=options,
        )
        batch = table.combine_chunks().to_batches()
        batch = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.schema)
        return _finish(batch, plans, schema, repairs)
    except ConversionFailed as e:
        raise mismatch(e.plan, e.values, file=layout.label, line=lines[e.rows[0]]) from None
    except pa.ArrowInvalid as e:
        raise _locate_invalid(e, layout, file_plans, rows, lines) from None


def _locate_invalid(e, layout, plans, rows, lines) -> SourceError:
    m = _CONV_RE.search(str(e))
    if not m:
        return SourceError(f"cannot read rows: {e}", file=layout.label, line=lines[0])
    col, value = int(m.group(1)), m.group(3)
    plan = plans[col]
    nulls = set(layout.null_values)
    raw = pa.array([None if r[col] in nulls else r[col] for r in rows], pa.string())
    first = next((i for i, r in enumerate(rows) if r[col] == value), None)
    if pa.types.is_boolean(plan.read_type):
        ok = set(TRUE_VALUES) | set(FALSE_VALUES)
        bad_rows = [i for i, v in enumerate(raw.to_pylist()) if v is not None and v not in ok]
    else:
        bad_rows = pc.indices_nonzero(bad_mask(raw, plan.read_type)).to_pylist()
    if first is None:
        first = bad_rows[0] if bad_rows else 0
    values = [rows[first][col]]
    for i in bad_rows:
        v = rows[i][col]
        if v not in values:
            values.append(v)
        if len(values) == 5:
            break
    return mismatch(plan, values, file=layout.label, line=lines[first])


# ---------------------------------------------------------------------------------------------
# the format entry point


def csv_table(
    layouts: Sequence[CsvLayout],
    plans: Sequence[ColumnPlan],
    batch_rows: int,
    *,
    name: str | None = None,
) -> SourceTable:
    """A SourceTable concatenating files that share the first file's columns."""
    first = layouts[0]
    schema = pa.schema([pa.field(p.name, p.type) for p in plans])
    for lay in layouts[1:]:
        if set(lay.names) != set(first.names) or len(lay.names) != len(first.names):
            extra = [n for n in lay.names if n not in first.names]
            lacking = [n for n in first.names if n not in lay.names]
            raise SourceError(
                "columns differ from the first file "
                f"({first.label}): extra {extra or 'none'}, missing {lacking or 'none'}",
                file=lay.label,
                hint="every file matched by source.path must have the same header",
            )

    repairs = Repairs()
    for lay in layouts:
        repairs.title_rows.extend(lay.title_rows)
        repairs.blank_rows += lay.blank_above
        if lay.cr_only:
            repairs.line_endings = "CR"

    def batches() -> Iterator[pa.RecordBatch]:
        for lay in layouts:
            yield from iter_csv(lay, plans, schema, batch_rows, repairs)

    encodings = {lay.encoding for lay in layouts}
    return SourceTable(
        name=name,
        schema=schema,
        batches=batches(),
        files=[lay.label for lay in layouts],
        encoding=first.encoding if len(encodings) == 1 else ",".join(sorted(encodings)),
        repairs=repairs,
        unnamed=[n for n in first.unnamed if all(n in lay.unnamed for lay in layouts)],
    )


def read_csv_source(
    source: SourceSpec, files: list[Path], fields: tuple[FieldSpec, ...], batch_rows: int
) -> list[SourceTable]:
    layouts = [inspect_csv(file_opener(p), str(p), source, path=p) for p in files]
    plans = plan_columns(layouts[0], fields, source)
    return [csv_table(layouts, plans, batch_rows)]


__all__ = [
    "CsvLayout",
    "csv_table",
    "inspect_csv",
    "iter_csv",
    "normalise_names",
    "plan_columns",
    "read_csv_source",
    "sniff_delimiter",
]
