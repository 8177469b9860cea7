"""Whether an organisation may read a dataset it bought: the one rule, as a query
(:func:`holds_grant`, for the query API; :func:`granted_datasets`, for what a buyer sees in
the catalogue) and for one grant in hand (:func:`grant_state`, for deliveries in
:mod:`exchange.trade` and Delta Sharing in :mod:`exchange.sharing`). The catalogue takes it
through :class:`catalogue.access.Grants`, wired up in the shell (``nsdx.access``).

A grant is live when it has started, has not expired, was not revoked (a refund revokes it)
and its order is granted or delivered (paid, not refunded).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from catalogue.access import GRANTED, DatasetFacts, Principal, may_read
from catalogue.models import Dataset
from catalogue.registry import Catalogue

from .models import Grant, Order

LIVE_ORDER_STATES = ("granted", "delivered")


def _live(buyers: list[str], now: datetime) -> list:
    """The live-grant conditions (joined with the grant's order)."""
    return [
        Grant.buyer_id.in_(buyers),
        Grant.revoked.is_(False),
        Grant.starts <= now,
        Grant.expires > now,
        Order.status.in_(LIVE_ORDER_STATES),
    ]


def holds_grant(
    s: Session, buyer_ids: Iterable[str], dataset_id: str, version: int | None, now: datetime
) -> bool:
    """Does one of ``buyer_ids`` hold a live grant for ``dataset_id`` covering ``version``
    (a grant for "latest during the term", or for exactly that version)?"""
    return live_grant(s, buyer_ids, dataset_id, version, now) is not None


def live_grant(
    s: Session, buyer_ids: Iterable[str], dataset_id: str, version: int | None, now: datetime
) -> Grant | None:
    """The live grant :func:`holds_grant` finds (the one expiring last), or None."""
    buyers = list(buyer_ids)
    if not buyers:
        return None
    return s.scalar(
        select(Grant)
        .join(Order, Order.id == Grant.order_id)
        .where(
            Grant.dataset_id == dataset_id,
            *_live(buyers, now),
            or_(Grant.version.is_(None), Grant.version == version),
        )
        .order_by(Grant.expires.desc())
        .limit(1)
    )


def granted_datasets(s: Session, buyer_ids: Iterable[str], now: datetime) -> frozenset[str]:
    """The datasets one of ``buyer_ids`` holds a live grant for (any version): what the
    catalogue shows a buyer beyond public datasets (see :mod:`catalogue.access`)."""
    buyers = list(buyer_ids)
    if not buyers:
        return frozenset()
    return frozenset(
        s.scalars(
            select(Grant.dataset_id)
            .join(Order, Order.id == Grant.order_id)
            .where(*_live(buyers, now))
            .distinct()
        )
    )


def grant_state(g: Grant | None, order: Order, now: datetime) -> str:
    """The same rule for one grant already in hand: ``"live"``, or why not — ``"revoked"``
    (revoked, refunded, or no grant), ``"expired"`` or ``"not_started"``. Deliveries and Delta
    Sharing say it in their own words."""
    if g is None or g.revoked or order.status not in LIVE_ORDER_STATES:
        return "revoked"
    if g.expires <= now:
        return "expired"
    if g.starts > now:
        return "not_started"
    return "live"


def buyer_may_read(order: Order, ds: Dataset | None, version: int | None) -> bool:
    """With a live grant in hand: may the order's buyer read ``ds`` now? The catalogue's one
    access rule (:func:`catalogue.access.may_read`) decides; a live grant reads every
    dataset it covers except a deleted one."""
    if ds is None:
        return False
    buyer = Principal(name=order.buyer_id, roles={order.buyer_id: "member"})
    return may_read(buyer, DatasetFacts.of(ds), GRANTED, version)


class SessionGrants:
    """:class:`catalogue.access.Grants` answered in an open session (the exchange's own
    steps, which already hold one)."""

    def __init__(self, s: Session, now: datetime | None = None) -> None:
        self.s = s
        self.now = now or datetime.now(UTC).replace(tzinfo=None)

    def live(self, org_ids: Iterable[str], dataset_id: str, version: int | None = None) -> bool:
        if version is None:  # the current version is what is read
            version = self.s.scalar(select(Dataset.current_version).where(Dataset.id == dataset_id))
        return holds_grant(self.s, org_ids, dataset_id, version, self.now)

    def datasets(self, org_ids: Iterable[str]) -> frozenset[str]:
        return granted_datasets(self.s, org_ids, self.now)


class LiveGrants:
    """:class:`catalogue.access.Grants` over one catalogue database (a session per call):
    what the shell plugs into every surface (``nsdx.access``)."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def live(self, org_ids: Iterable[str], dataset_id: str, version: int | None = None) -> bool:
        org_ids = list(org_ids)
        if not org_ids:
            return False
        with self.cat.Session() as s:
            return SessionGrants(s).live(org_ids, dataset_id, version)

    def datasets(self, org_ids: Iterable[str]) -> frozenset[str]:
        org_ids = list(org_ids)
        if not org_ids:
            return frozenset()
        with self.cat.Session() as s:
            return SessionGrants(s).datasets(org_ids)
