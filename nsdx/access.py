"""The exchange's live-grant check plugged into the catalogue's access rule.

:mod:`catalogue.access` decides who may see and read a dataset; whether an organisation
holds a live access grant is the exchange's rule (:mod:`exchange.grants`). The catalogue may
not import the exchange (import-linter layers), so the shell joins them here: the service
root (``Nsdx.grants``) gives every surface — CKAN actions, DCAT, Croissant, the query API,
downloads, web pages — the :class:`exchange.grants.LiveGrants` built by
:func:`exchange_grants`.
"""

from __future__ import annotations

from catalogue.access import Grants
from catalogue.registry import Catalogue


def exchange_grants(cat: Catalogue) -> Grants:
    from exchange.grants import LiveGrants

    return LiveGrants(cat)
