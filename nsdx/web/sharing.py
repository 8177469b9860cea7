"""The Delta Sharing server (``/delta-sharing/...``) for bought data, the signed download
route of the local-folder store, and the buyer's profile endpoint.

Protocol: https://github.com/delta-io/delta-sharing/blob/main/PROTOCOL.md. The answers are
built by :mod:`exchange.sharing`; this module only speaks HTTP. Errors answer
``{"errorCode", "message"}`` with 400/401/403/404 (never 5xx for authentication or a
missing share/table: the official client retries 429/5xx for about 100 s).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from exchange import sharing
from exchange.errors import ExchangeError, InvalidRequest
from ingest.errors import StorageError

from . import errors
from .exchange import _call, _exchange
from .limits import BadJson, parse_json
from .state import site_url

router = APIRouter(tags=["delta-sharing"])

PREFIX = "/delta-sharing"
VERSION_HEADER = "Delta-Table-Version"
CAPABILITIES = "delta-sharing-capabilities"


def _token(request: Request) -> str | None:
    h = request.headers.get("authorization") or ""
    if h[:7].lower() == "bearer ":
        return h[7:].strip()
    return h.strip() or None


def _error(e: Exception) -> Response:
    """The Delta Sharing dialect of the one error shape (:func:`errors.sharing_error`)."""
    return errors.sharing_error(errors.problem_of(e))


def _answer(request: Request, fn: Callable[[Any, str | None], Any]):
    try:
        return JSONResponse(fn(_exchange(request), _token(request)))
    except (sharing.SharingError, ExchangeError) as e:
        return _error(e)


def _ndjson(answer: sharing.TableAnswer) -> StreamingResponse:
    headers = {VERSION_HEADER: str(answer.version), CAPABILITIES: "responseformat=parquet"}
    return StreamingResponse(
        sharing.ndjson(answer.lines),
        media_type="application/x-ndjson; charset=utf-8",
        headers=headers,
    )


# -- listing --------------------------------------------------------------------------------


@router.get(f"{PREFIX}/shares")
def shares(request: Request, maxResults: int | None = None, pageToken: str | None = None):  # noqa: N803
    return _answer(request, lambda ex, t: sharing.list_shares(ex, t, maxResults, pageToken))


@router.get(f"{PREFIX}/shares/{{share}}")
def share(request: Request, share: str):
    return _answer(request, lambda ex, t: sharing.get_share(ex, t, share))


@router.get(f"{PREFIX}/shares/{{share}}/schemas")
def schemas(
    request: Request, share: str, maxResults: int | None = None, pageToken: str | None = None
):  # noqa: N803
    return _answer(request, lambda ex, t: sharing.list_schemas(ex, t, share, maxResults, pageToken))


@router.get(f"{PREFIX}/shares/{{share}}/schemas/{{schema}}/tables")
def tables(
    request: Request,
    share: str,
    schema: str,
    maxResults: int | None = None,  # noqa: N803
    pageToken: str | None = None,  # noqa: N803
):
    return _answer(
        request, lambda ex, t: sharing.list_tables(ex, t, share, schema, maxResults, pageToken)
    )


@router.get(f"{PREFIX}/shares/{{share}}/all-tables")
def all_tables(
    request: Request, share: str, maxResults: int | None = None, pageToken: str | None = None
):  # noqa: N803
    return _answer(
        request, lambda ex, t: sharing.list_all_tables(ex, t, share, maxResults, pageToken)
    )


# -- one table ------------------------------------------------------------------------------

_TABLE = f"{PREFIX}/shares/{{share}}/schemas/{{schema}}/tables/{{table}}"


@router.get(f"{_TABLE}/version")
def table_version(
    request: Request,
    share: str,
    schema: str,
    table: str,
    startingTimestamp: str | None = None,  # noqa: N803
):
    try:
        v = sharing.table_version(
            _exchange(request), _token(request), share, schema, table, startingTimestamp
        )
    except (sharing.SharingError, ExchangeError) as e:
        return _error(e)
    return JSONResponse({}, headers={VERSION_HEADER: str(v)})


@router.get(f"{_TABLE}/metadata")
def table_metadata(request: Request, share: str, schema: str, table: str):
    try:
        sharing.check_response_format(request.headers.get(CAPABILITIES))
        answer = sharing.table_metadata(_exchange(request), _token(request), share, schema, table)
    except (sharing.SharingError, ExchangeError) as e:
        return _error(e)
    return _ndjson(answer)


@router.post(f"{_TABLE}/query")
async def table_query(request: Request, share: str, schema: str, table: str):
    raw = await request.body()
    body: Any = {}
    if raw.strip():
        try:
            body = parse_json(raw)
        except BadJson as e:
            return _error(sharing.BadRequest(e.message))
    ex = _exchange(request)
    token = _token(request)

    def run():
        return sharing.query_table(
            ex,
            token,
            share,
            schema,
            table,
            body,
            file_url=sharing.store_file_url(ex, str(request.base_url)),
        )

    from starlette.concurrency import run_in_threadpool

    try:
        sharing.check_response_format(request.headers.get(CAPABILITIES))
        answer = await run_in_threadpool(run)
    except (sharing.SharingError, ExchangeError) as e:
        return _error(e)
    return _ndjson(answer)


@router.get(f"{_TABLE}/changes")
def table_changes(request: Request, share: str, schema: str, table: str):
    try:
        sharing.table_version(_exchange(request), _token(request), share, schema, table)
    except (sharing.SharingError, ExchangeError) as e:
        return _error(e)
    return _error(
        sharing.BadRequest("change data feed is not supported: nsdx shares one version per grant")
    )


# -- files of the local-folder store --------------------------------------------------------


@router.get(f"{PREFIX}/files/{{key:path}}", operation_id="delta_sharing_file")
@router.head(f"{PREFIX}/files/{{key:path}}", include_in_schema=False)
def download(request: Request, key: str, e: str | None = None, s: str | None = None):
    """A Parquet file of the local-folder store, for a URL signed by a query answer (an
    expiring HMAC over the key: no bearer token needed, as with S3 presigned URLs)."""
    ex = _exchange(request)
    try:
        sharing.verify_download(ex, key, e, s)
        root = getattr(ex.store, "root", None)
        if root is None:
            raise sharing.NotFound("this deployment does not serve files itself")
        path = Path(ex.store.uri(key))
        if not path.is_file():
            raise sharing.NotFound(f"file {key!r} not found")
    except (sharing.SharingError, ExchangeError) as err:
        return _error(err)
    except StorageError as err:  # a key escaping the store root
        return _error(sharing.Forbidden(err.args[0] if err.args else "bad key"))
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)


# -- profiles for buyers --------------------------------------------------------------------


@router.post("/api/exchange/orders/{order_id}/sharing-profile")
async def profile(request: Request, order_id: str):
    """The buyer's Delta Sharing profile for a granted order (``{"days": N}`` optional;
    ``endpoint`` defaults to this server's ``/delta-sharing/``)."""
    raw = await request.body()
    body = parse_json(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise InvalidRequest(
            "the body must be a JSON object",
            hint='send e.g. {"days": 30} (both fields optional), or an empty body',
        )
    endpoint = body.get("endpoint") or site_url(request) + f"{PREFIX}/"
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(
        _call,
        request,
        lambda ex, actor: sharing.issue_profile(
            ex, actor, order_id, endpoint=endpoint, days=body.get("days")
        ),
    )
