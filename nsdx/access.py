"""The exchange's live-grant check plugged into the catalogue's access rule.

:mod:`catalogue.access` decides who may see and read a dataset; whether an organisation
holds a live access grant is the exchange's rule (:mod:`exchange.grants`). The catalogue may
not import the exchange (import-linter layers), so the shell joins them here: every surface
(CKAN actions, DCAT, Croissant, the query API, web pages) gets its :class:`Grants` from
:func:`exchange_grants`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from catalogue.registry import Catalogue


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ExchangeGrants:
    """:class:`catalogue.access.Grants` over one catalogue database's exchange tables."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def live(self, org_ids: Collection[str], dataset_id: str, version: int | None = None) -> bool:
        from sqlalchemy import select

        from catalogue.models import Dataset
        from exchange.grants import holds_grant

        if not org_ids:
            return False
        with self.cat.Session() as s:
            if version is None:  # the current version is what is read
                version = s.scalar(select(Dataset.current_version).where(Dataset.id == dataset_id))
            return holds_grant(s, org_ids, dataset_id, version, _now())

    def datasets(self, org_ids: Collection[str]) -> frozenset[str]:
        from exchange.grants import granted_datasets

        if not org_ids:
            return frozenset()
        with self.cat.Session() as s:
            return granted_datasets(s, org_ids, _now())


def exchange_grants(cat: Catalogue) -> ExchangeGrants:
    return ExchangeGrants(cat)
