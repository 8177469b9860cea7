"""The query API: ``POST /api/query`` (and ``GET /api/query?sql=``) runs one SELECT over
the published views ``<domain>.<id>`` — the same views as ``nsdx query`` — with DuckDB.

* Who may read what: the one rule of :mod:`catalogue.access` (open datasets, everyone;
  restricted ones, members of their organisation, sysadmins, and organisations holding a
  live access grant from the exchange, passed in as ``state.grants``).
* What may run: see :mod:`catalogue.sql_guard` (one SELECT; curated views, CTEs and a few
  row-generating table functions only) and :func:`catalogue.query.open_locked` (a fresh
  connection per request that can open only the files of the views it reads).
* Where it runs: in a query process of :mod:`catalogue.sandbox` (one per slot), whose
  memory is capped by the operating system and which is killed past the time limit; the
  request waits for it on a thread of the pool's own, never on one of the threads that
  serve the catalogue, so slow queries cannot starve ``package_show``.
* Limits (environment): ``NSDX_QUERY_TIMEOUT`` (seconds, 10), ``NSDX_QUERY_MAX_ROWS``
  (10000), ``NSDX_QUERY_MEMORY_LIMIT`` (1GB, DuckDB's), ``NSDX_QUERY_PROCESS_MEMORY``
  (bytes a query process may map; the memory limit + 768 MiB), ``NSDX_QUERY_THREADS`` (2),
  ``NSDX_QUERY_CONCURRENCY`` (4 query slots per server process), ``NSDX_QUERY_QUEUE_WAIT``
  (seconds a query waits for a free slot before a 503 with Retry-After, 10),
  ``NSDX_QUERY_QUEUE`` (queries that may wait at once per server process, 64; more get
  the 503 at once), ``NSDX_QUERY_NICE`` (the query processes' CPU priority, 10),
  ``NSDX_QUERY_HTTP_TIMEOUT`` (10 s per S3 request); ``NSDX_QUERY_S3_ACCESS_KEY_ID`` /
  ``NSDX_QUERY_S3_SECRET_ACCESS_KEY`` give the query connection its own (read-only) key.

Errors answer ``{"error": {"error": <kind>, "message", "hint", "transient", ...}}``, the
shape of the exchange API (see docs/query.md for every kind and status).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import pyarrow as pa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from catalogue import jsonout
from catalogue.errors import CatalogueError
from catalogue.query import QueryLimits, QueryResult, serve_query
from catalogue.sandbox import QueryProcesses

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
    """Every query slot stayed taken for NSDX_QUERY_QUEUE_WAIT seconds (HTTP 503 with
    Retry-After)."""

    status = 503
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
        process_memory=_env_num("NSDX_QUERY_PROCESS_MEMORY", None),
    )


def _s3_credentials() -> dict | None:
    key, secret = (
        os.environ.get("NSDX_QUERY_S3_ACCESS_KEY_ID"),
        os.environ.get("NSDX_QUERY_S3_SECRET_ACCESS_KEY"),
    )
    if key and secret:
        return {"key_id": key, "secret": secret}
    return None


class _Pool:
    """The query slots of one app: the processes, the threads that wait for them, and the
    requests waiting for a slot, first come first served."""

    def __init__(self, size: int) -> None:
        nice = _env_num("NSDX_QUERY_NICE", 10)
        self.procs = QueryProcesses(size, nice=max(0, min(19, nice)))
        self.threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="nsdx-query")
        self._queue: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._queue)

    def release(self) -> None:
        """Give a slot back (from any thread) and tell the first waiting request."""
        self.procs.release()
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            first = self._queue[0] if self._queue else None
        if first is not None:
            first.wake()

    async def take(self, wait: float, queue: int) -> None:
        """Take a slot for the calling request, waiting (asynchronously: no thread is held)
        at most ``wait`` seconds in a first-come-first-served queue of at most ``queue``
        requests; :class:`QueryBusy` when the queue is full or the wait runs out. A request
        takes a slot only when it is first in the queue (or the queue is empty), so a
        newcomer never overtakes one that waits, and a slot given back wakes the first at
        once (before, every waiting request looked every 50 ms, in no order: under load
        some waited the whole 10 s and got 503 while later ones ran)."""
        with self._lock:
            if not self._queue and self.procs.try_acquire():
                return
            if len(self._queue) >= max(0, queue):
                raise _busy()  # the queue is full: no wait at all
            me = _Waiter(asyncio.get_running_loop())
            self._queue.append(me)
        deadline = me.loop.time() + wait
        try:
            while True:
                me.event.clear()  # a wake from now on is seen by the wait below
                with self._lock:
                    if self._queue[0] is me and self.procs.try_acquire():
                        return
                left = deadline - me.loop.time()
                if left <= 0:
                    raise _busy()
                # woken when a slot is given back; the timeout is only a safety net (a
                # slot freed by the pool itself, e.g. a process that failed to start)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(me.event.wait(), min(left, _RECHECK))
        finally:
            with self._lock:
                self._queue.remove(me)
            self._wake()  # the next in line: a slot may be free, or it is first now


_RECHECK = 0.25  # seconds: a waiting request looks again at least this often


class _Waiter:
    """One request waiting for a query slot, on its event loop."""

    __slots__ = ("event", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()

    def wake(self) -> None:
        """From any thread."""
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # its loop is closed: the request is gone
            pass


def _pool(state) -> _Pool:
    """At most ``NSDX_QUERY_CONCURRENCY`` queries at once per app (each takes a process,
    threads and memory of its own)."""
    pool = getattr(state, "_query_pool", None)
    if pool is None:
        with _state_lock:
            pool = getattr(state, "_query_pool", None)
            if pool is None:
                pool = _Pool(max(1, _env_num("NSDX_QUERY_CONCURRENCY", 4)))
                state._query_pool = pool
    return pool


def close(state) -> None:
    """Stop the app's query processes (server shutdown): running queries answer 503."""
    pool = getattr(state, "_query_pool", None)
    state._query_pool = None  # a request after this (the app started again) gets a new pool
    if pool is not None:
        pool.procs.close()
        pool.threads.shutdown(wait=False, cancel_futures=True)


def _queue_wait() -> float:
    return max(0.0, _env_num("NSDX_QUERY_QUEUE_WAIT", 10.0, float))


def _busy() -> QueryBusy:
    return QueryBusy(
        "the server is running as many queries as it may; try again shortly",
        hint="retry after the Retry-After seconds (NSDX_QUERY_CONCURRENCY sets how many "
        "queries run at once)",
    )


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
        pacsv.write_csv(jsonout.finite_times(t), sink)  # as the JSON answer: null
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
    """One query, for a caller holding a slot, on a thread of the query pool."""
    state = request.app.state.nsdx
    principal = state.principal(request)  # a bad token is refused, never anonymous
    result, max_rows = _execute_held(state, principal, q.sql, q.max_rows)
    return render(result, q.format, max_rows)


def execute(state, principal, sql: str, max_rows: int | None = None):
    """Run ``sql`` for ``principal`` under the deployment's query limits and concurrency
    slots: (the result, the row cap applied). The query API and the portal's SQL console
    call this."""
    pool = _pool(state)
    if not pool.procs.acquire(min(_queue_wait(), 2.0)):  # a page's thread waits 2 s at most
        raise _busy()
    try:
        return _execute_held(state, principal, sql, max_rows)
    finally:
        pool.release()


def _execute_held(state, principal, sql: str, max_rows: int | None):
    """:func:`execute` for a caller that holds a query slot."""
    nx = state.nx
    limits = getattr(state, "query_limits", None) or limits_from_env(nx.settings.home)
    max_rows = limits.default_rows if max_rows is None else min(max_rows, limits.max_rows)
    result = serve_query(
        nx.catalogue,
        nx.store,
        sql,
        principal,
        grants=state.grants,
        limits=limits,
        max_rows=max_rows,
        s3_credentials=_s3_credentials(),
        runner=_pool(state).procs.run,
    )
    return result, max_rows


async def _answer(request: Request, q: QueryIn) -> Response:
    """The answer to one query request: wait (asynchronously: no thread is held, first come
    first served) up to NSDX_QUERY_QUEUE_WAIT seconds for a query slot, else 503 with
    Retry-After; then run it on the pool's own thread. Errors (and bugs, as a 500 with an
    error id) are answered in the JSON dialect by :mod:`nsdx.web.errors`."""
    pool = _pool(request.app.state.nsdx)
    await pool.take(_queue_wait(), _env_num("NSDX_QUERY_QUEUE", 64))
    return await _in_slot(pool, _run, request, q)


async def _in_slot(pool: _Pool, fn, *args):
    """``fn(*args)`` on a thread of the pool, for a caller that took a slot: the slot is
    given back when that thread is done with it, not when the request is. (A request
    cancelled while its query runs - the client gone, the server stopping - used to free
    the slot at once, while the thread and its query process ran on: one more query than
    NSDX_QUERY_CONCURRENCY at a time.)"""
    try:
        future = pool.threads.submit(fn, *args)
    except BaseException:  # the pool is shut down: nothing will run
        pool.release()
        raise
    future.add_done_callback(lambda _f: pool.release())
    return await asyncio.wrap_future(future)


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
    400: {
        "model": ErrorOut,
        "description": "SqlRejected, QueryError, QueryMemoryExceeded or BadRequest",
    },
    403: {"model": ErrorOut, "description": "DatasetRestricted, or NotAuthorized (bad token)"},
    408: {"model": ErrorOut, "description": "QueryTimeout"},
    503: {
        "model": ErrorOut,
        "description": "QueryBusy (every query slot taken: retry after Retry-After seconds), "
        "QueryStorageError or QueryCancelled (the server is stopping); all transient",
    },
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
    return await _answer(request, _parse(parse_json(raw or b"null")))  # bounded depth


@router.get(
    "/api/query",
    summary="Run one SELECT over published data (query parameters)",
    description=_DESCRIPTION + " The same as POST, with `sql`, `format` and `max_rows` as "
    "query parameters.",
    responses=_RESPONSES,
)
async def query_get(
    request: Request,
    sql: str = Query("", description="one SELECT over the views <domain>.<id>"),
    format: str = Query("json", description="json, csv or arrow"),
    max_rows: str | None = Query(None, description="rows to return at most"),
) -> Response:
    data: dict[str, Any] = {"sql": sql, "format": format}
    if max_rows not in (None, ""):
        data["max_rows"] = max_rows
    return await _answer(request, _parse(data))
