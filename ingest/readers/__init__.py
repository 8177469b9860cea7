"""Source readers: turn a declared source into Arrow record batches with a fixed schema.

One entry point, :func:`open_source`, dispatches on ``source.format`` through the
:data:`READERS` registry (csv, json, ndjson, xlsx, parquet, gtfs). A third party adds a format
the same way the built-in ones do: ``register_reader("fmt", fn)`` where ``fn(source, files,
fields, batch_rows) -> list[SourceTable]``.

Every :class:`SourceTable` knows its final schema before any batch is read, and produces its
batches lazily: memory depends on ``batch_rows``, not on the file size. Errors about the
data itself (a bad value, a ragged row, a bad byte) are raised while iterating ``batches``;
errors about the source as a whole (file missing, declared column missing, unknown encoding)
are raised by :func:`open_source`.

Line numbers in errors: for CSV (and GTFS members) ``line`` is the 1-based physical line of the
offending record in the source file, counting preamble and header lines. For NDJSON it is the
1-based line, for a JSON array the 1-based element number, for xlsx the sheet row number and
for Parquet the 1-based row number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..errors import SourceError
from ..repairs import Repairs
from ..spec import FieldSpec, SourceSpec


@dataclass
class SourceTable:
    """One table read from a source (GTFS feeds give one per member file)."""

    name: str | None
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    files: list[str] = field(default_factory=list)
    encoding: str | None = None
    # what the reader changed to read the source (filled while ``batches`` is iterated)
    repairs: Repairs = field(default_factory=Repairs)
    # columns whose header is empty: dropped by the pipeline when they hold no value either
    unnamed: list[str] = field(default_factory=list)


Reader = Callable[[SourceSpec, list[Path], tuple[FieldSpec, ...], int], list[SourceTable]]
READERS: dict[str, Reader] = {}


def register_reader(fmt: str, fn: Reader) -> None:
    """Make ``fn`` the reader of ``format: fmt`` sources."""
    READERS[fmt] = fn


def source_files(source: SourceSpec) -> list[Path]:
    """The local files a source names (a glob may match several, sorted by name)."""
    resolved = source.resolve()
    if isinstance(resolved, str):
        raise SourceError(
            f"a remote source is downloaded by the pipeline, not opened here: {resolved}",
            file=resolved,
            hint="run `nsdx ingest` (ingest.pipeline.run_pipeline), which streams it into a "
            "temporary folder and reads that (see ingest.remote)",
        )
    files = [p for p in resolved if p.is_file()]
    if not source.follow_symlinks:
        for p in files:
            _check_symlink(source, p)
    if not files:
        shown = source.path
        raise SourceError(
            f"file not found: {shown}"
            + (f" (looked in {source.base_dir})" if not Path(shown).is_absolute() else ""),
            file=shown,
            hint="check source.path in datasets.yaml (relative paths start at the folder of "
            "datasets.yaml; a glob such as data/*.csv must match at least one file)",
        )
    return files


def _check_symlink(source: SourceSpec, path: Path) -> None:
    """A symlinked source is read only when it points inside the source roots: the folder of
    datasets.yaml and the folder the declared path names (``follow_symlinks: true`` lifts it)."""
    real = path.resolve()
    if real == path.absolute():
        return  # not a link
    declared = Path(source.path)
    if not declared.is_absolute():
        declared = source.base_dir / declared
    roots = {Path(source.base_dir).resolve(), declared.parent.resolve()}
    if any(real == r or r in real.parents for r in roots):
        return
    raise SourceError(
        f"source file is a symbolic link to {real}, outside the source folders "
        f"({', '.join(sorted(map(str, roots)))})",
        file=str(path),
        hint="copy the file next to datasets.yaml, or declare `follow_symlinks: true` in the "
        "source if this link is intended",
    )


def open_source(
    source: SourceSpec,
    fields: tuple[FieldSpec, ...] = (),
    *,
    batch_rows: int = 256_000,
    files: list[Path] | None = None,
) -> list[SourceTable]:
    """Open a declared source: one SourceTable per table, schemas decided, batches lazy.
    ``files``: the source's files when the caller has listed them already (the pipeline
    reads exactly the files it fingerprinted)."""
    reader = READERS.get(source.format)
    if reader is None:
        raise SourceError(
            f"no reader for format {source.format!r}",
            file=source.path,
            hint=f"use one of: {', '.join(sorted(READERS))}",
        )
    files = source_files(source) if files is None else files
    return reader(source, files, tuple(fields), max(1, int(batch_rows)))


from . import csv as _csv  # noqa: E402  (readers register themselves)
from . import gtfs as _gtfs  # noqa: E402
from . import json as _json  # noqa: E402
from . import parquet as _parquet  # noqa: E402
from . import xlsx as _xlsx  # noqa: E402

register_reader("csv", _csv.read_csv_source)
register_reader("json", _json.read_json_source)
register_reader("ndjson", _json.read_ndjson_source)
register_reader("xlsx", _xlsx.read_xlsx_source)
register_reader("parquet", _parquet.read_parquet_source)
register_reader("gtfs", _gtfs.read_gtfs_source)

__all__ = [
    "READERS",
    "SourceTable",
    "open_source",
    "register_reader",
    "source_files",
]
