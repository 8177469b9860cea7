"""catalogue: the registry of datasets, versions, organisations and users; search; the
CKAN-compatible Action API; DCAT export; DuckDB query over published data; federation with
other CKAN portals.

The public surface (imported lazily so that ``import catalogue.models`` stays light):
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Catalogue": "catalogue.registry",
    "package_dict": "catalogue.registry",
    "publish_dataset": "catalogue.publishing",
    "Accounts": "catalogue.auth",
    "Principal": "catalogue.auth",
    "ROLES": "catalogue.auth",
    "Packages": "catalogue.editing",
    "render_package": "catalogue.editing",
    "SearchIndex": "catalogue.search",
    "index_for": "catalogue.search",
    "Jobs": "catalogue.jobs",
    "dispatch": "catalogue.ckan",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'catalogue' has no attribute {name!r}")
