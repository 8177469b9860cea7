"""Who is looking at a portal page: the signed-in user of the ``nsdx_session`` cookie (a
server-side session, :mod:`catalogue.signin`), else anonymous.

The cookie is HttpOnly and SameSite=Lax, and Secure when the request came over HTTPS
(behind a TLS proxy, run uvicorn with ``--proxy-headers`` so the scheme is right).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from catalogue.auth import ANONYMOUS, Principal
from catalogue.signin import ABSOLUTE, session_principal

from .state import state_of

COOKIE = "nsdx_session"


class SignInRequired(Exception):
    """Raised by :func:`require_user`; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str, expired: bool) -> None:
        self.next_url = next_url
        self.expired = expired


def viewer(request: Request) -> Principal:
    """The principal of this request's session (cached on the request)."""
    cached = getattr(request.state, "viewer", None)
    if cached is not None:
        return cached
    secret = request.cookies.get(COOKIE)
    p = session_principal(state_of(request).accounts, secret) if secret else None
    request.state.session_expired = bool(secret) and p is None
    request.state.viewer = p or ANONYMOUS
    return request.state.viewer


def require_user(request: Request) -> Principal:
    p = viewer(request)
    if p.anonymous:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target, request.state.session_expired)
    return p


def sign_in_redirect(exc: SignInRequired) -> RedirectResponse:
    q = f"?next={quote(exc.next_url, safe='')}" + ("&expired=1" if exc.expired else "")
    return RedirectResponse("/user/login" + q, status_code=303)


def safe_next(url: str | None) -> str:
    """Only a path on this site (no scheme, no //host): an open redirect is refused."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return "/"
    return url


def set_session_cookie(request: Request, response: Response, secret: str) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        max_age=int(ABSOLUTE.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"
