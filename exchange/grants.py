"""Whether an organisation may read a dataset it bought: the one rule, as a query
(:func:`holds_grant`, for the query API) and for one grant in hand (:func:`grant_state`, for
deliveries in :mod:`exchange.trade` and Delta Sharing in :mod:`exchange.sharing`).

A grant is live when it has started, has not expired, was not revoked (a refund revokes it)
and its order is granted or delivered (paid, not refunded).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .models import Grant, Order

LIVE_ORDER_STATES = ("granted", "delivered")


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
            Grant.buyer_id.in_(buyers),
            Grant.revoked.is_(False),
            Grant.starts <= now,
            Grant.expires > now,
            Order.status.in_(LIVE_ORDER_STATES),
            or_(Grant.version.is_(None), Grant.version == version),
        )
        .order_by(Grant.expires.desc())
        .limit(1)
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
