"""Publish a declared dataset: run the ingest pipeline, then move the catalogue pointer.

This is the one function behind ``nsdx ingest``, the upload endpoint and background jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingest.pipeline import IngestResult, PreviousVersion, run_pipeline
from ingest.spec import DatasetSpec
from ingest.storage import ObjectStore

from .registry import Catalogue


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
    cur = cat.current(spec.id)
    previous = PreviousVersion(cur.number, cur.fingerprint) if cur else None
    result = run_pipeline(
        spec,
        store,
        previous=previous,
        pii_key=pii_key,
        progress=progress,
        resolve_dataset=lambda ds_id: resolve_files(cat, store, ds_id),
        reports_dir=reports_dir,
        force=force,
    )
    if result.status == "up_to_date":
        cat.touch_metadata(spec)  # titles, notes, tags may have changed
    else:
        cat.register_version(spec, result, store.url)
    return result


def resolve_files(cat: Catalogue, store: ObjectStore, dataset_id: str) -> list[str]:
    """Readable locations of a published dataset's current Parquet files (referential checks)."""
    out = []
    for t in cat.published_tables():
        if t.dataset == dataset_id:
            out.extend(store.uri(k) for k in t.uris)
    return out
