"""The full validation report of a dataset as a portal page (``/dataset/NAME/quality``).

The report files on disk hold the failing values as they were read, possibly personal
data; this page never serves them raw. The dataset's publishers
(:func:`catalogue.access.may_read_run_reports`: its organisation's admins and editors,
sysadmins) see every run's report — published versions and runs that published nothing —
with each failing value masked as publishing masks it and cut short
(:func:`validation.report.shown_report`); everyone else who may see the dataset sees the
copy published with each version: every check and its verdict and counts, no values — and
a numeric observed value (an aggregate such as a mean) only if they may read the data
(:func:`catalogue.access.may_read`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from catalogue.access import DatasetFacts, may_read, may_read_run_reports
from catalogue.errors import CatalogueError
from catalogue.quality import (
    ReportNotFound,
    pii_columns,
    published_reports,
    run_reports,
    run_versions,
)
from validation.report import shown_report

from .errorpages import error_response
from .i18n import gettext as _
from .render import render
from .session import viewer
from .state import state_of

router = APIRouter(include_in_schema=False)


def _spec(nx, name: str):
    try:
        return next((s for s in nx.specs() if s.id == name), None)
    except Exception:  # noqa: BLE001 - no datasets.yaml (uploads only): the published schema
        return None


def _report_page(request: Request, name: str):
    st = state_of(request)
    who = viewer(request)
    try:
        pkg = st.packages.show(who, name[:200], st.grants)
    except CatalogueError as e:
        if e.status not in (403, 404):
            raise
        return error_response(
            request,
            404,
            _("Dataset not found"),
            _("There is no dataset %(name)s you may see.", name=name[:100]),
        )
    raw = request.query_params.get("v") or ""
    number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else None
    current = (pkg.get("nsdx") or {}).get("current_version")
    publisher = may_read_run_reports(who, DatasetFacts.of_package(pkg))
    published = [int(v) for v in (pkg.get("nsdx") or {}).get("versions") or []]
    runs = run_versions(st.nx.reports_dir, pkg["name"]) if publisher else []
    versions = sorted(set(published) | set(runs), reverse=True)
    if number is None:
        number = current or (versions[0] if versions else None)
    tables: dict[str, dict] = {}
    source = None
    if number is not None and publisher and number in runs:
        pii = pii_columns(st.cat, pkg["name"], number, _spec(st.nx, pkg["name"]))
        key = st.nx.masking_key()
        tables = {
            t: shown_report(r, pii, key, numbers=True)  # its publishers read the data
            for t, r in run_reports(st.nx.reports_dir, pkg["name"], number).items()
        }
        source = "run"
    elif number is not None and number in published:
        try:
            rep = published_reports(st.cat, st.nx.store, pkg["name"], number)
        except ReportNotFound:
            rep = {"tables": {}}
        # a numeric observed value (a mean, a maximum) is the data's: for its readers only
        numbers = may_read(who, DatasetFacts.of_package(pkg), st.grants, number)
        tables = {t: shown_report(r, {}, None, numbers=numbers) for t, r in rep["tables"].items()}
        source = "published"
    return render(
        request,
        "quality.html",
        {
            "pkg": pkg,
            "number": number,
            "versions": versions,
            "published": published,
            "tables": tables,
            "source": source,
            "publisher": publisher,
        },
        200 if tables or number is None else 404,
    )


@router.get("/dataset/{name}/quality")
async def quality_page(name: str, request: Request):
    return await run_in_threadpool(_report_page, request, name)


__all__ = ["router"]
