"""The web portal: a bilingual search page and dataset pages (server-rendered Jinja2),
rendering the same package dicts and search results as the Action API."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from catalogue.auth import ANONYMOUS
from catalogue.dcat import LICENSE_URLS, schema_org
from catalogue.search import SearchQueryError
from validation.money import to_fen, yuan

from .state import site_url, state_of

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

FACETS = ["organization", "domain", "tags", "res_format", "license_id", "access"]
FACET_LABELS = {
    "organization": "机构 Organisation",
    "domain": "领域 Domain",
    "tags": "标签 Tags",
    "res_format": "格式 Format",
    "license_id": "许可 Licence",
    "access": "访问 Access",
}
PAGE = 20


def _extras(pkg: dict) -> dict:
    return {e["key"]: e["value"] for e in pkg.get("extras") or []}


templates.env.filters["extras"] = _extras
# a price as people read it ("280000.00" -> "¥280,000.00"), the offer's figure exactly
templates.env.filters["yuan"] = lambda v: yuan(to_fen(v))


FAVICON = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' "
    "rx='3' fill='#0b4f6c'/><path d='M4 11V5l4 6V5m4 0v6' stroke='#fff' stroke-width='1.6' "
    "fill='none'/></svg>"
)


@router.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it on every document, JSON-LD included; the same icon as the pages."""
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@router.get("/", response_class=HTMLResponse)
async def search_page(request: Request) -> HTMLResponse:
    st = state_of(request)
    q = request.query_params.get("q", "")
    filters = [(k, v) for k, v in request.query_params.multi_items() if k in FACETS and v]
    page = max(1, int(request.query_params.get("page", "1") or 1))
    fq = [f'{k}:"{v}"' for k, v in filters]
    error = None
    try:
        result = await run_in_threadpool(
            st.index.search,
            q=q,
            fq=fq,
            rows=PAGE,
            start=(page - 1) * PAGE,
            facet_fields=FACETS,
            facet_limit=10,
            principal=ANONYMOUS,
        )
    except SearchQueryError as e:
        error = e.message
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

    return templates.TemplateResponse(
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
    st = state_of(request)
    try:
        pkg = await run_in_threadpool(st.packages.show, ANONYMOUS, name)
    except Exception as e:  # noqa: BLE001 - not found / private: a plain 404 page
        return templates.TemplateResponse(
            request, "missing.html", {"name": name, "message": str(e)}, status_code=404
        )
    site = site_url(request)
    jsonld = json.dumps(schema_org(pkg, site), ensure_ascii=False, indent=1)
    return templates.TemplateResponse(
        request,
        "dataset.html",
        {
            "pkg": pkg,
            "ex": _extras(pkg),
            "license_url": LICENSE_URLS.get(pkg.get("license_id") or ""),
            "jsonld": jsonld.replace("</", "<\\/"),
        },
    )
