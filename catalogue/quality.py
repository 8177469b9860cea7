"""A dataset's validation reports, for the pages that show them.

Two copies exist of every report (``ingest.pipeline``): the one published with a version
(``<prefix>/reports/<table>.validation.json`` in object storage: counts and verdicts, no
sample values) and the provider's own (``$NSDX_HOME/reports/<dataset>/<stamp>-v<N>-<table>
.json``, mode 600, with the failing values as they were read — possibly personal data),
kept for every run, including runs that published nothing.

Who reads which is :func:`catalogue.access.may_read_run_reports`; what is served is
:func:`validation.report.shown_report` of either copy (the provider's with its samples
masked by the publishing key and cut short). Callers check that the viewer may see the
dataset first (``Packages.show``).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .errors import CatalogueError
from .models import Version
from .registry import Catalogue, find_dataset

MAX_REPORT_BYTES = 32 * 1024 * 1024  # a report file larger than this is not read
RUN_FILE = re.compile(r"^(\d{8}T\d{6}Z)-v(\d+)-(.+)\.json$")


class ReportNotFound(CatalogueError):
    status = 404


_cache: OrderedDict[tuple, dict] = OrderedDict()  # published copies: a version never changes
_lock = threading.Lock()


def _version(cat: Catalogue, name: str, number: int | None) -> tuple[str, Version | None]:
    with cat.Session() as s:
        ds = find_dataset(s, name, include_deleted=True)
        want = number if number is not None else ds.current_version
        v = next((v for v in ds.versions if v.number == want), None)
        if v is not None:
            s.expunge(v)
        return ds.id, v


def pii_columns(cat: Catalogue, name: str, number: int | None = None, spec=None) -> dict[str, str]:
    """``{column: kind}`` of the personal columns: as published in the version's schema
    (its current one by default), and as declared in ``spec`` (datasets.yaml) when given —
    a dropped column is only there."""
    out: dict[str, str] = {}
    _id, v = _version(cat, name, number)
    if v is not None:
        with cat.Session() as s:
            ver = s.get(Version, v.id)
            for r in ver.resources if ver else []:
                for c in r.table_schema or []:
                    if c.get("pii") and c["pii"] != "none":
                        out[c["name"]] = c["pii"]
    for f in getattr(spec, "schema", None) or ():
        if f.pii and f.pii != "none":
            out.setdefault(f.name.split(".")[-1], f.pii)
    return out


def published_reports(cat: Catalogue, store, name: str, number: int | None = None) -> dict:
    """``{"version": N, "tables": {table: report dict}}``: the copies published with
    version ``number`` (the current one by default), without sample values."""
    ds_id, v = _version(cat, name, number)
    if v is None:
        raise ReportNotFound(
            f"dataset {name!r} has no published version"
            + (f" {number}" if number is not None else ""),
            hint="a report of a run that published nothing is shown to the dataset's editors",
        )
    key = (ds_id, v.number, v.fingerprint)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    tables: dict[str, Any] = {}
    for f in v.manifest.get("files") or []:
        path = str(f.get("path") or "")
        if not (path.startswith("reports/") and path.endswith(".validation.json")):
            continue
        if int(f.get("bytes") or 0) > MAX_REPORT_BYTES:
            continue
        table = path[len("reports/") : -len(".validation.json")]
        try:
            tables[table] = json.loads(store.get_bytes(f"{v.prefix}/{path}"))
        except (OSError, ValueError, KeyError):
            continue  # a missing copy: the page says there is no report for that table
    out = {
        "version": v.number,
        "created": v.created.isoformat(timespec="seconds"),
        "tables": tables,
    }
    with _lock:
        _cache[key] = out
        while len(_cache) > 256:
            _cache.popitem(last=False)
    return out


def run_versions(reports_dir: Path, name: str) -> list[int]:
    """Version numbers the provider's reports exist for (newest first), published or not."""
    base = reports_dir / name
    if not base.is_dir():
        return []
    found = {int(m.group(2)) for p in base.iterdir() if (m := RUN_FILE.match(p.name))}
    return sorted(found, reverse=True)


def run_reports(reports_dir: Path, name: str, number: int) -> dict[str, dict]:
    """``{table: report dict}``: the provider's own reports of the latest run that tried
    to publish version ``number`` (raw samples: serve them only through
    :func:`validation.report.shown_report`)."""
    base = reports_dir / name
    latest: dict[str, tuple[str, Path]] = {}
    if base.is_dir():
        for p in base.iterdir():
            m = RUN_FILE.match(p.name)
            if m and int(m.group(2)) == number:
                table = m.group(3)
                if table not in latest or m.group(1) > latest[table][0]:
                    latest[table] = (m.group(1), p)
    if not latest:
        raise ReportNotFound(f"no validation report of {name!r} version {number}")
    out = {}
    for table, (_stamp, p) in sorted(latest.items()):
        if p.stat().st_size > MAX_REPORT_BYTES:
            continue
        try:
            out[table] = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return out


__all__ = ["ReportNotFound", "pii_columns", "published_reports", "run_reports", "run_versions"]
