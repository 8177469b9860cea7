"""One error shape, one renderer per dialect.

Every error a route raises — an :class:`~validation.errors.NsdxError` (``status``,
``code``, ``message``, ``hint``, ``transient``, fields), a framework error (unknown route,
wrong method, a parameter of the wrong type) or a bug — becomes a :class:`Problem` and is
written by exactly one function for the surface it came through:

======================  =====================================================  ==========
surface                 body                                                   renderer
======================  =====================================================  ==========
``/api/3/action/...``   CKAN envelope ``{"success": false, "error": {"__type"...``  ckan_error
``/delta-sharing/...``  ``{"errorCode", "message"}``                           sharing_error
``/api/...``, JSON-LD   ``{"error": {"error", "message", "hint", "transient"}}``  json_error
pages                   a page in Chinese and English (``error.html``)         html_error
======================  =====================================================  ==========

(The CLI's dialect is :func:`nsdx.cli.fail`.) Nothing escapes as a bare 500: the
:class:`CatchAll` middleware logs the traceback under an error id and answers the
dialect's 500 with that id, which the user can quote to the operator.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from validation.errors import MAX_MESSAGE, NsdxError
from validation.errors import bounded_text as _cut
from validation.errors import bounded_value as _bounded

log = logging.getLogger("nsdx.web")

# status -> (code, 中文, English) for errors that carry no code of their own
REASONS: dict[int, tuple[str, str, str]] = {
    400: ("BadRequest", "请求有误", "Bad request"),
    401: ("NotAuthenticated", "需要登录", "Not signed in"),
    403: ("NotAuthorized", "无权访问", "Not allowed"),
    404: ("NotFound", "未找到", "Not found"),
    405: ("MethodNotAllowed", "不支持该方法", "Method not allowed"),
    408: ("Timeout", "请求超时", "Request timeout"),
    409: ("Conflict", "状态冲突", "Conflict"),
    413: ("TooLarge", "请求过大", "Request too large"),
    414: ("TooLarge", "请求过大", "Request too large"),
    415: ("UnsupportedMediaType", "不支持的内容类型", "Unsupported media type"),
    422: ("InvalidRequest", "输入无效", "Invalid input"),
    429: ("Busy", "请求过多", "Too many requests"),
    500: ("InternalError", "服务器内部错误", "Internal server error"),
    502: ("UpstreamError", "上游服务错误", "Upstream error"),
    503: ("Unavailable", "服务暂不可用", "Service unavailable"),
}

# status -> Delta Sharing errorCode (the protocol's names)
SHARING_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    429: "RESOURCE_EXHAUSTED",
}


@dataclass
class Problem:
    """What went wrong, whatever raised it: the fields every dialect renders."""

    status: int
    code: str
    message: str
    hint: str | None = None
    transient: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    error_id: str | None = None  # set for server faults: the key to the server log
    exc: BaseException | None = None

    def to_dict(self) -> dict:
        d = {
            "error": self.code,
            "message": self.message,
            "hint": self.hint,
            "transient": self.transient,
            **{k: v for k, v in self.fields.items() if v is not None},
        }
        if self.error_id:
            d["error_id"] = self.error_id
        return d


# -- the shapes, for the OpenAPI document ---------------------------------------------------
class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # structured fields of the error class

    error: str = Field(description="the code: SqlRejected, NotAllowed, OrderNotFound, ...")
    message: str
    hint: str | None = None
    transient: bool = False
    error_id: str | None = Field(None, description="server faults: the key to the server log")


class ErrorOut(BaseModel):
    """The plain JSON API's error (exchange, audit, query, JSON-LD)."""

    error: ErrorBody


class CkanErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")  # Validation Error: one list per field

    type_: str = Field(alias="__type", description="Validation Error, Not Found Error, ...")
    message: str


class CkanErrorOut(BaseModel):
    """The CKAN Action API's error envelope."""

    help: str
    success: bool
    error: CkanErrorBody


class SharingErrorOut(BaseModel):
    """A Delta Sharing error."""

    errorCode: str  # noqa: N815 - the protocol's name
    message: str


class ServerBusy(NsdxError):
    """This server process is past its connection cap (``NSDX_MAX_CONNECTIONS``): HTTP 503
    with ``Retry-After``, answered before any route runs."""

    status = 503
    transient = True


class Overloaded:
    """ASGI middleware: a request the server marked over its connection cap
    (:data:`nsdx.web.server.OVER_CAPACITY`) is answered :class:`ServerBusy` in its surface's
    dialect — the JSON shape, the CKAN envelope, Delta Sharing's, or the branded page for a
    browser (in its language: inside the language middleware) — with ``Retry-After`` and
    ``Connection: close``, and nothing else runs: no route, no CSRF check, no body read, and
    no session looked up (the page is the anonymous one: the cookies are not read)."""

    KEY = "nsdx.over_capacity"  # set by nsdx.web.server's protocol; its value is the cap

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cap = scope.get(self.KEY) if scope["type"] == "http" else None
        if cap is None:
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"cookie"]
        request = Request({**scope, "headers": headers}, receive)
        response = render_error(
            request,
            ServerBusy(
                f"the server is at its connection limit ({cap} per process)",
                hint="try again in a moment (Retry-After)",
            ),
        )
        response.headers["Retry-After"] = "1"
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def new_error_id() -> str:
    return uuid.uuid4().hex[:12]


def problem_of(exc: BaseException, request: Request | None = None) -> Problem:
    """The :class:`Problem` for any exception; unexpected ones are logged with an id."""
    if isinstance(exc, NsdxError):
        p = Problem(
            status=exc.status,
            code=exc.code,
            message=_cut(str(exc.message), MAX_MESSAGE),
            hint=_cut(exc.hint, MAX_MESSAGE) if exc.hint else exc.hint,
            transient=exc.transient,
            fields={k: _bounded(v) for k, v in exc.fields.items()},
            exc=exc,
        )
        if p.status >= 500:
            p.error_id = new_error_id()
            log.warning("error %s: %s %s", p.error_id, p.code, p.message, exc_info=exc)
        return p
    if isinstance(exc, RequestValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return Problem(
            422,
            "InvalidRequest",
            _cut("invalid request: " + "; ".join(parts), MAX_MESSAGE),
            hint="see /docs for each parameter's type and range",
            exc=exc,
        )
    if isinstance(exc, HTTPException):
        code, _, en = REASONS.get(exc.status_code, ("HTTPError", "", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else en
        return Problem(exc.status_code, code, _cut(detail, MAX_MESSAGE), exc=exc)
    error_id = new_error_id()
    where = f" ({request.method} {request.url.path})" if request is not None else ""
    log.error("error %s: unexpected failure%s", error_id, where, exc_info=exc)
    return Problem(
        500,
        "InternalError",
        f"internal error (error id {error_id})",
        hint="this is a bug, not your request; the server log has the details under this id",
        error_id=error_id,
        exc=exc,
    )


# -- the dialects ---------------------------------------------------------------------------
def _headers(p: Problem) -> dict[str, str] | None:
    return {"Retry-After": "1"} if p.status in (429, 503) else None


def json_error(p: Problem) -> Response:
    """The plain JSON API (exchange, audit, query, JSON-LD): ``{"error": {...}}``."""
    return JSONResponse({"error": p.to_dict()}, status_code=p.status, headers=_headers(p))


def ckan_error(p: Problem, request: Request, action: str | None = None) -> Response:
    """The CKAN Action API's envelope (``{"help", "success": false, "error"}``)."""
    from catalogue.ckan.envelope import failure
    from catalogue.ckan.errors import ckan_error_dict

    from .state import site_url

    unexpected = p.error_id is not None and not isinstance(p.exc, NsdxError)
    message = "" if unexpected else p.message  # the dict quotes the id itself
    status, err = ckan_error_dict(p.status, message, p.hint, exc=p.exc, error_id=p.error_id)
    err = {k: _cut(v, MAX_MESSAGE) if k == "message" else _bounded(v) for k, v in err.items()}
    name = action or request.path_params.get("name") or request.url.path.rsplit("/", 1)[-1]
    body = failure(site_url(request), name, err)
    return Response(
        json.dumps(body, ensure_ascii=False, default=str),
        status_code=status,
        media_type="application/json;charset=utf-8",
        headers=_headers(p),
    )


def sharing_error(p: Problem) -> Response:
    """Delta Sharing: ``{"errorCode", "message"}``. Protocol errors keep their code; a
    permanent fault of the exchange core answers 400 (the official client retries every
    5xx for about 100 s), a real failure 500 with its error id."""
    from exchange.errors import ExchangeError
    from exchange.sharing import SharingError

    status = p.status
    exc = p.exc
    if isinstance(exc, ExchangeError) and not isinstance(exc, SharingError):
        if status >= 500 and not p.transient:
            status = 400
    if isinstance(exc, SharingError):
        code = exc.code
    else:
        code = SHARING_CODES.get(
            status, "INTERNAL_ERROR" if status >= 500 else "INVALID_PARAMETER_VALUE"
        )
    message = p.message
    if p.error_id and p.error_id not in message:
        message = f"{message} (error id {p.error_id})"
    return JSONResponse(
        {"errorCode": code, "message": message}, status_code=status, headers=_headers(p)
    )


def html_error(p: Problem, request: Request) -> Response:
    """The portal's error page (:func:`nsdx.web.errorpages.error_response`, one template,
    ``error.html``, in the visitor's language) — or, for a client that does not ask for
    HTML, the JSON dialect. A 404 says the thing is missing; a 5xx says the server failed
    and quotes the id it was logged under, never the failure's text."""
    from .errorpages import error_response, wants_html

    if not wants_html(request):
        return json_error(p)
    if p.status >= 500 and not p.error_id:
        p.error_id = new_error_id()
    # an error of ours says what is wrong, in the visitor's language (a core message carries
    # its message id and parameters: validation.messages.Msg); a framework 404/405 and a
    # failure get the page's own words
    detail = hint = None
    if isinstance(p.exc, NsdxError) and p.status < 500:
        from .i18n import core

        detail = _cut(core(p.exc.message), MAX_MESSAGE)
        hint = _cut(core(p.exc.hint), MAX_MESSAGE) if p.exc.hint else None
    try:
        return error_response(request, p.status, None, detail, hint=hint, error_id=p.error_id)
    except Exception:  # noqa: BLE001 - the page itself failed: plain text, still no crash
        log.exception("error page failed to render")
        _, zh, en = REASONS.get(p.status, ("", "出错了", "Something went wrong"))
        return HTMLResponse(
            f"<!doctype html><title>{p.status}</title><h1>{p.status} {zh} {en}</h1>"
            + (f"<p>{p.error_id}</p>" if p.error_id else ""),
            status_code=p.status,
        )


def tlog_error(p: Problem) -> Response:
    """The C2SP tlog-witness dialect: plain text. A 409 with the witness's size answers
    that size and a newline as ``text/x.tlog.size``, as the protocol requires."""
    size = p.fields.get("size")
    if p.status == 409 and isinstance(size, int):
        return Response(f"{size}\n", status_code=409, media_type="text/x.tlog.size")
    text = p.message + (f"\nhint: {p.hint}" if p.hint else "") + "\n"
    return Response(text, status_code=p.status, media_type="text/plain; charset=utf-8")


def dialect_of(path: str) -> str:
    """Which dialect answers for a request path."""
    if path.startswith(("/api/3/action/", "/api/action/")):
        return "ckan"
    if path.startswith("/delta-sharing"):
        return "sharing"
    if path.startswith("/api") or path.endswith((".jsonld", ".json", ".ttl")):
        return "json"
    if path.startswith("/dataset/") and path.count("/") > 2:  # downloads of a dataset
        return "json"
    return "html"  # pages (and unknown addresses): a page for browsers, JSON for clients


def render_error(request: Request, exc: BaseException) -> Response:
    """The response for ``exc`` in the dialect of ``request``'s surface."""
    p = problem_of(exc, request)
    dialect = dialect_of(request.url.path)
    if dialect == "ckan":
        return ckan_error(p, request)
    if dialect == "sharing":
        return sharing_error(p)
    if dialect == "json":
        return json_error(p)
    return html_error(p, request)


async def _handler(request: Request, exc: Exception) -> Response:
    return render_error(request, exc)


class CatchAll:
    """ASGI middleware: an exception no route handled is logged with an error id and
    answered in the surface's dialect (a 500 with the id), never as a bare 500 page. If
    the response had already started (a stream failing midway) the connection is closed,
    as it must be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_)
        except Exception as exc:
            if started:
                raise
            request = Request(scope, receive)
            response = render_error(request, exc)
            await response(scope, receive, send)


# -- the OpenAPI document ------------------------------------------------------------------
# the error statuses each surface answers (besides what a route documents itself)
_SURFACE_STATUSES = {
    "ckan": (400, 403, 404, 409, 414, 500, 503),
    "json": (400, 403, 404, 409, 414, 500, 503),
    "sharing": (400, 401, 403, 404, 414, 500, 503),
}
_SCHEMAS: dict[str, type[BaseModel]] = {
    "ckan": CkanErrorOut,
    "json": ErrorOut,
    "sharing": SharingErrorOut,
}


def document_errors(spec: dict) -> dict:
    """Add to every operation of the OpenAPI document ``spec`` the error responses its
    surface answers, with the dialect's schema: the surface's statuses, 413 where a body is
    taken, 422 where parameters or a body are checked (FastAPI's own 422 schema replaced
    by the dialect's, which is what is sent)."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in _SCHEMAS.values():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            components.setdefault(name, sub)
        components[model.__name__] = schema
    for path, ops in spec.get("paths", {}).items():
        dialect = dialect_of(path)
        if dialect == "html":
            dialect = "json"
        ref = {"$ref": f"#/components/schemas/{_SCHEMAS[dialect].__name__}"}
        for method, op in ops.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            statuses = set(_SURFACE_STATUSES[dialect])
            has_body = "requestBody" in op or method in ("post", "put", "patch")
            if has_body:
                statuses.add(413)
            checked = [
                p for p in op.get("parameters", []) if p.get("in") != "path" or dialect != "ckan"
            ]
            if dialect != "ckan" and (checked or "requestBody" in op):
                statuses.add(422)
            responses = op["responses"]
            if dialect == "ckan":
                responses.pop("422", None)  # the action name is any string: never a 422
            for status in sorted(statuses):
                key = str(status)
                _, _, en = REASONS.get(status, ("", "", "Error"))
                entry = responses.setdefault(key, {"description": en})
                entry["content"] = {"application/json": {"schema": ref}}
    if "#/components/schemas/HTTPValidationError" not in json.dumps(spec.get("paths", {})):
        components.pop("HTTPValidationError", None)  # FastAPI's 422 shape: never sent
        components.pop("ValidationError", None)
    return spec


def install(app) -> None:
    """Route every error of ``app`` through :func:`render_error`, and bound what one
    request may send (:mod:`nsdx.web.limits`; inside the catch-all, so that its refusals
    are answered in the surface's dialect too)."""
    from .limits import RequestLimits

    app.add_exception_handler(NsdxError, _handler)
    app.add_exception_handler(HTTPException, _handler)
    app.add_exception_handler(RequestValidationError, _handler)
    app.add_middleware(RequestLimits)
    app.add_middleware(CatchAll)
    plain = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(plain())
        return app.openapi_schema

    app.openapi = openapi


__all__ = [
    "CatchAll",
    "CkanErrorOut",
    "ErrorOut",
    "SharingErrorOut",
    "Problem",
    "ckan_error",
    "dialect_of",
    "html_error",
    "install",
    "json_error",
    "problem_of",
    "render_error",
    "tlog_error",
    "sharing_error",
]
