"""The Python API: one object that holds a deployment's settings, catalogue and storage.

    >>> from nsdx import Nsdx
    >>> nx = Nsdx()                      # reads NSDX_* from the environment
    >>> nx.ingest(["nansha-bus-gps"])    # same pipeline as `nsdx ingest`
    >>> nx.query("SELECT count(*) FROM transport.nansha_bus_gps")   # a pyarrow.Table

The CLI, the HTTP API and the web pages call these methods; none re-implements them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

from .settings import Settings


class Nsdx:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()

    @cached_property
    def catalogue(self):
        from catalogue.registry import Catalogue

        return Catalogue(self.settings.database_url)

    @cached_property
    def store(self):
        from ingest.storage import open_store

        return open_store(self.settings.storage_url)

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

    def pii_key(self) -> tuple[bytes, bool]:
        return self.settings.pii_key()

    def warm_validation(self, specs) -> None:
        """Start the validation worker now when one of ``specs`` will need it: it imports
        great-expectations (seconds) while the caller loads the catalogue and reads sources."""
        from validation import worker

        if any(worker.may_be_wanted(s.expectations, s.on_invalid) for s in specs):
            worker.prestart()

    def ingest_one(self, spec, *, progress: Callable | None = None, force: bool = False):
        from catalogue.publishing import publish_dataset

        key, _ = self.pii_key()
        return publish_dataset(
            self.catalogue,
            self.store,
            spec,
            pii_key=key,
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

    @cached_property
    def _url_key(self) -> bytes:
        return self.settings.url_signing_key()

    def url_signing_key(self) -> bytes:
        """The secret of signed download URLs (NSDX_URL_SIGNING_KEY or $NSDX_HOME's)."""
        return self._url_key

    def public_url(self, path: str = "") -> str:
        """An absolute URL on this deployment's portal (``NSDX_PUBLIC_URL``, by default the
        address `nsdx serve` listens on)."""
        base = self.settings.public_url or "http://127.0.0.1:8000"
        return base + path

    def datasets(self) -> list[dict]:
        return self.catalogue.packages()

    def dataset(self, name: str) -> dict:
        return self.catalogue.package(name)
