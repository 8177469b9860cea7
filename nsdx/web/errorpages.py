"""Branded error pages for browsers, in the visitor's language; JSON for everyone else.

A request that accepts ``text/html`` (a browser navigating) gets the portal's page for 404,
403, 413, 429 and 5xx; an API client (``Accept: application/json`` or ``*/*``) gets the JSON
dialect of the one error shape. Signing in when a page needs it is a redirect, not an error.
Which error becomes which answer is decided in :mod:`nsdx.web.errors` (the page dialect
calls :func:`error_response`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request

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
    kind: str | None = None,
    hint: str | None = None,
    error_id: str | None = None,
):
    """The error answer for ``request``: the branded page, or the JSON dialect."""
    t, d = _titles(status)
    title, detail = title or t, detail or d
    if not wants_html(request):
        from .errors import REASONS, Problem, json_error

        code = kind or REASONS.get(status, ("Error",))[0]
        return json_error(Problem(status, code, title, hint=hint or detail, error_id=error_id))
    from .render import render

    ctx = {"status": status, "title": title, "detail": detail, "hint": hint, "error_id": error_id}
    return render(request, "error.html", ctx, status)


def install(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _signin(request: Request, exc: SignInRequired):
        return sign_in_redirect(exc)


__all__ = ["error_response", "install", "wants_html"]
