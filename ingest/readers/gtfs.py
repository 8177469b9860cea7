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
from ..spec import TABLE_RE, FieldSpec, SourceSpec
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


def _members(zf: zipfile.ZipFile, path: Path, source: SourceSpec) -> dict[str, zipfile.ZipInfo]:
    """The feed's tables by name: every ``*.txt`` member, its name checked and its unpacked
    size bounded (declared sizes are what zipfile delivers at most: it stops there)."""
    by_table: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        _check_member_path(name, path)
        if info.is_dir() or not name.lower().endswith(".txt") or name.startswith("__MACOSX/"):
            continue
        table = name.rsplit("/", 1)[-1][: -len(".txt")]
        if not TABLE_RE.fullmatch(table):
            raise SourceError(
                f"member {name!r} would be table {table!r}: a table name must match "
                "[A-Za-z0-9][A-Za-z0-9_-]{0,99}",
                file=str(path),
                hint="rename the member in the zip (GTFS files are named like stop_times.txt)",
            )
        if table in by_table:
            raise SourceError(
                f"members {by_table[table].filename!r} and {name!r} are both table {table!r}",
                file=str(path),
                hint="a GTFS feed has each file once; remove the duplicate from the zip",
            )
        _check_size(info, path, source)
        by_table[table] = info
    return by_table


def _check_member_path(name: str, path: Path) -> None:
    """A member named absolutely or with a '..' step was made to write outside the folder it
    is unpacked into: such an archive is refused whole (nsdx never unpacks to disk, but the
    feed is crafted, and whoever unpacks it next may)."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise SourceError(
            f"member {name!r} has an absolute path or a '..' step (it would unpack outside "
            "the feed's folder)",
            file=str(path),
            hint="the zip is crafted or broken: rebuild the feed with plain member names "
            "(stops.txt, trips.txt, ...)",
        )


def _check_size(info: zipfile.ZipInfo, path: Path, source: SourceSpec) -> None:
    limit, ratio = source.max_unpacked_bytes, source.max_compression_ratio
    if info.file_size > limit:
        raise SourceError(
            f"member {info.filename!r} unpacks to {info.file_size:,} bytes, more than the limit "
            f"of {int(limit):,} bytes",
            file=str(path),
            hint="if the feed is genuine, raise source.max_unpacked_bytes in datasets.yaml",
        )
    packed = max(info.compress_size, 1)
    if info.file_size > (1 << 20) and info.file_size / packed > ratio:
        raise SourceError(
            f"member {info.filename!r} unpacks {info.file_size / packed:,.0f} times its "
            f"compressed size ({info.compress_size:,} -> {info.file_size:,} bytes), more than "
            f"the limit of {ratio:g} (a zip bomb?)",
            file=str(path),
            hint="if the feed is genuine, raise source.max_compression_ratio in datasets.yaml",
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
            infos = _members(zf, path, source)
    except zipfile.BadZipFile:
        raise SourceError(
            "not a zip file", file=str(path), hint="a GTFS feed is a .zip of .txt files"
        ) from None
    by_table = {t: i.filename for t, i in infos.items()}
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

        def opener(member: str = member, limit: int = infos[table].file_size):
            return _MemberStream(path, member, limit)

        layout = inspect_csv(opener, label, source)
        table_fields = tuple(f for f in _fields_for(table, fields) if f.name in layout.names)
        plans = plan_columns(layout, table_fields, source, implied=gtfs_implied)
        tables.append(csv_table([layout], plans, batch_rows, name=table))
    return tables


class _MemberStream(io.BufferedIOBase):
    """A zip member opened for reading; closing it closes the zip too."""

    def __init__(self, path: Path, member: str, limit: int) -> None:
        super().__init__()
        self._zip = zipfile.ZipFile(path)
        f = self._zip.open(member)  # typeshed says IO[bytes]; reading, it is a ZipExtFile
        if not isinstance(f, zipfile.ZipExtFile):  # pragma: no cover - zipfile's contract
            raise TypeError(f"zipfile opened {member!r} as {type(f).__name__}")
        self._f: zipfile.ZipExtFile = f
        self._label, self._limit = f"{path}!{member}", limit
        self._last: list[bytes] = [b"", b""]  # the two last pieces read (see tail)

    def _count(self, data: bytes) -> bytes:
        # zipfile stops at the declared size; this guards against a reader that does not
        if not data:
            return data
        self._last = [self._last[1], data]
        if self._f.tell() > self._limit:
            raise SourceError(
                f"member unpacks to more than its declared {self._limit:,} bytes",
                file=self._label,
                hint="the zip is corrupt or crafted; get a fresh copy of the feed",
            )
        return data

    def read(self, n: int | None = -1) -> bytes:
        return self._count(self._f.read(-1 if n is None else n))

    def read1(self, n: int = -1) -> bytes:
        return self._count(self._f.read1(n))

    def tail(self, n: int = 1 << 20) -> bytes:
        """The last bytes read so far (up to ``n``; the CSV reader checks the last line)."""
        return b"".join(self._last)[-n:]

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
