"""Bounds on what one request may send: body size, query-string length, JSON depth.

* ``NSDX_MAX_BODY_BYTES`` (default 4 MiB): a request body that is not a file upload (JSON,
  forms). A larger ``Content-Length`` is refused before anything is read; a chunked body is
  counted as it arrives and refused (413) when it passes the bound.
* Smaller bounds per route (:data:`ROUTE_BODY_BYTES`: the query API 512 KiB, the exchange
  and Delta Sharing APIs 256 KiB), changed or added with ``NSDX_BODY_LIMITS``
  (``/api/query=1048576,/api/exchange=65536``: a path prefix and a number of bytes each;
  the longest matching prefix wins); ``NSDX_MAX_BODY_BYTES`` stays the ceiling.
* ``NSDX_UPLOAD_MAX_BYTES`` (default 512 MiB): a multipart file upload to the CKAN Action
  API (``resource_create`` / ``resource_update`` / ``resource_patch``), streamed to disk
  and refused (413, the partial file removed) when it passes the bound. See
  :mod:`nsdx.web.uploads`.
* A query string longer than 16 KiB: 414.
* JSON nested more than 64 levels deep, or not JSON: 400 (:func:`parse_json`), never a
  RecursionError.

Every refusal is an :class:`~validation.errors.NsdxError` answered in the surface's
dialect by :mod:`nsdx.web.errors`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalogue.errors import CatalogueError

MAX_QUERY_STRING = 16 * 1024
MAX_JSON_DEPTH = 64
_MULTIPART_SLACK = 1024 * 1024  # the form fields and part headers around an upload


class BodyTooLarge(CatalogueError):
    status = 413


class QueryStringTooLong(CatalogueError):
    status = 414


class BadJson(CatalogueError):
    status = 400
    code = "BadRequest"  # the query API's documented kind for a body that is not JSON


class SettingError(CatalogueError):
    status = 500


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n <= 0:
        raise SettingError(
            f"the server setting {name}={raw!r} is not a positive number of bytes",
            hint="fix the server setting (a whole number of bytes) or unset it",
        )
    return n


def max_body_bytes() -> int:
    return _env_bytes("NSDX_MAX_BODY_BYTES", 4 * 1024 * 1024)


#: the routes that take small bodies, by path prefix: a bound of their own
ROUTE_BODY_BYTES = {
    "/api/query": 512 * 1024,  # one SELECT of at most 100,000 characters
    "/api/exchange": 256 * 1024,
    "/delta-sharing": 256 * 1024,
}


def route_body_limits() -> dict[str, int]:
    """:data:`ROUTE_BODY_BYTES` with ``NSDX_BODY_LIMITS`` applied."""
    limits = dict(ROUTE_BODY_BYTES)
    raw = os.environ.get("NSDX_BODY_LIMITS", "").strip()
    for item in filter(None, (x.strip() for x in raw.split(","))):
        prefix, _, n = item.partition("=")
        try:
            value = int(n)
        except ValueError:
            value = -1
        if not prefix.startswith("/") or value <= 0:
            raise SettingError(
                f"the server setting NSDX_BODY_LIMITS has {item!r}, not /path/prefix=BYTES",
                hint="write it as /api/query=1048576,/api/exchange=65536, or unset it",
            )
        limits[prefix.rstrip("/") or "/"] = value
    return limits


def body_limit(path: str) -> tuple[int, str]:
    """The body bound for a request to ``path`` (not an upload) and the setting that sets
    it."""
    best = ""
    for prefix in route_body_limits():
        if (path == prefix or path.startswith(prefix.rstrip("/") + "/")) and len(prefix) > len(
            best
        ):
            best = prefix
    overall = max_body_bytes()
    if best and route_body_limits()[best] < overall:
        return route_body_limits()[best], f"NSDX_BODY_LIMITS ({best})"
    return overall, "NSDX_MAX_BODY_BYTES"


def max_upload_bytes() -> int:
    return _env_bytes("NSDX_UPLOAD_MAX_BYTES", 512 * 1024 * 1024)


def _too_large(limit: int, setting: str) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request body is larger than this server takes ({limit} bytes)",
        hint=f"send less (the operator sets the bound with {setting})",
        limit=limit,
    )


def is_multipart(scope: Scope) -> bool:
    for k, v in scope.get("headers") or ():
        if k == b"content-type":
            return v.lower().startswith(b"multipart/form-data")
    return False


class RequestLimits:
    """ASGI middleware: refuse a too-long query string (414) and a too-large body (413)
    before the route reads it, and count a body without ``Content-Length`` as it
    arrives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string") or b"") > MAX_QUERY_STRING:
            raise QueryStringTooLong(
                f"the query string is longer than {MAX_QUERY_STRING} bytes",
                hint="send the parameters as a JSON body with POST",
            )
        upload = is_multipart(scope)
        if upload:
            limit, setting = max_upload_bytes() + _MULTIPART_SLACK, "NSDX_UPLOAD_MAX_BYTES"
        else:
            limit, setting = body_limit(scope.get("path") or "/")
        length = None
        for k, v in scope.get("headers") or ():
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
        if length is not None and length > limit:
            raise _too_large(limit, setting)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _too_large(limit, setting)
            return message

        await self.app(scope, counted, send)


def parse_json(raw: bytes | str, *, what: str = "the request body") -> Any:
    """JSON from a request, or a 400 (:class:`BadJson`) for text that is not JSON or nests
    deeper than MAX_JSON_DEPTH (never a RecursionError)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise BadJson(
            f"{what} is not valid JSON: {reason}"[:300],
            hint="send one JSON object with Content-Type: application/json",
        ) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise BadJson(
            f"{what} nests deeper than {MAX_JSON_DEPTH} levels",
            hint="send a flatter JSON document",
        )
    return value


def _depth(value: Any) -> int:
    """How deep ``value`` nests (iteratively: no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            items: Iterable[Any] = v.values()
        elif isinstance(v, list):
            items = v
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((x, d + 1) for x in items)
    return deepest


__all__ = [
    "BadJson",
    "BodyTooLarge",
    "QueryStringTooLong",
    "ROUTE_BODY_BYTES",
    "RequestLimits",
    "body_limit",
    "max_body_bytes",
    "max_upload_bytes",
    "parse_json",
]
