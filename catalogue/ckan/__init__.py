"""The CKAN Action API: one renderer over the catalogue core.

``dispatch(name, data, ctx)`` runs one action and returns ``(status, body)`` in CKAN's
envelope; the HTTP layer (nsdx.web) only parses requests and writes responses.
"""

from .actions import ACTIONS, UPLOAD_ACTIONS, ActionContext, Upload, authorize_upload, dispatch
from .errors import ERROR_TYPES

__all__ = [
    "ACTIONS",
    "ERROR_TYPES",
    "UPLOAD_ACTIONS",
    "ActionContext",
    "Upload",
    "authorize_upload",
    "dispatch",
]
