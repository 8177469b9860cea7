"""One error shape for the Action API: ``{"__type": <CKAN type>, "message": str, ...}``
with CKAN's status codes. Validation errors add one list of messages per field, as CKAN
does (``{"__type": "Validation Error", "name": ["That URL is already in use."]}``)."""

from __future__ import annotations

import logging
import uuid

from validation.errors import MAX_FIELD, MAX_MESSAGE, NsdxError, bounded_text, bounded_value

from ..auth import InvalidInput
from ..errors import CatalogueError
from ..search import SearchQueryError

log = logging.getLogger("nsdx.ckan")

# __type -> HTTP status (the complete list; tests check every one)
ERROR_TYPES = {
    "Validation Error": 409,
    "Not Found Error": 404,
    "Authorization Error": 403,
    "Search Query Error": 400,
    "Bad Request": 400,
    "Internal Server Error": 500,
}


class BadRequest(CatalogueError):
    """A request the Action API cannot take (unknown action, GET on a write action, body
    that is not a JSON object)."""

    status = 400


def to_error(exc: BaseException) -> tuple[int, dict]:
    """(HTTP status, CKAN error dict) for an exception raised by an action: the CKAN
    dialect of the one error shape (``nsdx.web.errors`` renders framework errors through
    :func:`ckan_error_dict` too). An unexpected exception is logged under an error id and
    answered as a 500 that quotes the id, never its text (it may hold server paths)."""
    if isinstance(exc, NsdxError):
        error_id = None
        if exc.status >= 500:
            error_id = uuid.uuid4().hex[:12]
            log.warning("error %s: %s", error_id, exc.message, exc_info=exc)
        return ckan_error_dict(exc.status, _msg(exc), exc=exc, error_id=error_id)
    error_id = uuid.uuid4().hex[:12]
    log.error("error %s: action failed", error_id, exc_info=exc)
    return ckan_error_dict(500, "", error_id=error_id)


def ckan_error_dict(
    status: int,
    message: str,
    hint: str | None = None,
    *,
    exc: BaseException | None = None,
    error_id: str | None = None,
) -> tuple[int, dict]:
    """(HTTP status, CKAN error dict) for an error of ``status`` (``exc`` refines the
    ``__type``: field errors, search syntax, bad requests)."""
    if hint and hint not in message:
        message = f"{message} ({hint})"
    message = bounded_text(message, MAX_MESSAGE + MAX_FIELD)  # never a hostile value whole
    if isinstance(exc, InvalidInput):
        errors = {k: bounded_value(v) for k, v in list(exc.errors.items())[:50]}
        return 409, {
            "__type": "Validation Error",
            "message": bounded_text(exc.message, MAX_MESSAGE),
            **errors,
        }
    if isinstance(exc, SearchQueryError):
        return 400, {"__type": "Search Query Error", "message": message}
    if isinstance(exc, BadRequest) or status == 400:
        return 400, {"__type": "Bad Request", "message": message}
    if status in (401, 403):
        return status, {"__type": "Authorization Error", "message": message}
    if status == 404:
        return 404, {"__type": "Not Found Error", "message": message}
    if status < 500:
        return status, {"__type": "Validation Error", "message": message}
    if error_id:
        detail = f"{message}; " if message else ""
        message = f"internal error (error id {error_id}): {detail}the server log has the details"
    return status, {"__type": "Internal Server Error", "message": message or "internal error"}


def _msg(exc: BaseException) -> str:
    m = getattr(exc, "message", None) or str(exc)
    hint = getattr(exc, "hint", None)
    return f"{m} ({hint})" if hint else m
