"""The HTTP server: CKAN Action API, DCAT, and the web portal, assembled by create_app."""

from .app import ROUTERS, create_app

__all__ = ["ROUTERS", "create_app"]
