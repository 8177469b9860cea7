"""Parquet reader: ``ParquetFile.iter_batches``; declared types are cast, the rest kept.

Undeclared columns keep the file's own types (Parquet is already typed), except that
timestamps in other units are normalised to microseconds so every format gives the same types.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import SourceError
from ..schema import ColumnPlan, ConversionFailed, convert, mismatch, missing_columns, plan_column
from ..spec import FieldSpec, SourceSpec
from . import SourceTable


def file_plans(
    schema: pa.Schema, fields: Sequence[FieldSpec], *, label: str, sample: pa.Table | None = None
) -> list[ColumnPlan]:
    """Plans for a typed source (Parquet, JSON, xlsx after typing): declared fields are cast
    to their type (string columns get date/format inference from ``sample``), others keep
    the source type."""
    err = missing_columns(fields, schema.names, file=label)
    if err is not None:
        raise err
    declared = {f.name: f for f in fields}
    plans = []
    for fld in schema:
        spec = declared.get(fld.name)
        if spec is not None and spec.type:
            col = sample.column(fld.name) if sample is not None else None
            if col is not None and not pa.types.is_string(fld.type):
                col = None
            plan = plan_column(fld.name, col, spec, native=False)
            plans.append(
                ColumnPlan(
                    plan.name, plan.type, fld.type, plan.formats, None, "declared", plan.sample_rows
                )
            )
        else:
            t = fld.type
            if pa.types.is_timestamp(t) and t.unit != "us":
                t = pa.timestamp("us", tz=t.tz)
            plans.append(ColumnPlan(fld.name, t, fld.type, origin="file"))
    return plans


def finish_batch(
    batch: pa.RecordBatch,
    plans: Sequence[ColumnPlan],
    schema: pa.Schema,
    *,
    label: str,
    first_row: int,
) -> pa.RecordBatch:
    """Convert a batch to ``schema``; a bad value is a SchemaMismatch at row ``first_row + i``."""
    arrays = []
    for p in plans:
        col = batch.column(p.name) if p.name in batch.schema.names else pa.nulls(len(batch))
        if col.type != p.type or p.formats:
            try:
                col = convert(col, p)
            except ConversionFailed as e:
                raise mismatch(e.plan, e.values, file=label, line=first_row + e.rows[0]) from None
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def read_parquet_source(
    source: SourceSpec, files: list[Path], fields: tuple[FieldSpec, ...], batch_rows: int
) -> list[SourceTable]:
    opened = []
    for p in files:
        try:
            opened.append(pq.ParquetFile(p))
        except (pa.ArrowInvalid, OSError) as e:
            raise SourceError(
                f"not a readable Parquet file: {e}",
                file=str(p),
                hint="check source.format",
            ) from None
    first = opened[0].schema_arrow
    for p, pf in zip(files[1:], opened[1:], strict=True):
        if set(pf.schema_arrow.names) != set(first.names):
            raise SourceError(
                f"columns {pf.schema_arrow.names} differ from the first file's {first.names}",
                file=str(p),
                hint="every file matched by source.path must have the same columns",
            )
    sample = None
    if any(f.type in ("date", "timestamp", "timestamptz") for f in fields):
        sample = next(opened[0].iter_batches(batch_size=5000), None)
        sample = pa.Table.from_batches([sample]) if sample is not None else None
    plans = file_plans(first, fields, label=str(files[0]), sample=sample)
    schema = pa.schema([pa.field(p.name, p.type) for p in plans])

    def batches() -> Iterator[pa.RecordBatch]:
        for path, pf in zip(files, opened, strict=True):
            row = 1
            for batch in pf.iter_batches(batch_size=batch_rows, columns=first.names):
                yield finish_batch(batch, plans, schema, label=str(path), first_row=row)
                row += batch.num_rows

    return [SourceTable(None, schema, batches(), [str(p) for p in files], None)]
