"""One Jinja2 environment for every portal page: translations (:mod:`.i18n`), the signed-in
viewer, the CSRF form field and the language switch are available to every template."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from validation.money import to_fen, yuan

from . import i18n
from .session import viewer

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
i18n.install(templates.env)


def _extras(pkg: dict) -> dict:
    return {e["key"]: e["value"] for e in pkg.get("extras") or []}


templates.env.filters["extras"] = _extras
# a price as people read it ("280000.00" -> "¥280,000.00"): the offer's figure, exactly
templates.env.filters["yuan"] = lambda v: yuan(to_fen(v))
templates.env.filters["yuan_fen"] = yuan  # an amount in fen (an int)
templates.env.filters["domain"] = lambda v: i18n.pgettext("domain", v) if v else "-"
templates.env.filters["access"] = lambda v: i18n.pgettext("access", v or "open")
templates.env.filters["role"] = lambda v: i18n.pgettext("role", v) if v else ""


def csrf_field(request: Request) -> Markup:
    """The hidden form field the CSRF middleware checks (it must come first in a
    multipart form: put it right after <form>)."""
    make = request.scope.get("csrftoken")
    token = make() if callable(make) else ""
    return Markup(f'<input type="hidden" name="csrftoken" value="{escape(token)}">')


def here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
):
    """Render template ``name`` for ``request`` in the request's language."""
    ctx = dict(context or {})
    try:
        who = viewer(request)
    except Exception:  # noqa: BLE001 - an error page must render even if the database is down
        who = None
    ctx.setdefault("viewer", who)
    ctx.setdefault("csrf_field", lambda: csrf_field(request))
    ctx.setdefault("here_quoted", quote(here(request), safe=""))
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if who is not None and not who.anonymous:
        # a page for a signed-in viewer (tokens shown once, drafts, orders) is never stored
        response.headers["Cache-Control"] = "no-store"
        response.headers["Vary"] = "Cookie"
    return response


__all__ = ["csrf_field", "render", "templates"]
