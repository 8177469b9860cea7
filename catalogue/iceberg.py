"""Every open published table as an Apache Iceberg table, for Spark, Trino and DuckDB.

Each published version of a dataset anyone may read (:func:`catalogue.access.read_clause`
for an anonymous caller: active, public, ``access: open``) is registered as one snapshot of
an Iceberg table — **without copying or rewriting its Parquet files**: the snapshot's
manifests point at the version's own immutable objects in the store.

* Catalog: pyiceberg's SQL catalog (the same tables Iceberg's JDBC catalog uses:
  ``iceberg_tables``, ``iceberg_namespace_properties``) in nsdx's own database (PostgreSQL
  in production, the SQLite file by default), catalog name ``nsdx``.
* Namespace per domain, table per dataset table, named like the DuckDB views of
  ``nsdx query``: ``urban_management.nansha_hotline_cases``,
  ``transport.cairns_gtfs__routes``.
* Metadata files (JSON, Avro manifests) go to ``iceberg/<namespace>/<table>/metadata/`` in
  the object store; data files are the version's ``<org>/<dataset>/v<N>/...`` objects.
* The mapping both ways lives in the Iceberg metadata itself: each snapshot's summary holds
  ``nsdx.dataset``, ``nsdx.version`` and ``nsdx.fingerprint``, and a tag ``v<N>`` points at
  it (Spark: ``VERSION AS OF 'v3'``). :meth:`IcebergTables.snapshots` reads it back.
* Restricted, private, draft and deleted datasets are not in this open catalog; a table
  whose dataset stops being open leaves it in the transaction of that change
  (:func:`unlist_in`, called by editing and publishing; :meth:`IcebergTables.sync` drops
  any left over). Its metadata files stay, unreferenced. Registration asks the database
  whether the dataset is open right before each catalog write (on PostgreSQL holding the
  dataset's row, so a closing edit waits and then unlists what was written) and again after
  it (SQLite), dropping the table when an edit closed the dataset meanwhile.

Registration follows publishing: the nsdx version is the commit point; the snapshot is
registered right after it, in the same call (:func:`catalogue.publishing.publish_dataset`;
pyiceberg is imported and the catalog opened in a background thread while that call's
pipeline runs, see :meth:`IcebergTables.warm_up`).
If that fails the publish still stands (with a warning); the next publish of the dataset or
``nsdx iceberg sync`` registers every missing newer version in order. Snapshots only go
forward: a version older than the newest registered one is not added later (a backfill into
a new catalog registers every version in order).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import column as sa_column
from sqlalchemy import delete as sa_delete
from sqlalchemy import inspect, select
from sqlalchemy import table as sa_table
from sqlalchemy.orm import Session, selectinload

from ingest.arrow_pandas import without_pandas
from ingest.storage.base import ICEBERG

from .access import ANONYMOUS, DatasetFacts, may_read, read_clause
from .errors import CatalogueError
from .models import Dataset, Version
from .registry import find_dataset, view_of_table, view_stem

if TYPE_CHECKING:
    from ingest.storage import ObjectStore

    from .registry import Catalogue

CATALOG_NAME = "nsdx"
PREFIX = ICEBERG  # object keys of the metadata files (a name no organisation may take)
P_DATASET, P_VERSION, P_FINGERPRINT = "nsdx.dataset", "nsdx.version", "nsdx.fingerprint"
MAX_LOOKUP_TABLES = 10_000  # `nsdx iceberg which`: tables read at most
#: a table with more columns is not registered: pyiceberg's schema handling grows with the
#: square of the column count (a 10,000-column table took 64 s to register, its publish 3 s)
MAX_COLUMNS = 1_000


def enabled() -> bool:
    """``NSDX_ICEBERG`` (default ``1``): ``0`` leaves publishing without Iceberg
    registration (``nsdx iceberg sync`` still works)."""
    v = os.environ.get("NSDX_ICEBERG", "1").strip().lower()
    if v not in ("0", "1", "true", "false", "yes", "no", "on", "off", ""):
        raise CatalogueError(
            f"NSDX_ICEBERG={v!r} is not on or off", hint="set NSDX_ICEBERG=1 or 0, or unset it"
        )
    return v not in ("0", "false", "no", "off")


class IcebergError(CatalogueError):
    """Iceberg registration or lookup failed."""


@dataclass
class SyncReport:
    registered: list[dict] = field(default_factory=list)  # {dataset, table, version, snapshot_id}
    dropped: list[str] = field(default_factory=list)  # namespace.table
    errors: list[dict] = field(default_factory=list)  # {dataset, version, error}
    skipped: list[dict] = field(default_factory=list)  # {dataset, table, version, columns}

    def as_dict(self) -> dict:
        return {
            "registered": self.registered,
            "dropped": self.dropped,
            "errors": self.errors,
            "skipped": self.skipped,
        }


def file_uri(store: ObjectStore, key: str) -> str:
    """The location of object ``key`` as Iceberg writes it: ``s3://`` or ``file://``."""
    u = store.uri(key)
    return u if "://" in u else "file://" + str(Path(u).resolve())


def io_properties(store: ObjectStore) -> dict[str, str]:
    """pyiceberg FileIO settings reaching ``store`` (S3 credentials and endpoint)."""
    from ingest.storage.s3 import S3Store

    if not isinstance(store, S3Store):
        return {}
    creds = store.credentials()
    props = {
        "s3.access-key-id": creds["key_id"],
        "s3.secret-access-key": creds["secret"],
        "s3.region": store.region,
        "s3.force-virtual-addressing": "false" if store.addressing_style == "path" else "true",
    }
    if creds["session_token"]:
        props["s3.session-token"] = creds["session_token"]
    if store.endpoint_url:
        props["s3.endpoint"] = store.endpoint_url
    return props


def open_catalog(engine, store: ObjectStore):
    """pyiceberg's SQL catalog over nsdx's own engine (its pool and SQLite settings), its
    two tables created on first use."""
    from pyiceberg.catalog import MetastoreCatalog
    from pyiceberg.catalog.sql import SqlCatalog

    class _Catalog(SqlCatalog):
        def __init__(self) -> None:  # SqlCatalog's own builds a second engine from a URI
            MetastoreCatalog.__init__(
                self,
                CATALOG_NAME,
                uri=engine.url.render_as_string(hide_password=False),
                warehouse=file_uri(store, PREFIX),
                **io_properties(store),
            )
            self.engine = engine
            try:
                self._init_catalog()
            except Exception:  # noqa: BLE001 - another process created the tables meanwhile
                self._init_catalog()  # they are there now (else this raises)

    return _Catalog()


def table_ident(domain: str, dataset: str, table: str | None) -> tuple[str, str]:
    return view_stem(domain), view_of_table(dataset, table)


class IcebergTables:
    """The open Iceberg catalog of one deployment (catalogue + store)."""

    def __init__(self, cat: Catalogue, store: ObjectStore) -> None:
        self.cat, self.store = cat, store
        self._catalog: Any = None
        self._warming: threading.Thread | None = None

    def warm_up(self) -> None:
        """Import pyiceberg and open the catalog in a background thread, so that a
        registration later in this process finds them ready. ``publish_dataset`` calls this
        once a run knows it writes a new version: pyiceberg's import (~0.3 s of CPU, pydantic
        models) then runs while the pipeline's own thread mostly waits on Arrow, instead of
        after the publish. Nothing is written to the catalog here (the registration still
        happens after the commit point, as before); a failure here is left for the
        registration to meet again and report."""
        if self._catalog is not None or self._warming is not None:
            return

        def run() -> None:
            try:
                with without_pandas():  # pyarrow would import it for pyiceberg's values
                    self._catalog = open_catalog(self.cat.engine, self.store)
                    # what a registration imports next (rich: pyiceberg's schema check)
                    import pyiceberg.io.pyarrow  # noqa: F401
                    import pyiceberg.table.update.snapshot  # noqa: F401
                    import rich.console  # noqa: F401
                    import rich.table  # noqa: F401
            except BaseException:  # noqa: BLE001, S110 - `catalog` opens it again and raises
                pass

        self._warming = threading.Thread(target=run, name="nsdx-iceberg-warm-up", daemon=True)
        self._warming.start()

    def settle(self) -> None:
        """Wait for the background opening, if one runs: a publish returns (or fails) with
        no thread of its own still writing (the catalog's tables are created in the
        deployment's database)."""
        if self._warming is not None:
            self._warming.join()
            self._warming = None

    @property
    def catalog(self):
        if self._warming is not None:  # opened (or failed) in the background: wait for it
            self._warming.join()
            self._warming = None
        if self._catalog is None:
            try:
                self._catalog = open_catalog(self.cat.engine, self.store)
            except ImportError as e:  # pragma: no cover - a dependency of nsdx
                raise IcebergError(
                    f"pyiceberg is not installed: {e}", hint="pip install 'pyiceberg[pyarrow]'"
                ) from e
        return self._catalog

    # -- registration ------------------------------------------------------------------
    def sync(self, datasets: Sequence[str] = ()) -> SyncReport:
        """Register every version of the open datasets (``datasets``: these names only)
        newer than the table's newest snapshot, oldest first; drop the tables of datasets
        that are no longer open. Safe to run again and from several processes."""
        report = SyncReport()
        with self.cat.Session() as s:
            q = select(Dataset).options(
                selectinload(Dataset.versions).selectinload(Version.resources)
            )
            if datasets:
                q = q.where(Dataset.name.in_(list(datasets)))
            rows = list(s.scalars(q.order_by(Dataset.name)))
            open_ids = set(
                s.scalars(select(Dataset.id).where(read_clause(ANONYMOUS))).all() if rows else []
            )
        for ds in rows:
            if ds.id in open_ids:
                self._sync_dataset(ds, report)
            else:
                self._drop_dataset(ds, report)
        return report

    def _drop_dataset(self, ds: Dataset, report: SyncReport) -> None:
        ns = view_stem(ds.domain)
        names = self._listed(
            ns, {view_of_table(ds.name, r.table) for v in ds.versions for r in v.resources}
        )
        if not names:  # the usual case of a dataset that is not open: pyiceberg not needed
            return
        from pyiceberg.exceptions import NoSuchTableError

        for name in sorted(names):
            if self.catalog.table_exists((ns, name)):
                try:
                    self.catalog.drop_table((ns, name))
                except NoSuchTableError:  # unlisted by an edit meanwhile
                    continue
                report.dropped.append(f"{ns}.{name}")

    def _listed(self, ns: str, names: set[str]) -> set[str]:
        """Which of ``names`` the catalog lists in namespace ``ns``, asked of its table
        directly (what pyiceberg's ``table_exists`` asks, without importing pyiceberg)."""
        if not names:
            return set()
        with self.cat.engine.connect() as c:
            if not inspect(c).has_table("iceberg_tables"):
                return set()
            t = _ICEBERG_TABLES.c
            q = select(t.table_name).where(
                t.catalog_name == CATALOG_NAME,
                t.table_namespace == ns,
                t.table_name.in_(sorted(names)),
            )
            return set(c.execute(q).scalars())

    def _sync_dataset(self, ds: Dataset, report: SyncReport) -> None:
        versions = sorted(
            (v for v in ds.versions if ds.current_version and v.number <= ds.current_version),
            key=lambda v: v.number,
        )
        if not versions:
            return
        ns = view_stem(ds.domain)
        try:
            self.catalog.create_namespace_if_not_exists(ns)
        except Exception:  # noqa: BLE001 - created by another process meanwhile
            if not self.catalog.namespace_exists(ns):
                raise
        newest: dict[str, int] = {}  # table name -> newest registered version
        tables: dict[str, Any] = {}  # table name -> loaded table (None: not created yet)
        for ver in versions:
            for r in ver.resources:
                name = view_of_table(ds.name, r.table)
                if name not in newest:
                    tables[name] = self._load((ns, name))
                    newest[name] = max((int(v) for _, v in _versions(tables[name])), default=0)
                if ver.number <= newest[name]:
                    continue
                if len(r.table_schema or ()) > MAX_COLUMNS:
                    report.skipped.append(
                        {
                            "dataset": ds.name,
                            "table": f"{ns}.{name}",
                            "version": ver.number,
                            "columns": len(r.table_schema),
                        }  # fmt: skip
                    )
                    continue
                try:
                    done = self._register(ns, name, ds, ver, r, tables[name])
                    if done is None:  # closed while registering: out of the open catalog
                        self._drop_dataset(ds, report)
                        return
                    sid, tables[name] = done
                except Exception as e:  # noqa: BLE001 - reported; later versions still tried
                    tables[name] = None  # loaded again for the next version
                    report.errors.append(
                        {
                            "dataset": ds.name,
                            "table": f"{ns}.{name}",
                            "version": ver.number,
                            "error": f"{type(e).__name__}: {e}",
                        }  # fmt: skip
                    )
                    continue
                newest[name] = ver.number
                report.registered.append(
                    {
                        "dataset": ds.name,
                        "table": f"{ns}.{name}",
                        "version": ver.number,
                        "snapshot_id": sid,
                    }  # fmt: skip
                )

    def _load(self, ident: tuple[str, str]):
        """The table ``ident``, or None when the catalog has none."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load_table(ident)
        except NoSuchTableError:
            return None

    def _register(self, ns: str, name: str, ds: Dataset, ver: Version, r, table) -> tuple | None:
        """Commit ``ver``'s files of resource ``r`` as a snapshot of ``table`` (created when
        None): (snapshot id, the table as committed); None when the dataset is no longer
        open (an edit closed it meanwhile: the caller drops what is in the catalog)."""
        import pyarrow.parquet as pq
        from pyiceberg.exceptions import CommitFailedException, ValidationException
        from pyiceberg.io import load_file_io
        from pyiceberg.io.pyarrow import parquet_file_to_data_file
        from pyiceberg.table import TableProperties

        paths = [file_uri(self.store, f["key"]) for f in r.files]
        if not paths:
            raise IcebergError(f"{ds.name} v{ver.number} has no Parquet file in {name}")
        ident = (ns, name)
        props = {P_DATASET: ds.name, P_VERSION: str(ver.number), P_FINGERPRINT: ver.fingerprint}
        for attempt in range(5):  # another process may commit the same table meanwhile
            with self._while_open(ds.id) as still_open:
                if not still_open:  # closed by an edit since sync looked: create nothing
                    return None
                if table is None:
                    table = self._load(ident)
                if table is not None:
                    done = {int(v): sid for sid, v in _versions(table)}
                    if ver.number in done:
                        return done[ver.number], table
                self._before_write(ds, ver)
                if table is None:
                    io = load_file_io(self.catalog.properties, paths[0])
                    with io.new_input(paths[0]).open() as f:
                        schema = pq.read_schema(f)
                    try:
                        table = self.catalog.create_table(
                            ident,
                            schema=schema,
                            location=file_uri(self.store, f"{PREFIX}/{ns}/{name}"),
                            # a concurrent commit is retried here, on the table as it
                            # is then: pyiceberg's own retry would replay a stale overwrite
                            properties={P_DATASET: ds.name, "commit.retry.num-retries": "0"},
                        )
                    except Exception:  # noqa: BLE001 - created meanwhile: load it
                        if attempt == 4:
                            raise
                        continue
                try:
                    sid = self._commit(table, ver, paths, props, pq, parquet_file_to_data_file,
                                       TableProperties)  # fmt: skip
                except (CommitFailedException, ValidationException):  # another commit won
                    table = None
                    if attempt == 4:
                        raise
                    time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
                    continue
            # closed between the check and the commit (SQLite: no row lock): undo
            with self._while_open(ds.id) as still_open:
                return (sid, table) if still_open else None
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _while_open(self, dataset_id: str) -> Iterator[bool]:
        """Whether dataset ``dataset_id`` is open (anyone may read it) now, asked of the
        database. On PostgreSQL its row stays share-locked until the block ends, so an edit
        that closes it (an ``UPDATE`` of that row, then :func:`unlist_in`) waits for the
        catalog write inside the block and then removes what it wrote. SQLite has no row
        locks: the caller checks again after its write and undoes it."""
        with self.cat.Session() as s:
            q = select(Dataset.id).where(Dataset.id == dataset_id, read_clause(ANONYMOUS))
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(read=True)
            is_open = s.scalar(q) is not None
            yield is_open

    def _before_write(self, ds: Dataset, ver: Version) -> None:
        """Called between the openness check and the catalog write (tests run an edit
        here to race it deterministically)."""

    @staticmethod
    def _commit(table, ver, paths, props, pq, to_data_file, table_properties) -> int:
        from pyiceberg.table.update.snapshot import ManageSnapshots

        with table.io.new_input(paths[0]).open() as f:
            schema = pq.read_schema(f)
        old_files = [task.file for task in table.scan().plan_files()]
        with _transaction(table) as tx:
            with tx.update_schema() as u:
                u.union_by_name(schema)  # columns added by a new version (nothing otherwise)
            mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
            if table.metadata.properties.get(table_properties.DEFAULT_NAME_MAPPING) != mapping:
                tx.set_properties(**{table_properties.DEFAULT_NAME_MAPPING: mapping})
            with tx.update_snapshot(snapshot_properties=props).overwrite() as ov:
                for df in old_files:
                    ov.delete_data_file(df)
                for p in paths:
                    ov.append_data_file(to_data_file(table.io, tx.table_metadata, p))
                sid = ov.snapshot_id
            with ManageSnapshots(tx) as ms:  # in the same commit as the snapshot
                ms.create_tag(sid, f"v{ver.number}")
        return sid

    # -- the mapping -------------------------------------------------------------------
    def snapshots(self, dataset: str) -> list[dict]:
        """The Iceberg tables of ``dataset`` with, for each registered version, its
        snapshot id: ``[{table, versions: [{version, snapshot_id, timestamp_ms}]}]``."""
        with self.cat.Session() as s:
            ds = find_dataset(s, dataset)
            names = sorted(
                {view_of_table(ds.name, r.table) for v in ds.versions for r in v.resources}
            )
            ns = view_stem(ds.domain)
        out = []
        for name in names:
            if not self.catalog.table_exists((ns, name)):
                continue
            t = self.catalog.load_table((ns, name))
            by_id = {s.snapshot_id: s for s in t.metadata.snapshots}
            out.append(
                {
                    "table": f"{ns}.{name}",
                    "metadata_location": t.metadata_location,
                    "versions": [
                        {
                            "version": int(v),
                            "snapshot_id": sid,
                            "timestamp_ms": by_id[sid].timestamp_ms,
                            "current": t.metadata.current_snapshot_id == sid,
                        }
                        for sid, v in _versions(t)
                    ],
                }
            )
        return out

    def snapshot_of(self, dataset: str, version: int, table: str | None = None) -> int:
        """The snapshot id of ``dataset`` v``version`` (``table``: of a multi-table one)."""
        for t in self.snapshots(dataset):
            if table is not None and not t["table"].endswith("__" + view_stem(table)):
                continue
            for v in t["versions"]:
                if v["version"] == version:
                    return v["snapshot_id"]
        raise IcebergError(
            f"{dataset} v{version} has no Iceberg snapshot",
            hint="run `nsdx iceberg sync`; restricted and private datasets are not registered",
        )

    def version_of(self, snapshot_id: int) -> dict:
        """``{dataset, version, table}`` of an Iceberg snapshot id (any open table)."""
        tables = [i for ns in self.catalog.list_namespaces() for i in self.catalog.list_tables(ns)]
        for ident in tables[:MAX_LOOKUP_TABLES]:
            t = self.catalog.load_table(ident)
            snap = t.metadata.snapshot_by_id(snapshot_id)
            extra = snap.summary.additional_properties if snap and snap.summary else {}
            if P_VERSION in extra:
                return {
                    "dataset": extra.get(P_DATASET),
                    "version": int(extra[P_VERSION]),
                    "table": ".".join(ident),
                    "snapshot_id": snapshot_id,
                }
        raise IcebergError(f"no Iceberg snapshot {snapshot_id} in the open catalog")


_Transaction: Any = None


def _transaction(table):
    """``table.transaction()`` whose ``table_metadata`` is computed once per state.

    pyiceberg's Transaction computes ``table_metadata`` on every access by applying the
    staged updates to a deep copy of the table's metadata — every snapshot, tag and log
    entry of every version — and one commit reads it some thirty times: a registration
    took ~0.23 s of CPU at 40 versions, growing with each version. The result depends
    only on the base metadata and the staged updates (both replaced, never changed in
    place, and frozen pydantic models), so it is kept until either changes."""
    global _Transaction
    if _Transaction is None:
        from pyiceberg.table import Transaction

        class _Tx(Transaction):
            _memo: tuple | None = None

            @property
            def table_metadata(self):
                base, updates = self._table.metadata, self._updates
                memo = self._memo
                if memo is None or memo[0] is not base or memo[1] is not updates:
                    memo = self._memo = (base, updates, super().table_metadata)
                return memo[2]

        _Transaction = _Tx
    return _Transaction(table)


def _versions(table) -> Iterable[tuple[int, str]]:
    """(snapshot id, nsdx version) of a table's snapshots registered by nsdx, oldest first
    (none for None: no table)."""
    for snap in table.metadata.snapshots if table is not None else ():
        extra = snap.summary.additional_properties if snap.summary is not None else {}
        if P_VERSION in extra:
            yield snap.snapshot_id, extra[P_VERSION]


_ICEBERG_TABLES = sa_table(
    "iceberg_tables",
    sa_column("catalog_name"),
    sa_column("table_namespace"),
    sa_column("table_name"),
)


def unlist_in(s: Session, ds: Dataset) -> None:
    """In the transaction of an edit (``catalogue.editing``): take ``ds``'s tables out of the
    open catalog the moment nobody anonymous may read it (made private, restricted, draft
    or deleted), and out of any namespace other than its domain's. Only the catalog's rows
    go (no pyiceberg needed); the metadata files stay in the store, unreferenced. A
    dataset made open again is registered by its next publish or `nsdx iceberg sync`."""
    names = sorted({view_of_table(ds.name, r.table) for v in ds.versions for r in v.resources})
    if not names or not inspect(s.connection()).has_table("iceberg_tables"):
        return
    # the dataset's row first (PostgreSQL: waits for a registration holding it, see
    # IcebergTables._while_open), so the delete below sees what that registration wrote
    s.execute(select(Dataset.id).where(Dataset.id == ds.id).with_for_update())
    t = _ICEBERG_TABLES.c
    q = sa_delete(_ICEBERG_TABLES).where(t.catalog_name == CATALOG_NAME, t.table_name.in_(names))
    if may_read(ANONYMOUS, DatasetFacts.of(ds)):
        q = q.where(t.table_namespace != view_stem(ds.domain))
    s.execute(q)


def load_duckdb_iceberg(con, store: ObjectStore | None = None) -> None:
    """Make ``iceberg_scan`` work in DuckDB connection ``con`` from the PyPI packages
    ``duckdb-extension-iceberg`` and ``duckdb-extension-avro`` (no network ``INSTALL``);
    with ``store``, its S3 credentials too."""
    from ingest.storage.duckdb_s3 import configure_duckdb, load_extension

    load_extension(con, "avro")  # the manifests are Avro files
    load_extension(con, "iceberg")
    if store is not None:
        configure_duckdb(con, store)


def register_after_publish(
    cat: Catalogue, store: ObjectStore, dataset: str, tables: IcebergTables | None = None
) -> list[str]:
    """The publish hook: register ``dataset``'s new versions; warnings, never an exception
    (the version is published whatever happens here). ``tables``: the deployment's
    IcebergTables when the caller has one (see :meth:`IcebergTables.warm_up`)."""
    try:
        report = (tables or IcebergTables(cat, store)).sync([dataset])
    except Exception as e:  # noqa: BLE001 - the publish stands; sync retries
        return [
            f"Iceberg registration failed ({type(e).__name__}: {e}); the version is published"
            " and `nsdx iceberg sync` registers it"
        ]
    return [
        f"Iceberg registration of {e['table']} v{e['version']} failed ({e['error']}); the "
        "version is published and `nsdx iceberg sync` registers it"
        for e in report.errors
    ] + [
        f"{e['table']} v{e['version']} is not registered in Iceberg: {e['columns']:,} columns, "
        f"more than {MAX_COLUMNS:,}; read it with `nsdx query`, nsdx.connect or its download"
        for e in report.skipped
    ]
