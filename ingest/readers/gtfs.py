"""GTFS feed reader: every ``*.txt`` member of the zip is its own table, streamed from the zip.

GTFS typing rules applied on top of inference (a declared ``type:`` still wins):

* ids and codes stay strings even when they look numeric: columns ending in ``_id``,
  ``_code``, ``_name``, ``_desc``, ``_url``, ``_phone``, ``_color``, ``_headsign``, ``_email``,
  ``_lang``, ``_timezone``, plus ``parent_station``;
* times (``arrival_time``, ``departure_time``, ``start_time``, ``end_time``, any ``*_time``)
  stay strings - GTFS service days run past 24:00 (``25:10:00``);
* dates (``date``, ``start_date``, ``end_date``, any ``*_date``) are ``YYYYMMDD`` -> date32.

Declared fields apply to every table that has the column, or to one table when written
``table.column`` (``stops.stop_lat``). ``source.tables`` limits which members are read.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from ..errors import SourceError
from ..spec import FieldSpec, SourceSpec
from . import SourceTable
from .csv import csv_table, inspect_csv, plan_columns

_STRING_SUFFIXES = (
    "_id",
    "_code",
    "_name",
    "_desc",
    "_url",
    "_phone",
    "_color",
    "_headsign",
    "_email",
    "_lang",
    "_timezone",
    "_time",
)


def gtfs_implied(column: str) -> FieldSpec | None:
    """The type GTFS implies for a column name, or None to infer it."""
    if column == "date" or column.endswith("_date"):
        return FieldSpec(column, type="date", format="%Y%m%d")
    if column == "direction_id":
        return None  # an enum 0/1, not an identifier
    if column == "parent_station" or column.endswith(_STRING_SUFFIXES):
        return FieldSpec(column, type="string")
    return None


def _fields_for(table: str, fields: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
    out = []
    for f in fields:
        if "." in f.name:
            t, _, col = f.name.partition(".")
            if t == table:
                out.append(FieldSpec(col, **{k: getattr(f, k) for k in _FIELD_ATTRS}))
        else:
            out.append(f)
    return tuple(out)


_FIELD_ATTRS = ("type", "pii", "pii_treatment", "format", "description", "unit")


def read_gtfs_source(
    source: SourceSpec, files: list[Path], fields: tuple[FieldSpec, ...], batch_rows: int
) -> list[SourceTable]:
    if len(files) != 1:
        raise SourceError(
            f"a GTFS source must be one zip file, {len(files)} matched",
            file=source.path,
            hint="point source.path at a single feed .zip",
        )
    path = files[0]
    try:
        with zipfile.ZipFile(path) as zf:
            members = [
                i.filename
                for i in zf.infolist()
                if i.filename.lower().endswith(".txt") and not i.is_dir()
            ]
    except zipfile.BadZipFile:
        raise SourceError(
            "not a zip file", file=str(path), hint="a GTFS feed is a .zip of .txt files"
        ) from None
    by_table = {Path(m).stem: m for m in members}
    wanted = list(source.tables) or sorted(by_table)
    unknown = [t for t in wanted if t not in by_table]
    if unknown:
        raise SourceError(
            f"tables {unknown} not in the feed; it has {sorted(by_table)}",
            file=str(path),
            hint="fix source.tables in datasets.yaml",
        )
    tables = []
    for table in wanted:
        member = by_table[table]
        label = f"{path}!{member}"

        def opener(member: str = member):
            return _MemberStream(path, member)

        layout = inspect_csv(opener, label, source)
        table_fields = tuple(f for f in _fields_for(table, fields) if f.name in layout.names)
        plans = plan_columns(layout, table_fields, source, implied=gtfs_implied)
        tables.append(csv_table([layout], plans, batch_rows, name=table))
    return tables


class _MemberStream(io.BufferedIOBase):
    """A zip member opened for reading; closing it closes the zip too."""

    def __init__(self, path: Path, member: str) -> None:
        super().__init__()
        self._zip = zipfile.ZipFile(path)
        self._f = self._zip.open(member)

    def read(self, n: int | None = -1) -> bytes:
        return self._f.read(-1 if n is None else n)

    def read1(self, n: int = -1) -> bytes:
        return self._f.read1(n)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._f.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
            self._zip.close()
        super().close()
