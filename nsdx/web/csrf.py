"""CSRF protection for every portal form: the maintained ``asgi-csrf`` middleware (a signed
double-submit token: a ``csrftoken`` cookie and the same value in the first form field or
the ``x-csrftoken`` header).

* The token is signed with the deployment's portal key (``NSDX_SECRET_KEY``, else
  ``$NSDX_HOME/portal.key``, generated with mode 600), so every server process and every
  restart accepts the same tokens.
* Machine APIs (``/api/``, ``/delta-sharing/``) authenticate with tokens, never with the
  session cookie, so they are not CSRF targets and are skipped. The sign-in and sign-out
  forms are checked even for a request without cookies (login CSRF).
* A refused form gets a page in the user's language that says to reload and resubmit.
* Before the token is checked, at most :data:`CHECK_BYTES` of body are read (asgi-csrf
  buffers what it reads to replay it): a larger url-encoded form, or a multipart form
  whose token is not in its first megabyte, is refused with 413 without being buffered.
"""

from __future__ import annotations

import inspect
import os
import secrets
from pathlib import Path

import asgi_csrf as _asgi_csrf
from asgi_csrf import Errors, asgi_csrf
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from starlette.requests import Request

if "FileClass" not in inspect.signature(FormParser.__init__).parameters:
    # asgi-csrf 0.11 (the latest) still passes python-multipart's old ``FileClass``
    # argument, removed from python-multipart; this keeps its token search working. Files
    # met before the token are then parsed, not refused, but never more than CHECK_BYTES.

    class _FormParser(FormParser):
        def __init__(self, content_type, on_field, on_file, boundary=None, FileClass=None):  # noqa: N803
            super().__init__(content_type, on_field, None, boundary=boundary)

    _asgi_csrf.FormParser = _FormParser

CHECK_BYTES = 1 << 20
SKIP_PREFIXES = ("/api/", "/delta-sharing/", "/static/")
ALWAYS_PROTECT = {"/user/login", "/user/logout"}


def portal_secret(home: Path) -> str:
    env = os.environ.get("NSDX_SECRET_KEY")
    if env:
        return env
    path = home / "portal.key"
    if path.exists():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


class _TooLarge(Exception):
    pass


async def _refused(scope, send, _why) -> None:
    from .errorpages import error_response
    from .i18n import gettext as _

    request = Request(scope)
    response = error_response(
        request,
        403,
        _("This form has expired or was sent from another site."),
        _("Nothing was changed. Reload the page and submit the form again."),
        kind="csrf",
    )
    await response(scope, _noop_receive, send)


async def _noop_receive():
    return {"type": "http.disconnect"}


class CSRFMiddleware:
    """asgi-csrf around the app, with the body bound above."""

    def __init__(self, app, *, secret: str, secure: bool = False) -> None:
        self.app = app

        async def marked(scope, receive, send):
            scope["nsdx.body_check"]["done"] = True
            await app(scope, receive, send)

        self.inner = asgi_csrf(
            marked,
            signing_secret=secret,
            always_protect=ALWAYS_PROTECT,
            skip_if_scope=lambda scope: scope["path"].startswith(SKIP_PREFIXES),
            cookie_secure=secure,
            send_csrf_failed=_refused,
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        check = {"done": False, "read": 0}
        scope["nsdx.body_check"] = check

        async def bounded_receive():
            # a message is read only while less than CHECK_BYTES were read unchecked (so at
            # most that plus one server read buffer is held), then the token must be there
            if not check["done"] and check["read"] > CHECK_BYTES:
                raise _TooLarge
            msg = await receive()
            if not check["done"] and msg.get("type") == "http.request":
                check["read"] += len(msg.get("body", b""))
            return msg

        started = {"yes": False}

        async def tracked_send(msg):
            started["yes"] = True
            await send(msg)

        try:
            await self.inner(scope, bounded_receive, tracked_send)
        except FormParserError:  # a malformed form body, met while looking for the token
            if started["yes"] or check["done"]:
                raise  # the app's own failure: the app's error handling
            from .errorpages import error_response
            from .i18n import gettext as _

            response = error_response(
                Request(scope),
                400,
                _("This form could not be read."),
                _("Nothing was changed. Reload the page and send the form again."),
            )
            await response(scope, _noop_receive, send)
        except _TooLarge:
            from .errorpages import error_response
            from .i18n import gettext as _

            response = error_response(
                Request(scope),
                413,
                _("This form is too large."),
                _("Nothing was changed. Send less data, or put the form's token first."),
                kind="too_large",
            )
            await response(scope, _noop_receive, send)


__all__ = ["CSRFMiddleware", "Errors", "portal_secret"]
