"""HTTP routes of the CKAN Action API: parse the request, call catalogue.ckan.dispatch,
write its envelope. GET for read actions; POST with a JSON body, a form, or multipart."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from catalogue.ckan import ACTIONS, Upload, dispatch
from catalogue.ckan.envelope import failure
from catalogue.ckan.errors import to_error

from .state import site_url, state_of

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


def _save(upload: UploadFile, root: Path) -> Upload:
    name = Path(upload.filename or "upload").name or "upload"
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("wb") as f:
        shutil.copyfileobj(upload.file, f, 1024 * 1024)
    return Upload(name, path)


async def _read(request: Request) -> tuple[dict, dict[str, UploadFile]]:
    if request.method == "GET":
        return _query_dict(request), {}
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        data, files = {}, {}
        for k, v in form.multi_items():
            if isinstance(v, UploadFile):
                files[k] = v
            else:
                data[k] = v
        return data, files
    raw = await request.body()
    if not raw.strip():
        return _query_dict(request), {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"Bad request - JSON Error: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("Bad request - JSON Error: the body must be a JSON object")
    return data, {}


async def _action(name: str, request: Request) -> Response:
    st = state_of(request)
    site = site_url(request)
    try:
        data, raw_files = await _read(request)
    except ValueError as e:
        from catalogue.ckan.errors import BadRequest

        status, err = to_error(BadRequest(str(e)))
        return json_response(failure(site, name, err), status)
    try:
        principal = await run_in_threadpool(st.principal, request)
    except Exception as e:  # noqa: BLE001 - invalid/expired/revoked token
        status, err = to_error(e)
        return json_response(failure(site, name, err), status)
    files = {}
    for k, f in raw_files.items():
        files[k] = await run_in_threadpool(_save, f, st.uploads_dir)
    ctx = st.context(request, principal, files)
    status, body = await run_in_threadpool(dispatch, name, data, ctx, method=request.method)
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
