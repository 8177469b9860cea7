"""One error shape for the Action API: ``{"__type": <CKAN type>, "message": str, ...}``
with CKAN's status codes. Validation errors add one list of messages per field, as CKAN
does (``{"__type": "Validation Error", "name": ["That URL is already in use."]}``)."""

from __future__ import annotations

import logging

from ..auth import InvalidInput, NotAuthorized, ObjectNotFound
from ..errors import CatalogueError, DatasetNotFound, NotPublished
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


class BadRequest(Exception):
    """A request the Action API cannot take (unknown action, GET on a write action, body
    that is not a JSON object)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def to_error(exc: BaseException) -> tuple[int, dict]:
    """(HTTP status, CKAN error dict) for an exception raised by an action."""
    if isinstance(exc, InvalidInput):
        return 409, {"__type": "Validation Error", "message": exc.message, **exc.errors}
    if isinstance(exc, NotAuthorized):
        return 403, {"__type": "Authorization Error", "message": _msg(exc)}
    if isinstance(exc, DatasetNotFound | ObjectNotFound | NotPublished):
        return 404, {"__type": "Not Found Error", "message": _msg(exc)}
    if isinstance(exc, SearchQueryError):
        return 400, {"__type": "Search Query Error", "message": _msg(exc)}
    if isinstance(exc, BadRequest):
        return 400, {"__type": "Bad Request", "message": exc.message}
    if isinstance(exc, CatalogueError) and exc.status < 500:
        return exc.status, {"__type": "Validation Error", "message": _msg(exc)}
    log.exception("action failed", exc_info=exc)
    return 500, {"__type": "Internal Server Error", "message": f"{type(exc).__name__}: {exc}"}


def _msg(exc: BaseException) -> str:
    m = getattr(exc, "message", None) or str(exc)
    hint = getattr(exc, "hint", None)
    return f"{m} ({hint})" if hint else m
