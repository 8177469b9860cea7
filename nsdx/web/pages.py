"""The web portal: the search page, dataset pages and organisation pages (server-rendered
Jinja2, in the visitor's language), rendering the same package dicts and search results
as the Action API for the same principal: a signed-in member sees their organisation's
private and draft datasets exactly as the API shows them to their token."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from catalogue.access import granted_for
from catalogue.dcat import schema_org
from catalogue.downloads import absolute
from catalogue.errors import CatalogueError
from catalogue.licences import LICENCES, licence, licence_page

from .errorpages import error_response
from .i18n import N_, core
from .i18n import gettext as _
from .render import _extras, render
from .session import viewer
from .state import site_url, state_of

router = APIRouter(include_in_schema=False)

FACETS = ["groups", "organization", "domain", "tags", "res_format", "license_id", "access"]
FACET_LABELS = {
    "groups": N_("Application scenario"),
    "organization": N_("Organisation"),
    "domain": N_("Domain"),
    "tags": N_("Tags"),
    "res_format": N_("Format"),
    "license_id": N_("Licence"),
    "access": N_("Access"),
}
PAGE = 20


FAVICON = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' "
    "rx='3' fill='#0b4f6c'/><path d='M4 11V5l4 6V5m4 0v6' stroke='#fff' stroke-width='1.6' "
    "fill='none'/></svg>"
)


@router.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on every document, JSON-LD included; the same icon as the pages."""
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


MAX_PAGE = 10_000


class BadPage(CatalogueError):
    status = 400


def _page(raw: str | None) -> int:
    """The ``page`` parameter: a whole number from 1 (a 400 page otherwise)."""
    if raw in (None, ""):
        return 1
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadPage(
            f"page={raw[:20]!r} is not a page number",
            hint=f"use a whole number from 1 to {MAX_PAGE}",
        )
    return int(raw)


@router.get("/", response_class=HTMLResponse)
async def search_page(request: Request) -> HTMLResponse:
    st = state_of(request)
    q = request.query_params.get("q", "")
    filters = [(k, v) for k, v in request.query_params.multi_items() if k in FACETS and v]
    page = _page(request.query_params.get("page"))
    fq = [f'{k}:"{v}"' for k, v in filters]
    error = None
    try:  # what the caller may see (catalogue.access), private datasets included
        result = await run_in_threadpool(
            st.index.search,
            q=q,
            fq=fq,
            rows=PAGE,
            start=(page - 1) * PAGE,
            facet_fields=FACETS,
            facet_limit=10,
            include_private=True,
            include_drafts=True,
            principal=await run_in_threadpool(viewer, request),
            grants=st.grants,
        )
    except CatalogueError as e:  # a bad query, or a bad/expired/revoked token
        error = core(e.message)
        result = {"count": 0, "results": [], "search_facets": {}}

    def link(**changes) -> str:
        params = [("q", q)] if q else []
        params += filters
        for k, v in changes.items():
            if k == "remove":
                params = [p for p in params if p != v]
            elif k == "page":
                params.append(("page", str(v)))
            else:
                params.append((k, v))
        return "/?" + urlencode(params)

    return render(
        request,
        "search.html",
        {
            "q": q,
            "result": result,
            "filters": filters,
            "labels": FACET_LABELS,
            "page": page,
            "pages": max(1, -(-result["count"] // PAGE)),
            "link": link,
            "error": error,
        },
    )


@router.get("/dataset/{name}", response_class=HTMLResponse)
async def dataset_page(name: str, request: Request) -> HTMLResponse:
    return await dataset_response(request, name)


async def dataset_response(
    request: Request,
    name: str,
    *,
    order_error: str | None = None,
    order_form: dict | None = None,
    offer_error: str | None = None,
    offer_form: dict | None = None,
    offer_errors: dict | None = None,
    status: int = 200,
):
    """The dataset page (also re-rendered, with the message and the form kept, when an
    order placed from it is refused)."""
    from .trade_pages import can_sell, offers_for

    st = state_of(request)
    who = await run_in_threadpool(viewer, request)
    try:
        pkg = await run_in_threadpool(st.packages.show, who, name, st.grants)
    except CatalogueError as e:  # not found, or private: the page does not say which
        if e.status not in (403, 404):
            raise  # a failure: a logged 5xx page (nsdx.web.errors), never a 404
        hint = (  # the same for a private and a missing dataset: the page tells nothing
            _("If it is private to an organisation, sign in as one of its members.")
            if who.anonymous
            else _("Search the catalogue instead.")
        )
        return error_response(
            request,
            404,
            _("Dataset not found"),
            _("There is no dataset %(name)s you may see.", name=name[:100]) + " " + hint,
        )
    site = site_url(request)
    pkg = absolute(pkg, site)  # download links on the page are the portal's routes
    jsonld = json.dumps(schema_org(pkg, site), ensure_ascii=False, indent=1)
    offers, buyers = await run_in_threadpool(offers_for, request, pkg["name"])
    previews = await run_in_threadpool(_previews, request, who, pkg)
    history = await run_in_threadpool(st.cat.version_history, pkg["name"])
    registrations = await run_in_threadpool(_registrations, request, pkg["name"])
    checks = await run_in_threadpool(_checks, request, pkg)
    return render(
        request,
        "dataset.html",
        {
            "pkg": pkg,
            "ex": _extras(pkg),
            # the licence's document, else its page here (the terms, as the metadata says)
            "license_url": pkg.get("license_url")
            or licence_page(licence(pkg.get("license_id")).id),
            "jsonld": jsonld.replace("</", "<\\/"),
            "offers": offers,
            "buyers": buyers,
            "previews": previews,
            "history": history,
            "registration": registrations[-1] if registrations else None,
            "checks": checks,
            "site": site,
            "order_error": order_error,
            "order_form": order_form or {},
            "can_sell": await run_in_threadpool(can_sell, request, pkg),
            "can_edit": not who.anonymous and who.can_edit(pkg.get("owner_org")),
            "offer_error": offer_error,
            "offer_form": offer_form or {},
            "offer_errors": offer_errors or {},
        },
        status,
    )


PREVIEW_ROWS = 10


def _registrations(request: Request, name: str) -> list[dict]:
    """The dataset's registrations (a public register: exchange.registration), as the
    visitor may see them."""
    from exchange.registration import list_registrations

    from .trade_pages import actor_of  # the page's visitor: the session, not a token

    return list_registrations(state_of(request).exchange, actor=actor_of(request), dataset=name)


def _checks(request: Request, pkg: dict) -> dict[str, list[dict]]:
    """Per published table (resource id): the expectations that applied to the current
    version and their result, from the report published with it (counts, no values)."""
    from catalogue.quality import ReportNotFound, published_reports

    if not (pkg.get("nsdx") or {}).get("current_version"):
        return {}
    st = state_of(request)
    try:
        rep = published_reports(st.cat, st.nx.store, pkg["name"])
    except ReportNotFound:
        return {}
    out: dict[str, list[dict]] = {}
    for r in pkg.get("resources") or []:
        if not r.get("nsdx_schema"):
            continue
        report = rep["tables"].get(r.get("nsdx_table") or "data")
        if not report:
            continue
        rows = []
        for x in report.get("results") or []:
            cfg = x.get("expectation_config") or {}
            res = x.get("result") or {}
            rows.append(
                {
                    "label": (cfg.get("meta") or {}).get("nsdx_label") or cfg.get("type"),
                    "column": (cfg.get("kwargs") or {}).get("column"),
                    "success": bool(x.get("success")),
                    "unexpected": res.get("unexpected_count"),
                }
            )
        out[r["id"]] = rows
    return out


def _previews(request: Request, who, pkg: dict) -> dict[str, dict]:
    """The first rows of each published table, as published (masked), by the query API's
    own function for this viewer; a table the viewer may not read gets the reason."""
    from catalogue.registry import view_of_table

    from .query import execute

    ex = _extras(pkg)
    domain = (ex.get("domain") or "").replace("-", "_")
    tables = [r for r in pkg.get("resources") or [] if r.get("nsdx_schema")]
    out: dict[str, dict] = {}
    for r in tables[:5]:
        table = r.get("nsdx_table") if len(tables) > 1 else None
        view = f"{domain}.{view_of_table(pkg['name'], table)}"
        try:
            res, _cap = execute(
                state_of(request), who, f"SELECT * FROM {view} LIMIT {PREVIEW_ROWS}", PREVIEW_ROWS
            )
        except CatalogueError as e:
            out[r["id"]] = {"view": view, "error": core(e.message)}
            continue
        from catalogue import jsonout

        out[r["id"]] = {
            "view": view,
            "columns": [f.name for f in res.table.schema],
            "rows": jsonout.rows(res.table),
        }
    return out


@router.get("/organization/{name}", response_class=HTMLResponse)
async def organization_page(name: str, request: Request) -> HTMLResponse:
    """An organisation: its description, its datasets the viewer may see, and (for its
    admins and sysadmins) its members."""
    st = state_of(request)
    who = await run_in_threadpool(viewer, request)
    try:
        org = await run_in_threadpool(st.accounts.org_show, name, who, granted_for(who, st.grants))
    except CatalogueError:
        return error_response(
            request,
            404,
            _("Organisation not found"),
            _("There is no organisation %(name)s.", name=name[:100]),
        )
    result = await run_in_threadpool(
        st.index.search,
        q="",
        fq=[f'organization:"{org["name"]}"'],
        rows=100,
        start=0,
        include_private=True,
        include_drafts=True,
        principal=who,
        grants=st.grants,
    )
    return render(
        request,
        "organization.html",
        {
            "org": org,
            "result": result,
            "show_members": who.can_admin(org["id"]),
        },
    )


@router.get("/licence/{licence_id:path}", response_class=HTMLResponse)
async def licence_view(licence_id: str, request: Request) -> HTMLResponse:
    """A licence of the register (catalogue.licences): its terms — the document the
    metadata (DCAT, schema.org, Croissant, Data Package) points at when the licence has
    none elsewhere — or its own document's link, and the datasets under it the viewer may
    see. An id the register does not know has a page while a dataset the viewer sees names
    it (the publisher's own words); any other id is a 404."""
    st = state_of(request)
    who = await run_in_threadpool(viewer, request)
    known = LICENCES.get(licence_id)
    result = None
    if '"' not in licence_id and "\\" not in licence_id and len(licence_id) <= 100:
        result = await run_in_threadpool(
            st.index.search,
            q="",
            fq=[f'license_id:"{licence_id}"'],
            rows=100,
            start=0,
            include_private=True,
            include_drafts=True,
            principal=who,
            grants=st.grants,
        )
    if known is None and (result is None or not result["count"]):
        return error_response(
            request,
            404,
            _("Licence not found"),
            _("There is no licence %(name)s.", name=licence_id[:100]),
        )
    return render(
        request,
        "licence.html",
        {"lic": known or licence(licence_id), "known": known is not None, "result": result},
    )
