"""Download routes: every published table of every version over HTTP.

* ``GET|HEAD /dataset/<name>/v<N>/<table>.parquet`` — the Parquet file, with ``Range``
  (single and multiple ranges; 416 beyond the end), ``ETag`` (the manifest's SHA-256),
  ``Last-Modified``, ``Content-Length`` and ``Accept-Ranges``, so DuckDB's httpfs, pyarrow,
  polars and curl read it remotely and resume. On S3 the answer is a redirect to a
  short-lived presigned URL (signed for ``NSDX_S3_PUBLIC_ENDPOINT``) instead of a proxy.
* ``.../<table>.csv`` and ``.../<table>.jsonl`` — conversions streamed batch by batch.
* ``.../<table>/part-NNNNN.parquet`` — one file of a table written in several.
* ``GET /api/downloads`` — what the caller may read, with URLs (signed URLs for restricted
  tables): what ``nsdx.connect(url, token=...)`` builds its views from.

Open data: anyone. Restricted data: a principal the access rule allows, with an API token
(``Authorization``) or a signed URL (``?u=&e=&s=``), checked again on every request. The
rules and the files live in :mod:`catalogue.downloads` and :mod:`exchange.downloads`; this
module speaks HTTP only.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import StreamingResponse

from catalogue import downloads as dl
from catalogue.access import DatasetRestricted, may_see, require_read
from catalogue.auth import Principal
from catalogue.errors import CatalogueError
from exchange.downloads import LiveGrant, buyer_grant, record_download
from validation.errors import NsdxError

from . import errors
from .exchange import _exchange
from .state import site_url, state_of

log = logging.getLogger("nsdx.web.download")
router = APIRouter(tags=["downloads"])

PRESIGN_SECONDS = 300  # the S3 redirect of open data; restricted data: never beyond its URL


class ConversionsBusy(NsdxError):
    """Every CSV/JSON Lines conversion slot is taken (``NSDX_DOWNLOAD_CONVERSIONS``)."""

    status = 503
    transient = True


def _conversion_slots() -> int:
    raw = os.environ.get("NSDX_DOWNLOAD_CONVERSIONS", "4").strip()
    if not re.fullmatch(r"[0-9]{1,4}", raw) or int(raw) < 1:
        raise ValueError(
            f"NSDX_DOWNLOAD_CONVERSIONS={raw!r}: set a whole number of at least 1 (default 4)"
        )
    return int(raw)


# Each conversion holds a DuckDB reader (up to 128 MB) for as long as its client reads: a
# fixed number of slots bounds what slow or many clients can make the server hold.
_SLOTS = threading.BoundedSemaphore(_conversion_slots())
RETRY_AFTER = "5"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def error_response(e: NsdxError, head: bool = False) -> Response:
    """The JSON dialect of the one error shape (:func:`errors.json_error`); HEAD: no body."""
    if head:
        return Response(status_code=e.status)
    return errors.json_error(errors.problem_of(e))


# -- who may read ---------------------------------------------------------------------------


class _BuyerGrants:
    """:class:`catalogue.access.Grants` for one table: the exchange's live grant of the
    caller (kept, so the download is recorded against it)."""

    def __init__(self, request: Request, principal: Principal, t: dl.DownloadTable) -> None:
        self.request, self.principal, self.t = request, principal, t
        self.found: LiveGrant | None = None

    def live(self, org_ids, dataset_id: str, version: int | None = None) -> bool:
        self.found = buyer_grant(_exchange(self.request), self.principal, self.t)
        return self.found is not None

    def datasets(self, org_ids) -> frozenset[str]:  # pragma: no cover - one table only
        return frozenset()


def authorize(request: Request, principal: Principal, t: dl.DownloadTable) -> LiveGrant | None:
    """Raise unless ``principal`` may read ``t`` (the one access rule,
    :func:`catalogue.access.require_read`, with the exchange's grant check); the live grant
    when that is what allows it."""
    grants = _BuyerGrants(request, principal, t)
    try:
        require_read(
            principal, t.facts, grants, version=t.version, organization=t.organization,
            view=".".join(dl.view_names(t)),
        )  # fmt: skip
    except DatasetRestricted as e:
        what = f"table {t.table!r} of {t.dataset!r} version {t.version}"
        if principal.anonymous:
            raise dl.DownloadUnauthorized(
                f"{what} is restricted: send an API token (Authorization header) or use a "
                "signed URL",
                hint="the organisation's members and buyers holding a live access grant may "
                "read it; get signed URLs with GET /api/downloads and your token",
                dataset=t.dataset,
            ) from None
        raise dl.DownloadForbidden(
            f"{what} is restricted and {principal.name} may not read it: {e.message}",
            hint=e.hint,
            dataset=t.dataset,
        ) from None
    return grants.found


def _principal_of(
    request: Request, name: str, version: str, table: str
) -> tuple[Principal, str | None]:
    """The caller, and the channel: from a signed URL (``"signed-url"``; its signature and
    its token are checked before anything is looked up), a token (``"download"``), or
    anonymous (None)."""
    st = state_of(request)
    q = request.query_params
    if any(k in q for k in dl.SIGNED_PARAMS):
        user, token = dl.verify(
            st.nx.url_signing_key(), name, dl.parse_version(version), table,
            q.get("u"), q.get("e"), q.get("s"), q.get("k"),
        )  # fmt: skip
        try:  # the URL lives only as long as the token it was minted with
            p = st.accounts.token_principal(token, user)
        except NsdxError as e:
            raise dl.DownloadForbidden(
                f"the signed URL is no longer valid: {e.message}",
                hint="ask for a new URL with a valid token (GET /api/downloads)",
            ) from None
        return p, "signed-url"
    p = st.principal(request)
    return p, (None if p.anonymous else "download")


# -- answering ------------------------------------------------------------------------------


def _headers(t: dl.DownloadTable, f: dl.DownloadFile | None, fmt: str) -> dict[str, str]:
    created = t.created.replace(tzinfo=UTC)
    tag = f.sha256 if f is not None else t.etag
    name = (
        f"{t.dataset}-v{t.version}-{t.table}"
        if t.table != t.dataset
        else f"{t.dataset}-v{t.version}"
    )
    if f is not None and len(t.files) > 1:
        name += f"-{f.name.removesuffix('.parquet')}"
    h = {
        "ETag": f'"{tag}"' if fmt == "parquet" else f'"{tag}-{fmt}"',
        "Last-Modified": format_datetime(created, usegmt=True),
        "Content-Disposition": f'attachment; filename="{name}.{fmt}"',
        # open data may be cached anywhere; restricted answers only by the reader
        "Cache-Control": "public, max-age=3600" if t.open else "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return h


def _serve_file(
    request: Request, t: dl.DownloadTable, f: dl.DownloadFile, url_expires: int | None
) -> Response:
    store = state_of(request).nx.store
    headers = _headers(t, f, "parquet")
    if store.url.startswith("s3://"):
        if f.bytes:  # the manifest knows the size: a bad range is answered here, in JSON
            bad = _bad_range(request.headers.get("range"), f.bytes)
            if bad is not None:
                return bad
        seconds = PRESIGN_SECONDS
        if url_expires is not None:
            seconds = max(1, min(seconds, url_expires - int(datetime.now(UTC).timestamp())))
        url = store.presign(f.key, seconds)
        return RedirectResponse(
            url,
            status_code=302,
            headers={"Cache-Control": "private, no-store", "ETag": headers["ETag"]},
        )
    path = Path(store.uri(f.key))
    if not path.is_file():
        raise dl.DownloadNotFound(
            f"the file of {t.dataset!r} version {t.version} is missing from storage",
            hint="tell the operator: the version is registered but its file is gone",
        )
    bad = _bad_range(request.headers.get("range"), path.stat().st_size)
    if bad is not None:
        return bad
    return FileResponse(path, media_type=dl.FORMATS["parquet"], headers=headers)


def _number(s: str) -> bool:
    """ASCII digits only (``str.isdigit`` also takes '²' and '١', which ``int`` refuses)."""
    return re.fullmatch(r"[0-9]{1,19}", s) is not None


def _bad_range(header: str | None, size: int) -> Response | None:
    """A JSON 416 (a range beyond the end) or 400 (malformed) with a hint, before the
    file is opened; None when the Range header is absent or fine."""
    if not header:
        return None
    units, _, spec = header.partition("=")
    ranges = [r.strip() for r in spec.split(",")] if units.strip() == "bytes" else []
    ok = bool(ranges) and len(ranges) <= 100
    beyond = False
    for r in ranges:
        start, dash, end = r.partition("-")
        start, end = start.strip(), end.strip()
        if not dash or not (_number(start) or _number(end)):
            ok = False
            break
        if _number(start):
            if end and (not _number(end) or int(end) < int(start)):
                ok = False
                break
            beyond = beyond or int(start) >= size
        elif int(end) == 0:
            beyond = True
    if not ok:
        return JSONResponse(
            {
                "error": {
                    "error": "MalformedRange",
                    "message": f"the Range header {header[:100]!r} is not a byte range",
                    "hint": "send e.g. Range: bytes=0-1023, bytes=1024- or bytes=-1024",
                    "transient": False,
                }
            },
            status_code=400,
        )
    if beyond:
        return JSONResponse(
            {
                "error": {
                    "error": "RangeNotSatisfiable",
                    "message": f"the range {header[:100]!r} starts beyond the end of the "
                    f"file ({size} bytes)",
                    "hint": f"ask for bytes below {size}; the whole file has Content-Length {size}",
                    "transient": False,
                }
            },
            status_code=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    return None


def _decide(request: Request, name: str, version: str, table: str):
    """The table asked for and until when the answer may be used (unix seconds; None: no
    limit), once the caller is allowed (one thread hop for every check of a request)."""
    st = state_of(request)
    # a bad, expired or revoked token or signed URL is refused (403) before anything is
    # looked up; a dataset the caller may not see is answered as a missing one (404)
    principal, channel = _principal_of(request, name, version, table)
    t = dl.resolve(
        st.cat, name, version, table, visible=lambda ds: may_see(principal, ds, st.grants)
    )
    if t.open:
        return t, None
    url_expires = None
    grant = authorize(request, principal, t)
    if channel == "signed-url":
        url_expires = int(request.query_params["e"])
    if grant is not None:
        until = grant.expires.replace(tzinfo=UTC).timestamp()
        url_expires = int(min(url_expires or until, until))
        if channel == "download":  # a signed URL was recorded when it was issued
            record_download(
                _exchange(request),
                grant,
                t,
                user=principal.name or "?",
                channel=channel,
                url_expires=_now() + timedelta(seconds=dl.DEFAULT_URL_TTL),
            )
    return t, url_expires


async def _answer(request: Request, name: str, version: str, table: str, fmt: str, part=None):
    head = request.method == "HEAD"
    st = state_of(request)
    try:
        t, url_expires = await run_in_threadpool(_decide, request, name, version, table)
        if fmt == "parquet":
            if part is not None:
                f = t.file(part)
            elif len(t.files) == 1:
                f = t.files[0]
            else:
                return _several(request, t)
            return _serve_file(request, t, f, url_expires)
        headers = _headers(t, None, fmt)
        if head:
            return Response(status_code=200, media_type=dl.FORMATS[fmt], headers=headers)
        if not _SLOTS.acquire(blocking=False):
            raise ConversionsBusy(
                f"every conversion slot is busy: {t.table}.{fmt} cannot start now",
                hint=f"retry in a few seconds, or download {t.table}.parquet (served as a "
                "file, never refused for load) and convert it yourself",
            )
        gen = dl.CONVERTERS[fmt](st.nx.store, t)
        try:  # errors before the first byte: 4xx/5xx
            first = await run_in_threadpool(next, gen, b"")
        except BaseException:
            gen.close()
            _SLOTS.release()
            raise
        return StreamingResponse(_chain(first, gen), media_type=dl.FORMATS[fmt], headers=headers)
    except NsdxError as e:
        if not hasattr(e, "status"):
            raise
        r = error_response(e, head)
        if isinstance(e, ConversionsBusy):
            r.headers["Retry-After"] = RETRY_AFTER
        return r


async def _chain(first: bytes, gen):
    """The converted bytes; the generator (and its DuckDB connection) is closed and the
    conversion slot given back however the response ends: finished, failed, or the client
    gone."""
    try:
        if first:
            yield first
        async for chunk in iterate_in_threadpool(gen):
            yield chunk
    finally:
        try:
            await run_in_threadpool(gen.close)
        finally:
            _SLOTS.release()


def _several(request: Request, t: dl.DownloadTable) -> Response:
    site = site_url(request)
    q = request.url.query
    files = [
        {
            "name": f.name,
            "url": site
            + dl.part_path(t.dataset, t.version, t.table, f.name)
            + (f"?{q}" if q else ""),
            "bytes": f.bytes,
            "sha256": f.sha256,
            "rows": f.rows,
        }
        for f in t.files
    ]
    e = dl.SeveralFiles(
        f"table {t.table!r} of {t.dataset!r} version {t.version} is written in "
        f"{len(files)} Parquet files",
        hint="read all of them (read_parquet([...]) takes a list), or download "
        f"{t.table}.csv / {t.table}.jsonl as one file",
        files=files,
    )
    return JSONResponse({"error": e.to_dict()}, status_code=300)


_DOC = (
    "A published table of a version: `.parquet` (Range, ETag = SHA-256; on S3 a redirect to "
    "a presigned URL), `.csv` or `.jsonl` (streamed conversions). Restricted data needs an "
    "API token or a signed URL (`u`, `e`, `s` from GET /api/downloads)."
)


@router.head("/dataset/{name}/v{version}/{file}", include_in_schema=False)
@router.get(
    "/dataset/{name}/v{version}/{file}",
    operation_id="download_table",
    summary="Download a table of a version",
    description=_DOC,
    responses={
        206: {"description": "a byte range"},
        300: {"description": "a table in several files: their URLs"},
        302: {"description": "S3: the presigned URL"},
        401: {"description": "restricted, no token"},
        403: {"description": "not allowed, or a bad/expired signed URL"},
        404: {"description": "no such dataset, version or table"},
        416: {"description": "range not satisfiable"},
    },
)
async def download_table(name: str, version: str, file: str, request: Request):
    stem, dot, fmt = file.rpartition(".")
    if not dot or fmt not in dl.FORMATS or not stem:
        e = dl.DownloadNotFound(
            f"{file!r} is not a download: tables are <table>.parquet, .csv or .jsonl",
            hint=f"see the dataset's resources: GET /api/3/action/package_show?id={name}",
        )
        return error_response(e, request.method == "HEAD")
    return await _answer(request, name, version, stem, fmt)


@router.head("/dataset/{name}/v{version}/{table}/{part}", include_in_schema=False)
@router.get(
    "/dataset/{name}/v{version}/{table}/{part}",
    operation_id="download_part",
    summary="Download one Parquet file of a table written in several",
    description=_DOC,
)
async def download_part(name: str, version: str, table: str, part: str, request: Request):
    return await _answer(request, name, version, table, "parquet", part=part)


# -- the listing for remote readers ----------------------------------------------------------


def _listing(request: Request, dataset: str | None, current_only: bool) -> dict:
    st = state_of(request)
    principal = st.principal(request)
    site = site_url(request)
    ttl = dl.url_ttl(st.nx.settings.signed_url_ttl)
    key = st.nx.url_signing_key()
    now = _now()
    out = []
    for t in dl.all_tables(st.cat):
        if dataset and t.dataset != dataset:
            continue
        if current_only and not t.current:
            continue
        entry_expires = None
        query = ""
        if not t.open:
            try:
                grant = authorize(request, principal, t)
            except NsdxError:
                continue  # not readable by this caller: not listed
            seconds = ttl if grant is None else min(ttl, grant.seconds_left(now))
            if seconds <= 0:
                continue
            exp_dt = now + timedelta(seconds=seconds)
            exp = int(exp_dt.replace(tzinfo=UTC).timestamp())
            query = "?" + dl.sign(key, t, principal.name or "", exp, principal.token_id or "")
            entry_expires = exp_dt.isoformat(timespec="seconds") + "Z"
            if grant is not None:
                record_download(
                    _exchange(request),
                    grant,
                    t,
                    user=principal.name or "?",
                    channel="signed-url",
                    url_expires=exp_dt,
                )
        schema, view_v = dl.view_names(t)
        files = (
            [site + t.path("parquet") + query]
            if len(t.files) == 1
            else [
                site + dl.part_path(t.dataset, t.version, t.table, f.name) + query for f in t.files
            ]
        )
        out.append(
            {
                "dataset": t.dataset,
                "version": t.version,
                "current": t.current,
                "table": t.table,
                "access": t.access,
                "schema": schema,
                "view": t.view_name,
                "version_view": view_v,
                "rows": t.rows,
                "bytes": sum(f.bytes for f in t.files),
                "sha256": [f.sha256 for f in t.files],
                "parquet": files,
                "csv": site + t.path("csv") + query,
                "jsonl": site + t.path("jsonl") + query,
                "expires": entry_expires,
            }
        )
    return {
        "principal": principal.name,
        "signed_url_ttl": ttl,
        "tables": out,
    }


@router.get(
    "/api/downloads",
    summary="What the caller may read, with download URLs",
    description="Every table of every published version the caller may read (open data, "
    "its organisation's, and data it bought), with Parquet/CSV/JSONL URLs; restricted "
    "tables get signed URLs valid for NSDX_SIGNED_URL_TTL seconds (never beyond the grant). "
    "`dataset` narrows to one dataset; `versions=current` leaves out earlier versions.",
)
async def downloads(request: Request, dataset: str | None = None, versions: str = "all"):
    if versions not in ("all", "current"):
        return error_response(
            CatalogueError(
                f"versions={versions!r} is not a choice", hint="use versions=all or current"
            )
        )
    try:
        body = await run_in_threadpool(partial(_listing, request, dataset, versions == "current"))
    except NsdxError as e:
        if not hasattr(e, "status"):
            raise
        return error_response(e)
    return JSONResponse(body, headers={"Cache-Control": "private, no-store"})
