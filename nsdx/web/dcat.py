"""DCAT-AP: ``/catalog.jsonld`` and ``/catalog.ttl`` (paged, 1000 datasets a page, hydra
paging as ckanext-dcat does), ``/dataset/<name>.jsonld`` and ``/dataset/<name>.ttl``;
``?profile=dcat-ap-2`` for DCAT-AP 2.1.1 (3.0.1 by default). Croissant at
``/dataset/<name>/croissant.json``; Frictionless Data Package at ``/dataset/<name>/datapackage.json``."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from catalogue.dcat import (
    PROFILES,
    catalog_jsonld,
    croissant,
    datapackage,
    dataset_jsonld,
    turtle,
)
from catalogue.search import MAX_ROWS

from .state import site_url, state_of

router = APIRouter(tags=["Open data"])
JSONLD = "application/ld+json"
TURTLE = "text/turtle; charset=utf-8"
LD_RESPONSES: dict[int | str, dict] = {
    200: {"content": {JSONLD: {"schema": {"type": "object"}}}, "description": "JSON-LD"}
}
TTL_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"text/turtle": {"schema": {"type": "string"}}}, "description": "Turtle"}
}
PROFILE = Query(
    "dcat-ap-3",
    pattern="^(" + "|".join(PROFILES) + ")$",
    description="dcat-ap-3 (DCAT-AP 3.0.1) or dcat-ap-2 (DCAT-AP 2.1.1)",
)


def _rdf(body: dict, fmt: str) -> Response:
    if fmt == "ttl":
        return Response(turtle(body), media_type=TURTLE)
    return JSONResponse(body, media_type=JSONLD)


@router.get("/catalog.jsonld", summary="The catalogue as DCAT-AP JSON-LD", responses=LD_RESPONSES)
async def catalog(request: Request, page: int = Query(1, ge=1), profile: str = PROFILE) -> Response:
    return await _catalog(request, page, profile, "jsonld")


@router.get("/catalog.ttl", summary="The catalogue as DCAT-AP Turtle", responses=TTL_RESPONSES)
async def catalog_ttl(
    request: Request, page: int = Query(1, ge=1), profile: str = PROFILE
) -> Response:
    return await _catalog(request, page, profile, "ttl")


async def _catalog(request: Request, page: int, profile: str, fmt: str) -> Response:
    st = state_of(request)
    site = site_url(request)
    # the datasets the caller may see (catalogue.access), private ones included; a bad,
    # expired or revoked token is refused (errors: nsdx.web.errors)
    principal = await st.principal_async(request)
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
        result["results"],
        site,
        title="南沙开放数据目录",
        title_en="Nansha open data catalogue",
        profile=profile,
    )
    pages = max(1, -(-result["count"] // MAX_ROWS))
    if pages > 1:
        here = f"{site}/catalog.{fmt}"
        body["@context"] = {**body["@context"], "hydra": "http://www.w3.org/ns/hydra/core#"}
        body["hydra:view"] = {
            "@id": f"{here}?page={page}",
            "@type": "hydra:PartialCollectionView",
            "hydra:totalItems": result["count"],
            "hydra:first": f"{here}?page=1",
            "hydra:last": f"{here}?page={pages}",
            **({"hydra:next": f"{here}?page={page + 1}"} if page < pages else {}),
        }
    return _rdf(body, fmt)


@router.get(
    "/dataset/{name}.jsonld", summary="One dataset as DCAT-AP JSON-LD", responses=LD_RESPONSES
)
async def dataset(name: str, request: Request, profile: str = PROFILE) -> Response:
    return await _one_dataset(
        request, name, lambda p, s: _rdf(dataset_jsonld(p, s, profile), "jsonld")
    )


@router.get("/dataset/{name}.ttl", summary="One dataset as DCAT-AP Turtle", responses=TTL_RESPONSES)
async def dataset_ttl(name: str, request: Request, profile: str = PROFILE) -> Response:
    return await _one_dataset(
        request, name, lambda p, s: _rdf(dataset_jsonld(p, s, profile), "ttl")
    )


@router.get(
    "/dataset/{name}/croissant.json",
    summary="One dataset as MLCommons Croissant",
    responses=LD_RESPONSES,
)
async def dataset_croissant(name: str, request: Request) -> Response:
    return await _one_dataset(
        request, name, lambda p, s: JSONResponse(croissant(p, s), media_type=JSONLD)
    )


@router.get(
    "/dataset/{name}/datapackage.json", summary="One dataset as a Frictionless Data Package"
)
async def dataset_datapackage(name: str, request: Request) -> Response:
    return await _one_dataset(
        request, name, lambda p, s: JSONResponse(datapackage(p, s), media_type="application/json")
    )


async def _one_dataset(request: Request, name: str, render) -> Response:
    """The dataset the caller may read, rendered with ``render(package, site)``."""
    st = state_of(request)
    principal = await st.principal_async(request)  # errors: nsdx.web.errors
    pkg = await run_in_threadpool(st.packages.show, principal, name, st.grants)
    return await run_in_threadpool(render, pkg, site_url(request))
