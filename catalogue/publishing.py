"""Publish a declared dataset: run the ingest pipeline, then move the catalogue pointer.

This is the one function behind ``nsdx ingest``, the upload endpoint and background jobs.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ingest import failpoints
from ingest.arrow_pandas import without_pandas
from ingest.pipeline import IngestResult, PreviousVersion, run_pipeline
from ingest.spec import DatasetSpec
from ingest.storage import ObjectStore

from . import iceberg
from .registry import Catalogue

# Staging leftovers (local folders, S3 intent markers and their uncommitted objects, unfinished
# multipart uploads) older than this are removed by the next publish, as `nsdx gc` does; at
# most once an hour per store and process. Longer than any publish: a live one is never touched.
GC_AFTER_SECONDS = 24 * 3600.0
_GC_EVERY_SECONDS = 3600.0
_last_gc: dict[str, float] = {}
_gc_lock = threading.Lock()


def collect_leftovers(store: ObjectStore, older_than: float = GC_AFTER_SECONDS) -> list[str]:
    """Run ``store.gc`` unless it ran for this store in the last hour; never fails a publish
    (an unreachable store fails the publish itself, with its own message)."""
    with _gc_lock:
        now = time.monotonic()
        if now - _last_gc.get(store.url, -_GC_EVERY_SECONDS) < _GC_EVERY_SECONDS:
            return []
        _last_gc[store.url] = now
    try:
        return store.gc(older_than)
    except Exception:  # noqa: BLE001 - housekeeping: `nsdx gc` reports its errors
        return []


def publish_dataset(
    cat: Catalogue,
    store: ObjectStore,
    spec: DatasetSpec,
    *,
    pii_key: bytes,
    reports_dir: Path | None = None,
    progress: Callable[..., None] | None = None,
    force: bool = False,
) -> IngestResult:
    cat.check_new_name(spec.id)  # before any file is written
    collect_leftovers(store, GC_AFTER_SECONDS)
    cur = cat.current(spec.id)
    previous = (
        PreviousVersion(
            cur.number,
            cur.fingerprint,
            {t["name"]: t["schema"] for t in (cur.manifest or {}).get("tables", [])},
        )
        if cur
        else None
    )
    # Iceberg's catalog is opened in the background once this run writes a new version of
    # an open dataset (only the open ones are registered; which are is decided at the
    # registration, by the database: this guess only saves a restricted one the import)
    ice = iceberg.IcebergTables(cat, store) if iceberg.enabled() else None
    warm = ice.warm_up if ice is not None and spec.access == "open" else None
    claims = _Claims(cat, spec.id, on_take=warm)
    try:
        result = run_pipeline(
            spec,
            store,
            previous=previous,
            pii_key=pii_key,
            progress=progress,
            resolve_dataset=lambda ds_id: resolve_files(cat, store, ds_id, spec.organization),
            reports_dir=reports_dir,
            force=force,
            claims=claims,
        )
        if result.status == "up_to_date":
            cat.touch_metadata(spec)  # titles, notes, tags may have changed
            return result
        failpoints.hit("catalogue.register")
        _ver, current = cat.register_version(spec, result, store.url)
        failpoints.hit("catalogue.registered")
        if ice is not None:  # after the commit point: a failure here leaves a warning
            with without_pandas():  # pyarrow would import it (~0.2 s) for pyiceberg's values
                late = iceberg.register_after_publish(cat, store, spec.id, ice)
            if late:
                result.warnings.extend(late)
                if result.status == "published":
                    result.status = "published_with_warnings"
        if not current:
            now = cat.current(spec.id)
            result.warnings.append(
                f"v{result.version} is published and registered, but v{now.number if now else '?'}"
                ", published meanwhile by another run, stays current (the current version only "
                "moves forward)"
            )
            result.current = False
        return result
    finally:
        if ice is not None:  # a refused or failed run leaves no thread of its own behind
            ice.settle()


class _Claims:
    """Version numbers of one run, held in the catalogue database (see ingest.pipeline.Claims)."""

    def __init__(
        self, cat: Catalogue, dataset: str, on_take: Callable[[], None] | None = None
    ) -> None:
        self.cat, self.dataset, self.run_id = cat, dataset, str(uuid.uuid4())
        self.on_take = on_take  # called once a number is taken: a new version is coming

    def take(self, fingerprint: str) -> int:
        self.fingerprint = fingerprint
        number = self.cat.claim_version(self.dataset, fingerprint, self.run_id)
        if self.on_take is not None:
            self.on_take()
        return number

    def pending(self) -> list[tuple[int, str, str]]:
        return self.cat.pending_claims(self.dataset)

    def adopt(self, number: int, old_run: str) -> bool:
        return self.cat.adopt_claim(self.dataset, number, old_run, self.run_id)

    def writing(self, number: int) -> None:
        self.cat.mark_claim(self.dataset, number, self.run_id, "writing")

    def release(self, number: int) -> None:
        self.cat.release_claim(self.dataset, number, self.run_id)


def resolve_files(
    cat: Catalogue, store: ObjectStore, dataset_id: str, organization: str | None
) -> list[str]:  # a validation.duck.DatasetFiles: with how DuckDB reads them from ``store``
    """Readable locations of a published dataset's current Parquet files (referential
    checks, ``in_dataset``), when the publishing dataset's ``organization`` may read its data
    (:func:`catalogue.access.may_read`, as its members; no grants: a check is not a purchase).

    A provider declares the checks of its own uploads (the portal's form, the Action API), and
    the validation report shows it which of its values are missing from the other dataset and
    why a check could not run: against data it may not read that is a membership oracle over
    another organisation's restricted, private or draft data. Such a dataset is answered as
    one not published (nothing), so the report says no more than for a name that does not
    exist."""
    from sqlalchemy import select

    from ingest.storage.duckdb_s3 import configure_duckdb
    from validation.duck import DatasetFiles

    from .access import ANONYMOUS, DatasetFacts, Principal, may_read
    from .models import Organization

    out = DatasetFiles(configure=lambda con: configure_duckdb(con, store))
    with cat.Session() as s:
        org_id = (
            s.scalar(select(Organization.id).where(Organization.name == organization))
            if organization
            else None
        )
        reader = (
            Principal(user_id=f"org:{org_id}", roles={org_id: "member"}) if org_id else ANONYMOUS
        )
        for ds, t in cat.published_tables_in(s):
            if t.dataset == dataset_id and may_read(reader, DatasetFacts.of(ds)):
                out.extend(store.uri(k) for k in t.uris)
    return out
