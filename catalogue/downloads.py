"""Downloads: which files each published table of each version has, the portal URLs that
serve them, signed URLs for restricted data, and the CSV / JSON Lines conversions.

Every published table of every version has one address on the portal::

    /dataset/<name>/v<N>/<table>.parquet      (also .csv and .jsonl, converted on the fly)
    /dataset/<name>/v<N>/<table>/<part>.parquet   (one file of a table written in several)

``<table>`` is the dataset's name for a single-table dataset, the table's name for a
multi-table one (a GTFS feed: ``stops``, ``stop_times``...). These paths are what the
package dict (:func:`catalogue.registry.package_dict`) puts in resource ``url`` s; every
surface makes them absolute with :func:`absolute` and the public base URL. No storage
location (``file://``, a bucket, a server path) is ever part of them.

Restricted data is read with a **signed URL**: the same path with ``?u=<user>&e=<unix
expiry>&s=<HMAC>``, an HMAC-SHA256 (key: the deployment's URL-signing secret) over the
dataset, version, table, expiry and user. A DuckDB or pandas process reads it without the
token; the server checks the signature, the expiry *and* the access rule again on every use,
so a refund, revocation or expired grant cuts access at once.

The module touches DuckDB only for the conversions (:func:`stream_csv`,
:func:`stream_jsonl`): batches of rows read from the Parquet files and written out as they
come, so memory does not grow with the table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .access import ANONYMOUS, DatasetFacts, may_read
from .errors import CatalogueError, DatasetNotFound
from .models import Dataset, Resource, Version
from .registry import find_dataset, view_of_table, view_stem

if TYPE_CHECKING:
    from ingest.storage import ObjectStore

    from .registry import Catalogue

ROUTE_PREFIX = "/dataset/"
FORMATS = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
}
SIGNED_PARAMS = ("u", "k", "e", "s")
DEFAULT_URL_TTL = 900  # seconds a signed URL lives by default (NSDX_SIGNED_URL_TTL)
MAX_URL_TTL = 7 * 24 * 3600
_PART = re.compile(r"^part-\d{5}\.parquet$")


# -- errors -------------------------------------------------------------------------------


class DownloadNotFound(CatalogueError):
    """No such dataset, version, table or file (HTTP 404)."""

    status = 404


class DownloadUnauthorized(CatalogueError):
    """Restricted data asked for without a token or signed URL (HTTP 401)."""

    status = 401


class DownloadForbidden(CatalogueError):
    """The caller may not read this table, or the signed URL is bad or expired (HTTP 403)."""

    status = 403


class SeveralFiles(CatalogueError):
    """A table written in several Parquet files has no single Parquet download (HTTP 300:
    the answer lists each file's URL)."""

    status = 300


# -- what a version's table holds ---------------------------------------------------------


@dataclass(frozen=True)
class DownloadFile:
    key: str  # object key in the store (never shown to clients)
    name: str  # part-00000.parquet
    bytes: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class DownloadTable:
    """One table of one published version, with what the access rule needs."""

    dataset: str
    dataset_id: str
    domain: str
    org_id: str | None
    organization: str | None
    access: str
    private: bool
    state: str
    version: int
    current: bool
    created: datetime
    table: str  # the URL segment: the dataset name, or the table name
    source_table: str | None  # None for single-table datasets
    files: tuple[DownloadFile, ...]
    rows: int
    schema: tuple[dict, ...] = ()

    @property
    def facts(self) -> DatasetFacts:
        return DatasetFacts(
            self.dataset_id, self.dataset, self.org_id, self.state, self.private, self.access
        )

    @property
    def open(self) -> bool:
        """Anyone may read it (the access rule, :func:`catalogue.access.may_read`)."""
        return may_read(ANONYMOUS, self.facts)

    @property
    def view_schema(self) -> str:
        return view_stem(self.domain)

    @property
    def view_name(self) -> str:
        """The view name of ``nsdx query`` (current version) — see :func:`view_names`."""
        return view_of_table(self.dataset, self.source_table)

    def path(self, fmt: str = "parquet") -> str:
        return table_path(self.dataset, self.version, self.table, fmt)

    @property
    def etag(self) -> str:
        """The manifest's SHA-256 of the only file; of the list of files otherwise."""
        if len(self.files) == 1:
            return self.files[0].sha256
        return hashlib.sha256("\n".join(f.sha256 for f in self.files).encode()).hexdigest()

    def file(self, name: str) -> DownloadFile:
        for f in self.files:
            if f.name == name:
                return f
        raise DownloadNotFound(
            f"table {self.table!r} of {self.dataset!r} version {self.version} has no file {name!r}",
            hint="its files are " + ", ".join(f.name for f in self.files),
        )


def url_segment(dataset: str, table: str | None) -> str:
    return table or dataset


def table_path(dataset: str, version: int, table: str, fmt: str = "parquet") -> str:
    return f"{ROUTE_PREFIX}{quote(dataset)}/v{int(version)}/{quote(table)}.{fmt}"


def part_path(dataset: str, version: int, table: str, part: str) -> str:
    return f"{ROUTE_PREFIX}{quote(dataset)}/v{int(version)}/{quote(table)}/{quote(part)}"


def resource_paths(ds_name: str, version: int, r: Resource) -> tuple[str, list[dict]]:
    """The resource ``url`` path of a published table and its files as clients see them
    (``path``, ``bytes``, ``sha256``, ``rows`` and a ``url`` path each; never the key)."""
    seg = url_segment(ds_name, r.table)
    files = []
    for f in r.files or []:
        name = f["path"].rsplit("/", 1)[-1]
        files.append(
            {
                **{k: v for k, v in f.items() if k != "key"},
                "url": part_path(ds_name, version, seg, name),
            }
        )
    return table_path(ds_name, version, seg), files


def absolute(obj: Any, site: str) -> Any:
    """``obj`` (a package dict, a list of them, a search result, a resource...) with every
    download path in a ``url`` made absolute against ``site`` (the public base URL)."""
    site = site.rstrip("/")
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "url" and isinstance(v, str) and v.startswith(ROUTE_PREFIX):
                out[k] = site + v
            elif isinstance(v, dict | list):
                out[k] = absolute(v, site)
            else:
                out[k] = v
        return out
    if isinstance(obj, list):
        return [absolute(x, site) for x in obj]
    return obj


def _files(r: Resource) -> tuple[DownloadFile, ...]:
    return tuple(
        DownloadFile(
            key=f["key"],
            name=f["path"].rsplit("/", 1)[-1],
            bytes=int(f.get("bytes") or 0),
            sha256=str(f.get("sha256") or ""),
            rows=int(f.get("rows") or 0),
        )
        for f in (r.files or [])
    )


def _table(ds: Dataset, ver: Version, r: Resource) -> DownloadTable:
    org = ds.organization
    return DownloadTable(
        dataset=ds.name,
        dataset_id=ds.id,
        domain=ds.domain,
        org_id=ds.organization_id,
        organization=org.name if org else None,
        access=ds.access,
        private=bool(ds.private),
        state=ds.state,
        version=ver.number,
        current=ver.number == ds.current_version,
        created=ver.created,
        table=url_segment(ds.name, r.table),
        source_table=r.table,
        files=_files(r),
        rows=int(r.row_count or 0),
        schema=tuple(r.table_schema or ()),
    )


def parse_version(version: str | int) -> int:
    raw = str(version)
    raw = raw[1:] if raw[:1] in ("v", "V") else raw
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise DownloadNotFound(
            f"{version!r} is not a version",
            hint="versions are written v1, v2, ...: see the dataset's `versions`",
        )
    return int(raw)


def _no_dataset(name: str) -> DownloadNotFound:
    return DownloadNotFound(
        f"dataset {name!r} not found",
        hint="search the catalogue (GET /api/3/action/package_search?q=...) for its name; "
        "a private dataset is seen only by its organisation's members (send your token)",
    )


def resolve(
    cat: Catalogue,
    name: str,
    version: str | int,
    table: str,
    visible: Callable[[DatasetFacts], bool] | None = None,
) -> DownloadTable:
    """The table ``table`` of version ``version`` of dataset ``name``, or DownloadNotFound
    saying what exists (deleted datasets do not exist; reading is checked by the caller).
    ``visible`` (the caller's :func:`catalogue.access.may_see`): a dataset it rejects is
    answered exactly as a missing one, before any version or table is looked up."""
    number = parse_version(version)
    with cat.Session() as s:
        try:  # the catalogue's one dataset lookup
            ds = find_dataset(s, name)
        except DatasetNotFound:
            raise _no_dataset(name) from None
        if visible is not None and not visible(DatasetFacts.of(ds)):
            raise _no_dataset(name)
        versions = sorted(s.scalars(select(Version.number).where(Version.dataset_id == ds.id)))
        ver = s.scalar(select(Version).where(Version.dataset_id == ds.id, Version.number == number))
        if ver is None:
            have = ", ".join(f"v{n}" for n in versions) or "none yet"
            raise DownloadNotFound(
                f"dataset {name!r} has no version {number}",
                hint=f"published versions: {have}",
                versions=versions,
            )
        resources = list(
            s.scalars(
                select(Resource).where(Resource.version_id == ver.id).order_by(Resource.position)
            )
        )
        for r in resources:
            if url_segment(ds.name, r.table) == table:
                return _table(ds, ver, r)
        have = ", ".join(url_segment(ds.name, r.table) for r in resources)
        raise DownloadNotFound(
            f"version {number} of {name!r} has no table {table!r}",
            hint=f"its tables are: {have}",
            tables=[url_segment(ds.name, r.table) for r in resources],
        )


def all_tables(cat: Catalogue) -> list[DownloadTable]:
    """Every table of every published version of every dataset but deleted ones (newest
    first per dataset), for the listing of what a caller may read (drafts: their
    organisation reads them)."""
    with cat.Session() as s:
        rows = s.execute(
            select(Dataset, Version, Resource)
            .join(Version, Version.dataset_id == Dataset.id)
            .join(Resource, Resource.version_id == Version.id)
            .where(Dataset.state != "deleted")
            .options(selectinload(Dataset.organization))
            .order_by(Dataset.name, Version.number.desc(), Resource.position)
        ).all()
        return [_table(ds, ver, r) for ds, ver, r in rows]


def view_names(t: DownloadTable) -> tuple[str, str]:
    """``(schema, view)`` for ``nsdx.connect()``: the current version as ``nsdx query``
    names it (``transport.nansha_bus_gps``), every version also as ``<view>__v<N>``
    (``transport.nansha_bus_gps__v1``, ``transport.cairns_gtfs__stops__v2``)."""
    return t.view_schema, f"{t.view_name}__v{t.version}"


# -- signed URLs --------------------------------------------------------------------------


def _mac(key: bytes, msg: str) -> str:
    d = hmac.new(key, msg.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def _message(dataset: str, version: int, table: str, expires: int, user: str, token: str) -> str:
    return f"nsdx-download-v2\n{dataset}\n{int(version)}\n{table}\n{int(expires)}\n{user}\n{token}"


_DIGITS = re.compile(r"[0-9]{1,12}")


def sign(key: bytes, t: DownloadTable, user: str, expires: int, token: str) -> str:
    """The query string of a signed URL of table ``t`` for ``user`` until ``expires``
    (unix seconds), bound to the API token (its id) it was minted with: revoking the
    token kills the URL. The same signature serves the table's .parquet, .csv and .jsonl
    and its part files."""
    sig = _mac(key, _message(t.dataset, t.version, t.table, expires, user, token))
    return f"u={quote(user, safe='')}&k={quote(token, safe='')}&e={int(expires)}&s={sig}"


def signed_url(
    key: bytes, t: DownloadTable, user: str, expires: int, token: str, fmt="parquet"
) -> str:
    return f"{t.path(fmt)}?{sign(key, t, user, expires, token)}"


def verify(
    key: bytes,
    dataset: str,
    version: int,
    table: str,
    u: str | None,
    e: str | None,
    s: str | None,
    k: str | None = None,
) -> tuple[str, str]:
    """``(user, token id)`` a signed URL was made for (the caller checks the token is still
    live); DownloadForbidden when it is malformed, made for another table, tampered with or
    expired."""
    if not u or not e or not s or not k:
        raise DownloadForbidden(
            "the signed URL is incomplete (it needs u, k, e and s)",
            hint="copy the whole URL, or ask for a new one (GET /api/downloads with your token)",
        )
    if not _DIGITS.fullmatch(e) or len(u) > 200 or len(s) > 100 or len(k) > 64:
        raise DownloadForbidden(
            "the signed URL is malformed",
            hint="ask for a new one (GET /api/downloads with your token)",
        )
    want = _mac(key, _message(dataset, version, table, int(e), u, k))
    if not hmac.compare_digest(s.encode(), want.encode()):
        raise DownloadForbidden(
            "the signed URL's signature does not match this file",
            hint="a signed URL opens exactly the table it was made for and cannot be edited; "
            "ask for a new one (GET /api/downloads with your token)",
        )
    if int(e) <= time.time():
        raise DownloadForbidden(
            "the signed URL has expired",
            hint="ask for a new one (GET /api/downloads with your token, or nsdx.connect() again)",
        )
    return u, k


def url_ttl(raw: str | None) -> int:
    """Seconds signed URLs live: ``NSDX_SIGNED_URL_TTL``, 900 by default, at most a week."""
    if raw in (None, ""):
        return DEFAULT_URL_TTL
    try:
        ttl = int(raw)
    except ValueError:
        raise CatalogueError(
            f"NSDX_SIGNED_URL_TTL={raw!r} is not a number of seconds",
            hint="set NSDX_SIGNED_URL_TTL to e.g. 900, or leave it unset",
        ) from None
    if not 1 <= ttl <= MAX_URL_TTL:
        raise CatalogueError(
            f"NSDX_SIGNED_URL_TTL={raw} is out of range",
            hint=f"use 1 to {MAX_URL_TTL} seconds",
        )
    return ttl


# -- conversions --------------------------------------------------------------------------

BATCH_ROWS = 32 * 1024


def _reader(store: ObjectStore, files: Iterable[DownloadFile], select_sql: str):
    """A DuckDB connection (memory-capped, one thread) and the record-batch reader of
    ``select_sql`` (over ``t``: the table's files)."""
    from validation.duck import connect

    con = connect(
        config={
            "threads": 1,
            "memory_limit": "128MB",
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "preserve_insertion_order": True,
        },
    )
    if store.url.startswith("s3://"):
        from ingest.storage.duckdb_s3 import configure_duckdb

        configure_duckdb(con, store)
    paths = [store.uri(f.key) for f in files]
    lit = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet([{lit}])")
    return con, con.execute(select_sql).to_arrow_reader(BATCH_ROWS)


def stream_csv(store: ObjectStore, t: DownloadTable) -> Generator[bytes, None, None]:
    """The table as CSV (UTF-8, header line, RFC 4180 quoting), chunk by chunk."""
    import pyarrow.csv as pacsv

    con, reader = _reader(store, t.files, "SELECT * FROM t")
    try:
        first = True
        for batch in reader:
            buf = io.BytesIO()
            pacsv.write_csv(batch, buf, pacsv.WriteOptions(include_header=first))
            first = False
            yield buf.getvalue()
        if first:  # no rows: the header alone
            buf = io.BytesIO()
            pacsv.write_csv(reader.schema.empty_table(), buf)
            yield buf.getvalue()
    finally:
        con.close()


def stream_jsonl(store: ObjectStore, t: DownloadTable) -> Generator[bytes, None, None]:
    """The table as JSON Lines (one object per row), chunk by chunk, written by the one JSON
    renderer (:mod:`catalogue.jsonout`: DuckDB's own ``to_json`` writes ``NaN`` and
    ``Infinity``, which no strict JSON reader accepts)."""
    import pyarrow as pa

    from .jsonout import dumps, records

    con, reader = _reader(store, t.files, "SELECT * FROM t")
    try:
        for batch in reader:
            rows = records(pa.Table.from_batches([batch]))
            if rows:
                yield ("\n".join(dumps(r) for r in rows) + "\n").encode()
    finally:
        con.close()


CONVERTERS = {"csv": stream_csv, "jsonl": stream_jsonl}

__all__ = [
    "CONVERTERS",
    "DEFAULT_URL_TTL",
    "FORMATS",
    "DownloadFile",
    "DownloadForbidden",
    "DownloadNotFound",
    "DownloadTable",
    "DownloadUnauthorized",
    "SeveralFiles",
    "absolute",
    "all_tables",
    "part_path",
    "resolve",
    "resource_paths",
    "sign",
    "signed_url",
    "stream_csv",
    "stream_jsonl",
    "table_path",
    "url_ttl",
    "verify",
    "view_names",
]
