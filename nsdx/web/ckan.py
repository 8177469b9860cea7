"""HTTP routes of the CKAN Action API: parse the request, call catalogue.ckan.dispatch,
write its envelope. GET for read actions; POST with a JSON body, a form, or multipart."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from catalogue.auth import ANONYMOUS, NotAuthorized
from catalogue.ckan import ACTIONS, UPLOAD_ACTIONS, authorize_upload, dispatch
from catalogue.ckan.envelope import failure
from catalogue.ckan.errors import BadRequest, to_error
from validation.errors import NsdxError

from .limits import parse_json
from .state import site_url, state_of
from .uploads import receive_multipart

router = APIRouter(tags=["CKAN Action API"])

_DESCRIPTION = (
    "CKAN Action API. Read actions accept GET with query parameters; every action accepts "
    "POST with a JSON object (or a form / multipart upload). Actions: " + ", ".join(sorted(ACTIONS))
)


def json_response(body: dict, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, default=str),
        status_code=status,
        media_type="application/json;charset=utf-8",
    )


def _query_dict(request: Request) -> dict:
    out: dict = {}
    for k, v in request.query_params.multi_items():
        if k in out:
            out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
        else:
            out[k] = v
    return out


async def _read(request: Request) -> dict:
    """The parameters of a request that carries no files: the query string (GET, or an
    empty POST), a form, or a JSON object (bounded in size and depth: nsdx.web.limits)."""
    if request.method == "GET":
        return _query_dict(request)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = await request.form(max_files=0, max_fields=1000)
        return {k: v for k, v in form.multi_items() if isinstance(v, str)}
    raw = await request.body()
    if not raw.strip():
        return _query_dict(request)
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise BadRequest("Bad request - JSON Error: the body must be a JSON object")
    return data


async def _action(name: str, request: Request) -> Response:
    """One action: who calls and whether the action exists are settled before the body
    is read; a multipart file is written only once the caller may add it (hole: uploads
    were stored before authorisation, for any action, and kept)."""
    st = state_of(request)
    site = site_url(request)

    def fail(e: BaseException) -> Response:
        status, err = to_error(e)
        return json_response(failure(site, name, err), status)

    spec = ACTIONS.get(name)
    if spec is None or (request.method == "GET" and not spec.get):
        ctx = st.context(request, ANONYMOUS)  # dispatch answers the bad request
        status, body = await run_in_threadpool(dispatch, name, {}, ctx, method=request.method)
        return json_response(body, status)
    try:
        principal = await st.principal_async(request)
    except NsdxError as e:  # invalid/expired/revoked token: refused, never anonymous
        return fail(e)
    ctx = st.context(request, principal)
    received = None
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            accepts = name in UPLOAD_ACTIONS
            if accepts and principal.anonymous:
                raise NotAuthorized(
                    "an API token is required to upload files",
                    hint="send it in the Authorization header; create one with `nsdx token create`",
                )

            async def authorize(fields: dict) -> None:
                await run_in_threadpool(authorize_upload, ctx, name, fields)

            received = await receive_multipart(
                request, st.uploads_dir, accepts_files=accepts, authorize=authorize, action=name
            )
            data, ctx.files = received.data, received.files
        else:
            data = await _read(request)
    except NsdxError as e:
        return fail(e)
    try:
        status, body = await run_in_threadpool(dispatch, name, data, ctx, method=request.method)
    except BaseException:
        if received is not None:
            received.discard()
        raise
    if status != 200 and received is not None:
        received.discard()  # a refused or failed upload leaves nothing behind
    return json_response(body, status)


async def call_action(name: str, request: Request) -> Response:
    return await _action(name, request)


for _path, _label in (("/api/3/action/{name}", "v3"), ("/api/action/{name}", "unversioned")):
    for _method in ("GET", "POST"):
        router.add_api_route(
            _path,
            call_action,
            methods=[_method],
            summary=f"Call a CKAN action ({_method}, {_label})",
            description=_DESCRIPTION,
            operation_id=f"ckan_action_{_label}_{_method.lower()}",
        )


@router.get("/api/3", include_in_schema=False)
@router.get("/api", include_in_schema=False)
async def api_version() -> Response:
    return json_response({"version": 3})
