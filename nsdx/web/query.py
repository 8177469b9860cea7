"""The query API: ``POST /api/query`` (and ``GET /api/query?sql=``) runs one SELECT over
the published views ``<domain>.<id>`` — the same views as ``nsdx query`` — with DuckDB.

* Who may read what: the one rule of :mod:`catalogue.access` (open datasets, everyone;
  restricted ones, members of their organisation, sysadmins, and organisations holding a
  live access grant from the exchange, passed in as ``state.grants``).
* What may run: see :mod:`catalogue.sql_guard` (one SELECT; curated views, CTEs and a few
  row-generating table functions only) and :func:`catalogue.query.open_locked` (a fresh
  connection per request that can open only the files of the views it reads).
* Limits (environment): ``NSDX_QUERY_TIMEOUT`` (seconds, 10), ``NSDX_QUERY_MAX_ROWS``
  (10000), ``NSDX_QUERY_MEMORY_LIMIT`` (1GB), ``NSDX_QUERY_THREADS`` (2),
  ``NSDX_QUERY_CONCURRENCY`` (4 queries at once per server process),
  ``NSDX_QUERY_HTTP_TIMEOUT`` (10 s per S3 request); ``NSDX_QUERY_S3_ACCESS_KEY_ID`` /
  ``NSDX_QUERY_S3_SECRET_ACCESS_KEY`` give the query connection its own (read-only) key.

Errors answer ``{"error": {"error": <kind>, "message", "hint", "transient", ...}}``, the
shape of the exchange API (see docs/query.md for every kind and status).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from typing import Any, Literal

import pyarrow as pa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from catalogue import jsonout
from catalogue.errors import CatalogueError
from catalogue.query import QueryLimits, QueryResult, serve_query

from .errors import ErrorOut
from .limits import parse_json

log = logging.getLogger("nsdx.web.query")
router = APIRouter(tags=["query"])

FORMATS = ("json", "csv", "arrow")
ARROW_STREAM = "application/vnd.apache.arrow.stream"


class QueryIn(BaseModel):
    """A query request."""

    sql: str = Field(description="one SELECT over the views <domain>.<id>")
    format: Literal["json", "csv", "arrow"] = Field(
        "json", description="json (default), csv, or arrow (Arrow IPC stream)"
    )
    max_rows: int | None = Field(
        None, ge=0, description="rows to return at most (default 1000, capped by the server)"
    )


class Column(BaseModel):
    name: str
    type: str


class QueryOut(BaseModel):
    columns: list[Column]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="true when the result had more rows than returned")
    max_rows: int
    elapsed_ms: int
    views: list[str]


class BadRequest(CatalogueError):
    status = 400


class ServerConfigError(CatalogueError):
    status = 500


class QueryBusy(CatalogueError):
    status = 429
    transient = True


# -- settings ------------------------------------------------------------------------------
def _env_num(name: str, default, cast=int):
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ServerConfigError(
            f"the server setting {name}={raw!r} is not a number", hint="fix the server setting"
        ) from None


def limits_from_env(home=None) -> QueryLimits:
    d = QueryLimits()
    return QueryLimits(
        timeout=_env_num("NSDX_QUERY_TIMEOUT", d.timeout, float),
        max_rows=_env_num("NSDX_QUERY_MAX_ROWS", d.max_rows),
        default_rows=min(d.default_rows, _env_num("NSDX_QUERY_MAX_ROWS", d.max_rows)),
        max_bytes=_env_num("NSDX_QUERY_MAX_BYTES", d.max_bytes),
        memory_limit=os.environ.get("NSDX_QUERY_MEMORY_LIMIT") or d.memory_limit,
        threads=_env_num("NSDX_QUERY_THREADS", d.threads),
        temp_dir=(home / "tmp" / "query") if home is not None else None,
        http_timeout=_env_num("NSDX_QUERY_HTTP_TIMEOUT", d.http_timeout),
        http_retries=_env_num("NSDX_QUERY_HTTP_RETRIES", d.http_retries),
    )


def _s3_credentials() -> dict | None:
    key, secret = (
        os.environ.get("NSDX_QUERY_S3_ACCESS_KEY_ID"),
        os.environ.get("NSDX_QUERY_S3_SECRET_ACCESS_KEY"),
    )
    if key and secret:
        return {"key_id": key, "secret": secret}
    return None


def _slots(state) -> threading.BoundedSemaphore:
    """At most ``NSDX_QUERY_CONCURRENCY`` queries at once per app (each takes threads and
    memory of its own)."""
    sem = getattr(state, "_query_slots", None)
    if sem is None:
        with _state_lock:
            sem = getattr(state, "_query_slots", None)
            if sem is None:
                sem = threading.BoundedSemaphore(max(1, _env_num("NSDX_QUERY_CONCURRENCY", 4)))
                state._query_slots = sem
    return sem


_state_lock = threading.Lock()


# -- answers -------------------------------------------------------------------------------


def _headers(r: QueryResult, max_rows: int) -> dict[str, str]:
    return {
        "X-Nsdx-Row-Count": str(r.table.num_rows),
        "X-Nsdx-Truncated": "true" if r.truncated else "false",
        "X-Nsdx-Max-Rows": str(max_rows),
        "X-Nsdx-Elapsed-Ms": str(r.elapsed_ms),
    }


def render(r: QueryResult, fmt: str, max_rows: int) -> Response:
    t = r.table
    if fmt == "arrow":
        meta = {b"nsdx.truncated": b"true" if r.truncated else b"false"}
        t = t.replace_schema_metadata({**(t.schema.metadata or {}), **meta})
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
        return Response(sink.getvalue(), media_type=ARROW_STREAM, headers=_headers(r, max_rows))
    if fmt == "csv":
        import pyarrow.csv as pacsv

        nested = [f.name for f in t.schema if pa.types.is_nested(f.type)]
        if nested:
            raise BadRequest(
                f"CSV cannot hold the nested column(s) {', '.join(nested)}",
                hint="use format json or arrow, or select scalar columns",
            )
        sink = io.BytesIO()
        pacsv.write_csv(t, sink)
        return Response(
            sink.getvalue(), media_type="text/csv; charset=utf-8", headers=_headers(r, max_rows)
        )
    body = {
        "columns": [{"name": f.name, "type": str(f.type)} for f in t.schema],
        "rows": jsonout.rows(t),
        "row_count": t.num_rows,
        "truncated": r.truncated,
        "max_rows": max_rows,
        "elapsed_ms": r.elapsed_ms,
        "views": list(r.views),
    }
    return Response(
        jsonout.dumps(body),
        media_type="application/json",
        headers=_headers(r, max_rows),
    )


# -- the endpoint --------------------------------------------------------------------------
def _parse(data: Any) -> QueryIn:
    if not isinstance(data, dict):
        raise BadRequest(
            "the request body must be a JSON object",
            hint='send {"sql": "SELECT ...", "format": "json", "max_rows": 100}',
        )
    try:
        return QueryIn.model_validate(data)
    except ValidationError as e:
        parts = [
            f"{'.'.join(str(x) for x in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
        ]
        raise BadRequest(
            "invalid request: " + "; ".join(parts),
            hint=f"sql is required; format is one of {', '.join(FORMATS)}; max_rows >= 0",
        ) from None


def _run(request: Request, q: QueryIn) -> Response:
    state = request.app.state.nsdx
    principal = state.principal(request)  # a bad token is refused, never anonymous
    result, max_rows = execute(state, principal, q.sql, q.max_rows)
    return render(result, q.format, max_rows)


def execute(state, principal, sql: str, max_rows: int | None = None):
    """Run ``sql`` for ``principal`` under the deployment's query limits and concurrency
    slots: (the result, the row cap applied). The query API and the portal's SQL console
    call this."""
    nx = state.nx
    limits = getattr(state, "query_limits", None) or limits_from_env(nx.settings.home)
    max_rows = limits.default_rows if max_rows is None else min(max_rows, limits.max_rows)
    slots = _slots(state)
    if not slots.acquire(timeout=limits.timeout):
        raise QueryBusy(
            "the server is running as many queries as it may; try again shortly",
            hint="NSDX_QUERY_CONCURRENCY sets how many run at once",
        )
    try:
        result = serve_query(
            nx.catalogue,
            nx.store,
            sql,
            principal,
            grants=state.grants,
            limits=limits,
            max_rows=max_rows,
            s3_credentials=_s3_credentials(),
        )
    finally:
        slots.release()
    return result, max_rows


def _answer(request: Request, parse) -> Response:
    """The answer to one query request. Errors (and bugs, as a 500 with an error id) are
    answered in the JSON dialect by :mod:`nsdx.web.errors`."""
    return _run(request, parse())


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the rows (json); text/csv or an Arrow IPC stream for those formats, "
        "with X-Nsdx-Row-Count and X-Nsdx-Truncated headers",
        "content": {
            "application/json": {"schema": QueryOut.model_json_schema()},
            "text/csv": {"schema": {"type": "string"}},
            ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    400: {"model": ErrorOut, "description": "SqlRejected, QueryError or BadRequest"},
    403: {"model": ErrorOut, "description": "DatasetRestricted, or NotAuthorized (bad token)"},
    408: {"model": ErrorOut, "description": "QueryTimeout"},
    429: {"model": ErrorOut, "description": "QueryBusy (transient)"},
    503: {"model": ErrorOut, "description": "QueryStorageError (transient)"},
}

_DESCRIPTION = (
    "Run one SELECT over the published views `<domain>.<id>` (the views of `nsdx query`). "
    "Open datasets are for everyone; restricted ones for members of their organisation, "
    "sysadmins and organisations holding an active access grant. Only a single SELECT "
    "reading published views, CTEs and `range`/`generate_series`/`unnest` is accepted. "
    "See docs/query.md."
)


@router.post(
    "/api/query",
    summary="Run one SELECT over published data",
    description=_DESCRIPTION,
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": QueryIn.model_json_schema()}},
        }
    },
)
async def query_post(request: Request) -> Response:
    raw = await request.body()

    def parse() -> QueryIn:
        return _parse(parse_json(raw or b"null"))  # bounded depth; a 400, not a 500

    return await run_in_threadpool(_answer, request, parse)


@router.get(
    "/api/query",
    summary="Run one SELECT over published data (query parameters)",
    description=_DESCRIPTION + " The same as POST, with `sql`, `format` and `max_rows` as "
    "query parameters.",
    responses=_RESPONSES,
)
def query_get(
    request: Request,
    sql: str = Query("", description="one SELECT over the views <domain>.<id>"),
    format: str = Query("json", description="json, csv or arrow"),
    max_rows: str | None = Query(None, description="rows to return at most"),
) -> Response:
    def parse() -> QueryIn:
        data: dict[str, Any] = {"sql": sql, "format": format}
        if max_rows not in (None, ""):
            data["max_rows"] = max_rows
        return _parse(data)

    return _answer(request, parse)
