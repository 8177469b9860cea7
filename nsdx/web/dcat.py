"""DCAT-AP JSON-LD: ``/catalog.jsonld`` (paged, 1000 datasets a page, hydra paging as
ckanext-dcat does) and ``/dataset/<name>.jsonld``."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from catalogue.dcat import catalog_jsonld, croissant, dataset_jsonld
from catalogue.search import MAX_ROWS

from .state import site_url, state_of

router = APIRouter(tags=["Open data"])
JSONLD = "application/ld+json"


@router.get("/catalog.jsonld", summary="The catalogue as DCAT-AP JSON-LD")
async def catalog(request: Request, page: int = Query(1, ge=1)) -> JSONResponse:
    st = state_of(request)
    site = site_url(request)
    # the datasets the caller may see (catalogue.access), private ones included; a bad,
    # expired or revoked token is refused (errors: nsdx.web.errors)
    principal = await run_in_threadpool(st.principal, request)
    result = await run_in_threadpool(
        partial(
            st.index.search,
            rows=MAX_ROWS,
            start=(page - 1) * MAX_ROWS,
            sort="name asc",
            principal=principal,
            include_private=True,
            grants=st.grants,
        )
    )
    body = catalog_jsonld(
        result["results"], site, title="南沙开放数据目录", title_en="Nansha open data catalogue"
    )
    pages = max(1, -(-result["count"] // MAX_ROWS))
    if pages > 1:
        body["@context"] = {**body["@context"], "hydra": "http://www.w3.org/ns/hydra/core#"}
        body["hydra:view"] = {
            "@id": f"{site}/catalog.jsonld?page={page}",
            "@type": "hydra:PartialCollectionView",
            "hydra:totalItems": result["count"],
            "hydra:first": f"{site}/catalog.jsonld?page=1",
            "hydra:last": f"{site}/catalog.jsonld?page={pages}",
            **({"hydra:next": f"{site}/catalog.jsonld?page={page + 1}"} if page < pages else {}),
        }
    return JSONResponse(body, media_type=JSONLD)


@router.get("/dataset/{name}.jsonld", summary="One dataset as DCAT-AP JSON-LD")
async def dataset(name: str, request: Request) -> JSONResponse:
    return await _one_dataset(request, name, dataset_jsonld)


@router.get("/dataset/{name}/croissant.json", summary="One dataset as MLCommons Croissant")
async def dataset_croissant(name: str, request: Request) -> JSONResponse:
    return await _one_dataset(request, name, croissant)


async def _one_dataset(request: Request, name: str, render) -> JSONResponse:
    """The dataset the caller may read, rendered with ``render(package, site)``."""
    st = state_of(request)
    principal = await run_in_threadpool(st.principal, request)  # errors: nsdx.web.errors
    pkg = await run_in_threadpool(st.packages.show, principal, name, st.grants)
    return JSONResponse(render(pkg, site_url(request)), media_type=JSONLD)
