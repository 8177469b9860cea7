"""Branded error pages for browsers, in the visitor's language; JSON for everyone else.

A request that accepts ``text/html`` (a browser navigating) gets the portal's page for 404,
403, 413, 429 and 5xx; an API client (``Accept: application/json`` or ``*/*``) keeps the JSON
answer it always had. Signing in when a page needs it is a redirect, not an error.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .i18n import gettext as _
from .session import SignInRequired, sign_in_redirect

log = logging.getLogger("nsdx.web")


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not request.url.path.startswith("/api/")


def _titles(status: int) -> tuple[str, str]:
    if status == 404:
        return _("Page not found"), _(
            "There is no page at this address. Search the catalogue instead."
        )
    if status == 403:
        return _("Not allowed"), _("Your account may not open this page.")
    if status == 405:
        return _("Not allowed"), _("This address does not take that kind of request.")
    if status >= 500:
        return _("Something went wrong on our side"), _(
            "The error has been logged. Try again in a minute; if it persists, tell the operator."
        )
    return _("Request refused"), _("Check the address and try again.")


def error_response(
    request: Request,
    status: int,
    title: str | None = None,
    detail: str | None = None,
    *,
    kind: str = "error",
):
    """The error answer for ``request``: the branded page, or ``{"error": ...}``."""
    t, d = _titles(status)
    title, detail = title or t, detail or d
    if not wants_html(request):
        return JSONResponse(
            {"error": {"error": kind, "message": title, "hint": detail}}, status_code=status
        )
    from .render import render

    return render(
        request, "error.html", {"status": status, "title": title, "detail": detail}, status
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _signin(request: Request, exc: SignInRequired):
        return sign_in_redirect(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if wants_html(request):
            return error_response(request, exc.status_code)
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, kind="internal")


__all__ = ["error_response", "install", "wants_html"]
