"""Portal account pages: language switch, sign-in, sign-out, and one's own API tokens.

Every write is a POST form carrying the CSRF field; the core functions are the CLI's and
the API's (:mod:`catalogue.signin`, :class:`catalogue.auth.Accounts`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from catalogue.auth import InvalidInput, ObjectNotFound
from catalogue.signin import SignInThrottled, WrongPassword, sign_in, sign_out

from . import i18n
from .i18n import gettext as _
from .render import render
from .session import (
    COOKIE,
    clear_session_cookie,
    client_address,
    require_user,
    safe_next,
    set_session_cookie,
    viewer,
)
from .state import state_of

router = APIRouter(include_in_schema=False)
MAX_TOKEN_DAYS = 3650


@router.get("/lang/{code}")
def switch_language(code: str, request: Request, next: str = "/") -> RedirectResponse:
    """One click: remember the language in a cookie (a year) and go back."""
    r = RedirectResponse(safe_next(next), status_code=303)
    if code in i18n.LANGUAGES:
        r.set_cookie(
            i18n.COOKIE,
            code,
            max_age=365 * 86400,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
    return r


@router.get("/user/login")
def login_form(request: Request, next: str = "/", expired: int = 0):
    msg = _("Your session has expired. Please sign in again.") if expired else None
    return render(request, "login.html", {"next": safe_next(next), "info": msg, "name": ""})


@router.post("/user/login")
async def login(request: Request):
    form = await request.form()
    name = str(form.get("name") or "").strip()
    password = str(form.get("password") or "")
    nxt = safe_next(str(form.get("next") or "/"))
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = _("Enter your user name.")
    if not password:
        errors["password"] = _("Enter your password.")
    status, error = 200, None
    if not errors:
        try:
            st = state_of(request)
            done = await run_in_threadpool(
                sign_in, st.accounts, name, password, client=client_address(request)
            )
        except WrongPassword:
            status, error = 401, _("Wrong user name or password.")
        except SignInThrottled as e:
            status = 429
            error = _(
                "Too many failed sign-ins. Try again in %(minutes)s minutes.", minutes=e.minutes
            )
        else:
            r = RedirectResponse(nxt, status_code=303)
            set_session_cookie(request, r, done.secret)
            return r
    else:
        status = 422
    return render(
        request,
        "login.html",
        {"next": nxt, "name": name, "error": error, "errors": errors},
        status_code=status,
    )


@router.post("/user/logout")
async def logout(request: Request):
    await run_in_threadpool(sign_out, state_of(request).accounts, request.cookies.get(COOKIE))
    r = RedirectResponse("/", status_code=303)
    clear_session_cookie(request, r)
    return r


def _tokens_page(request: Request, p, **ctx):
    tokens = state_of(request).accounts.tokens(p.name)
    return render(request, "tokens.html", {"tokens": tokens[::-1], **ctx}, ctx.pop("status", 200))


@router.get("/user/tokens")
def tokens_page(request: Request):
    p = require_user(request)
    return _tokens_page(request, p)


@router.post("/user/tokens")
async def token_create(request: Request):
    p = require_user(request)
    form = await request.form()
    label = str(form.get("name") or "").strip()
    days_raw = str(form.get("expires") or "").strip()
    errors: dict[str, str] = {}
    days = None
    if len(label) > 200:
        errors["name"] = _("At most 200 characters.")
    if days_raw:
        try:
            days = float(days_raw)
            if not 0 < days <= MAX_TOKEN_DAYS:
                raise ValueError
        except ValueError:
            errors["expires"] = _(
                "A number of days between 1 and %(max)s, or empty for no expiry.",
                max=MAX_TOKEN_DAYS,
            )
    if errors:
        return _tokens_page(
            request, p, errors=errors, form={"name": label, "expires": days_raw}, status=422
        )
    try:
        secret, tok = await run_in_threadpool(
            state_of(request).accounts.create_token, p.user_name, expires_days=days, name=label
        )
    except InvalidInput as e:
        return _tokens_page(
            request,
            p,
            errors={k: " ".join(v) for k, v in e.errors.items()},
            form={"name": label, "expires": days_raw},
            status=422,
        )
    return _tokens_page(request, p, new_secret=secret, new_token=tok)


@router.post("/user/tokens/{token_id}/revoke")
async def token_revoke(token_id: str, request: Request):
    p = require_user(request)
    try:
        await run_in_threadpool(
            state_of(request).accounts.revoke_token, token_id[:64], owner=p.name
        )
    except ObjectNotFound:
        return _tokens_page(request, p, error=_("No such token of yours."), status=404)
    return RedirectResponse("/user/tokens?revoked=1", status_code=303)


__all__ = ["router", "viewer"]
