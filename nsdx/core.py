"""The service root and the Python API: one object per deployment that builds its
settings, catalogue, storage, accounts, search index, jobs and exchange once.

    >>> from nsdx import Nsdx
    >>> nx = Nsdx()                      # reads NSDX_* from the environment
    >>> nx.ingest(["nansha-bus-gps"])    # same pipeline as `nsdx ingest`
    >>> nx.query("SELECT count(*) FROM transport.nansha_bus_gps")   # a pyarrow.Table

The CLI commands, the HTTP routes, the web pages and Python callers all use this object
(the web app holds exactly one); none builds a catalogue, an index or an exchange of its
own. Each part is built lazily, on first use, under the root's lock: two requests that
arrive together at a cold server share one exchange (one ledger writer, one group commit),
one search index and one job runner.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .settings import Settings

if TYPE_CHECKING:
    from catalogue.access import Grants
    from catalogue.auth import Accounts
    from catalogue.editing import Packages
    from catalogue.iceberg import IcebergTables
    from catalogue.jobs import JobDeps, Jobs
    from catalogue.registry import Catalogue
    from catalogue.search import SearchIndex
    from exchange.context import Exchange
    from ingest.storage import ObjectStore

T = TypeVar("T")


class service(Generic[T]):  # noqa: N801 - used as a decorator, like cached_property
    """A part of the service root, built once on first use under the root's lock.

    Like :func:`functools.cached_property` (the value then lives in the instance's
    ``__dict__`` and later reads take no lock), but two threads that ask at the same time
    wait for one build instead of each building their own. The lock is re-entrant: a part
    may use other parts while it is built (the exchange uses the catalogue)."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self.build = build
        self.name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        try:
            return obj.__dict__[self.name]
        except KeyError:
            pass
        with obj._lock:
            if self.name not in obj.__dict__:
                obj.__dict__[self.name] = self.build(obj)
            return obj.__dict__[self.name]


class Nsdx:
    def __init__(self, settings: Settings | None = None, *, read_only: bool = False) -> None:
        """``read_only``: for commands that only read. The deployment must already exist
        (:meth:`require_state`), and no key (personal-data, ledger) is generated."""
        self.settings = settings or Settings.from_env()
        self._lock = threading.RLock()
        self.read_only = read_only
        if read_only:
            self.require_state()

    def require_state(self) -> None:
        """Fail unless this deployment's catalogue database is there — without creating
        anything (no folder, database or key): says where it looked and what to set."""
        from catalogue.db import database_exists, sqlite_path
        from catalogue.errors import StateNotFound

        url = self.settings.database_url
        if database_exists(url):
            return
        path = sqlite_path(url)
        if path is not None:
            where = f"{path} does not exist"
        else:
            from sqlalchemy.engine import make_url

            where = f"{make_url(url).render_as_string(hide_password=True)} holds no catalogue"
        raise StateNotFound(
            f"no nsdx deployment here: {where} (state folder NSDX_HOME = {self.settings.home})",
            hint="run nsdx in the folder that holds the deployment's .nsdx, or set NSDX_HOME "
            "to its state folder (NSDX_DATABASE_URL for PostgreSQL); `nsdx ingest` creates a "
            "new deployment",
            home=str(self.settings.home),
        )

    def provide(self, **parts: Any) -> None:
        """Use these parts instead of building them (an embedding application that already
        holds an exchange, a test with its own signing key). Before first use only."""
        with self._lock:
            for name, value in parts.items():
                if not isinstance(type(self).__dict__.get(name), service):
                    raise TypeError(f"{name!r} is not a part of the service root")
                if name in self.__dict__ and self.__dict__[name] is not value:
                    raise RuntimeError(f"{name!r} is already built; provide it before use")
                self.__dict__[name] = value

    def built(self, name: str) -> Any | None:
        """The part ``name`` if it has been built, else None (never builds it)."""
        return self.__dict__.get(name)

    @service
    def catalogue(self) -> Catalogue:
        from catalogue.registry import Catalogue

        return Catalogue(self.settings.database_url)

    @service
    def store(self) -> ObjectStore:
        from ingest.storage import open_store

        return open_store(self.settings.storage_url)

    @service
    def accounts(self) -> Accounts:
        from catalogue.auth import Accounts

        return Accounts(self.catalogue)

    @service
    def packages(self) -> Packages:
        from catalogue.editing import Packages

        return Packages(self.catalogue)

    @service
    def index(self) -> SearchIndex:
        from catalogue.editing import render_packages
        from catalogue.search import index_for

        return index_for(self.catalogue, render_packages)

    @service
    def jobs(self) -> Jobs:
        from catalogue.jobs import Jobs

        return Jobs(self.catalogue, runner_factory=lambda j: make_runner(self, j, self.job_deps))

    @service
    def grants(self) -> Grants:
        """The exchange's live-grant check plugged into the catalogue's access rule
        (:mod:`catalogue.access`, wired in :mod:`nsdx.access`)."""
        from .access import exchange_grants

        return exchange_grants(self.catalogue)

    @service
    def exchange(self) -> Exchange:
        """The exchange core: one per deployment, so one ledger writer and one group
        commit serve every request."""
        from exchange.context import Exchange

        key, _ = self.pii_key()
        return Exchange(
            self.catalogue,
            self.store,
            home=self.settings.home,
            pii_key=key,
            create_keys=not self.read_only,
        )

    @service
    def iceberg(self) -> IcebergTables:
        """The open Iceberg catalog: every open published version as a snapshot
        (:mod:`catalogue.iceberg`); ``sync``, ``snapshots``, ``snapshot_of``, ``version_of``."""
        from catalogue.iceberg import IcebergTables

        return IcebergTables(self.catalogue, self.store)

    def job_deps(self) -> JobDeps:
        from catalogue.jobs import JobDeps

        return JobDeps(self.catalogue, self.store, self.masking_key(), self.reports_dir)

    @property
    def uploads_dir(self) -> Path:
        return self.settings.home / "uploads"

    def specs(self):
        from ingest.spec import load_specs

        return load_specs(self.settings.datasets_path)

    def select_specs(self, ids: Sequence[str], all_: bool = False):
        from ingest.errors import DatasetNotDeclared

        specs = self.specs()
        if all_:
            return specs
        by_id = {s.id: s for s in specs}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DatasetNotDeclared(
                f"not declared in {self.settings.datasets_path}: {', '.join(missing)}",
                hint="check the id (`nsdx datasets list --declared`) or add it to datasets.yaml",
            )
        return [by_id[i] for i in ids]

    @property
    def reports_dir(self) -> Path:
        return self.settings.home / "reports"

    def masking_key(self) -> bytes:
        """The personal-data masking key for work that writes data (ingest, jobs)."""
        key, _ = self.settings.pii_key(create=True)
        if key is None:  # pragma: no cover - create=True always yields one
            raise RuntimeError("no personal-data masking key: set NSDX_PII_KEY")
        return key

    def pii_key(self) -> tuple[bytes | None, bool]:
        """The personal-data masking key (generated once unless read-only: then None when
        there is none)."""
        return self.settings.pii_key(create=not self.read_only)

    def warm_validation(self, specs) -> None:
        """Start the validation worker now when one of ``specs`` will need it: it imports
        great-expectations (seconds) while the caller loads the catalogue and reads sources."""
        from validation import worker

        if any(worker.may_be_wanted(s.expectations, s.on_invalid) for s in specs):
            worker.prestart()

    def ingest_one(self, spec, *, progress: Callable | None = None, force: bool = False):
        from catalogue.publishing import publish_dataset

        return publish_dataset(
            self.catalogue,
            self.store,
            spec,
            pii_key=self.masking_key(),
            reports_dir=self.reports_dir,
            progress=progress,
            force=force,
        )

    def ingest(self, ids: Sequence[str] = (), *, all_: bool = False, force: bool = False):
        specs = self.select_specs(ids, all_)
        self.warm_validation(specs)
        return [self.ingest_one(s, force=force) for s in specs]

    def connect(self, **kw):
        from catalogue.query import connect

        return connect(self.catalogue, self.store, **kw)

    def query(self, sql: str, *, max_rows: int | None = None):
        from catalogue.query import run_query

        return run_query(self.connect(), sql, max_rows=max_rows)

    @service
    def url_key(self) -> bytes:
        """The secret of signed download URLs (NSDX_URL_SIGNING_KEY or $NSDX_HOME's)."""
        return self.settings.url_signing_key()

    def url_signing_key(self) -> bytes:
        return self.url_key

    def public_url(self, path: str = "") -> str:
        """An absolute URL on this deployment's portal (``NSDX_PUBLIC_URL``, by default the
        address `nsdx serve` listens on)."""
        base = self.settings.public_url or "http://127.0.0.1:8000"
        return base + path

    def datasets(self) -> list[dict]:
        return self.catalogue.packages()

    def dataset(self, name: str) -> dict:
        return self.catalogue.package(name)


def jobs_mode(nx: Nsdx) -> str:
    """``queue`` (procrastinate on PostgreSQL) or ``thread`` (in-process). NSDX_JOBS
    chooses; by default PostgreSQL deployments queue and SQLite ones use threads."""
    import os

    from catalogue.errors import CatalogueError

    mode = os.environ.get("NSDX_JOBS", "").strip().lower()
    on_pg = nx.settings.database_url.startswith("postgresql")
    if mode not in ("", "queue", "thread"):
        raise CatalogueError(
            f"NSDX_JOBS={mode!r} is not a job mode",
            hint="set NSDX_JOBS=queue (PostgreSQL) or thread, or leave it unset",
        )
    if mode == "queue" and not on_pg:
        raise CatalogueError(
            "NSDX_JOBS=queue needs PostgreSQL",
            hint="set NSDX_DATABASE_URL=postgresql+psycopg://..., or NSDX_JOBS=thread",
        )
    return mode or ("queue" if on_pg else "thread")


def make_runner(nx: Nsdx, jobs, deps):
    if jobs_mode(nx) == "queue":
        from catalogue.jobs import ProcrastinateRunner

        return ProcrastinateRunner(nx.settings.database_url)
    from catalogue.jobs import ThreadRunner

    return ThreadRunner(jobs, deps)
