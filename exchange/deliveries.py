"""Deliveries: the one record of handing a buyer the data of a live access grant, and the
one answer to "which version does this grant cover?". Every channel calls these:

* ``nsdx exchange deliver`` / ``POST /api/exchange/orders/{id}/delivery`` (presigned URLs,
  :func:`exchange.trade.deliver`);
* Delta Sharing profiles and queries (:mod:`exchange.sharing`);
* the portal's download routes, by API token or signed URL (:mod:`exchange.downloads`).

A delivery is one ``delivery.made`` ledger event (and one ``exchange_deliveries`` row) that
says **who** took it (``actor``, and the ``buyer`` organisation), **what** (``dataset``,
``version``, the object ``keys`` handed over — the URLs themselves are bearer secrets and
are never stored), **when** (``delivered_at``, the server's clock), until when the handed
URLs or token work (``url_expires``) and through which ``channel``
(:data:`CHANNELS`). Channel-specific facts (a Delta Sharing table, a token fingerprint)
go in ``detail`` and are merged into the event.

    with ex.ledger.transaction() as s:
        order, g, now = granted_order(s, actor, order_id, what=..., needs=...)
        ds, ver = covered_version(s, g, order)
        a = record_delivery(ex, s, grant=g, order=order, version=ver.number, keys=keys,
                            expires=now + timedelta(seconds=600), channel="presigned-url",
                            actor=actor.name)
    a = ex.ledger.settle(a)          # a.index: the event's ledger index

or, for a channel that serves the same files again and again (a polling Delta Sharing
client, repeated downloads), once per grant, version and set of files::

    index = record_delivery_once(ex, grant_id=g.id, version=3, keys=[key], expires=...,
                                 channel="download", actor="alice")
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalogue.db import referenced
from catalogue.errors import DatasetNotFound
from catalogue.models import Dataset, Organization, Resource, Version
from validation.messages import Msg, Term

from .actors import BUYER_ROLES, Actor
from .context import Exchange
from .errors import InvalidRequest, InvalidState, OrderNotFound
from .grants import LIVE_ORDER_STATES, buyer_may_read, grant_state
from .ledger.store import Appended
from .models import Delivery, Grant, Order

#: The ways data reaches a buyer. ``presigned-url``: `nsdx exchange deliver` and its API
#: route; ``delta-sharing``: profiles and queries; ``download`` and ``signed-url``: the
#: portal's download routes with an API token or a signed URL (:mod:`exchange.downloads`).
CHANNELS = ("presigned-url", "delta-sharing", "download", "signed-url")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def covered_version(s: Session, grant: Grant, order: Order) -> tuple[Dataset, Version]:
    """The dataset and the published version ``grant`` (of ``order``) covers: its fixed
    version, or for an offer of "the latest during the term" (``grant.version is None``) the
    dataset's current version. Raises :class:`DatasetNotFound` (404) when the catalogue's
    access rule no longer lets the buyer read the dataset (it was deleted) and
    :class:`InvalidState` (409) when that version is not published."""
    ds = s.get(Dataset, grant.dataset_id)
    number = grant.version if grant.version is not None else (ds.current_version if ds else None)
    if ds is None or not buyer_may_read(order, ds, number):  # the catalogue's access rule
        raise DatasetNotFound(grant.dataset_id)
    ver = (
        s.scalar(select(Version).where(Version.dataset_id == ds.id, Version.number == number))
        if number is not None
        else None
    )
    if ver is None:
        raise InvalidState(
            f"dataset {ds.name!r} has no published version {number}",
            hint=f"the seller publishes it: `nsdx ingest {ds.name}`",
            dataset=ds.name,
        )
    return ds, ver


def version_keys(s: Session, ver: Version) -> list[str]:
    """The object keys of a version's files, resource by resource."""
    return [
        f["key"]
        for r in s.scalars(
            select(Resource).where(Resource.version_id == ver.id).order_by(Resource.position)
        )
        for f in r.files or []
    ]


def granted_order(
    s: Session, actor: Actor, order_id: str, *, what: str, needs: str
) -> tuple[Order, Grant, datetime]:
    """For a buyer's step on a granted order: the order, its newest live access grant and the
    time the grant was checked at. ``what`` names the step for the role check ("take delivery
    of this order"); ``needs`` starts the refusal "… an access grant" ("deliveries need")."""
    order = s.get(Order, order_id)
    if order is None:
        raise OrderNotFound(
            Msg("order %(order)s not found", order=repr(order_id)),
            hint="`nsdx exchange orders`",
            order=order_id,
        )
    buyer = referenced(s, Organization, order.buyer_id).name
    actor.require(buyer, BUYER_ROLES, what)
    if order.status not in LIVE_ORDER_STATES:
        raise InvalidState(
            Msg(
                "order %(order)s is %(status)s; %(needs)s an access grant",
                order=order.id,
                status=Term(order.status, "order"),
                needs=needs,
            ),
            hint=Msg("the seller grants access after payment"),
        )
    g = s.scalars(
        select(Grant)
        .where(Grant.order_id == order.id, Grant.revoked.is_(False))
        .order_by(Grant.created.desc())
    ).first()
    now = _now()
    state = grant_state(g, order, now)
    if g is None or state in ("revoked", "expired"):  # no grant: "revoked"
        raise InvalidState(
            Msg("the access grant of order %(order)s has expired or was revoked", order=order.id)
        )
    if state == "not_started":
        raise InvalidState(
            Msg(
                "the access grant of order %(order)s starts at %(at)sZ",
                order=order.id,
                at=g.starts.isoformat(),
            ),
            hint=Msg("deliveries open when the grant's term starts"),
        )
    return order, g, now


def record_delivery(
    ex: Exchange,
    s: Session,
    *,
    grant: Grant,
    order: Order,
    version: int,
    keys: list[str],
    expires: datetime,
    channel: str,
    actor: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Appended:
    """Record one delivery inside ``s`` (a session of ``ex.ledger.transaction()``): an
    ``exchange_deliveries`` row and its ``delivery.made`` ledger event; a granted order
    becomes ``delivered``. Returns the appended event (``ex.ledger.settle(a)`` gives its
    index and checkpoint once the transaction has committed).

    ``grant``/``order``: the live grant (the caller has checked it, e.g. with
    :func:`granted_order` or :func:`exchange.grants.grant_state`) and its order;
    ``version``: the version handed over (see :func:`covered_version`); ``keys``: the object
    keys handed over (empty for a Delta Sharing profile); ``expires``: until when the URLs
    or token work (naive UTC); ``channel``: one of :data:`CHANNELS`; ``actor``: who took it
    (a user name, ``delta-sharing:<token fingerprint>``, ...); ``detail``: extra facts of the
    channel, merged into the event (they may not override the common fields); ``at``: the
    delivery time (default: now, naive UTC)."""
    if channel not in CHANNELS:
        raise InvalidRequest(
            f"delivery channel {channel!r} is not one of {', '.join(CHANNELS)}",
            channel=channel,
        )
    if grant.order_id != order.id:
        raise InvalidRequest(f"grant {grant.id} does not belong to order {order.id}")
    when = (at or _now()).replace(microsecond=0)
    dl = Delivery(
        grant_id=grant.id,
        order_id=order.id,
        version=version,
        keys=list(keys),
        url_expires=expires,
        channel=channel,
        actor=actor,
        created=when,
    )
    s.add(dl)
    if order.status == "granted":
        order.status = "delivered"
    s.flush()
    ds = s.get(Dataset, grant.dataset_id)
    buyer = s.get(Organization, order.buyer_id)
    event = {
        "actor": actor,
        "order": order.id,
        "grant": grant.id,
        "delivery": dl.id,
        "buyer": buyer.name if buyer else None,
        "dataset": ds.name if ds else grant.dataset_id,
        "version": version,
        "keys": list(keys),
        "channel": channel,
        "delivered_at": when.isoformat(timespec="seconds"),
        "url_expires": expires.isoformat(timespec="seconds"),
    }
    clash = set(detail or {}) & set(event)
    if clash:
        raise InvalidRequest(f"delivery detail may not override {', '.join(sorted(clash))}")
    return ex.ledger.append(s, "delivery.made", {**event, **(detail or {})}, ref=dl)


def already_delivered(s: Session, grant_id: str, version: int, keys: list[str]) -> bool:
    """Has this grant already received every one of ``keys`` at ``version`` (any channel)?"""
    want = set(keys)
    return any(
        want <= set(d.keys or [])
        for d in s.scalars(
            select(Delivery).where(Delivery.grant_id == grant_id, Delivery.version == version)
        )
    )


def record_delivery_once(
    ex: Exchange,
    *,
    grant_id: str,
    version: int,
    keys: list[str],
    expires: datetime,
    channel: str,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> int | None:
    """Record a delivery in its own transaction the first time grant ``grant_id`` receives
    ``keys`` at ``version``; later deliveries of the same files add nothing (a polling
    client must not flood the ledger). Returns the ledger index of the new event, or None.
    The caller has checked that the grant is live."""
    with ex.catalogue.Session() as s:
        if already_delivered(s, grant_id, version, keys):
            return None
    with ex.ledger.transaction() as s:
        if already_delivered(s, grant_id, version, keys):  # under the ledger lock
            return None
        g = s.get(Grant, grant_id)
        if g is None:
            raise InvalidRequest(f"no access grant {grant_id!r}", grant=grant_id)
        a = record_delivery(
            ex,
            s,
            grant=g,
            order=referenced(s, Order, g.order_id),
            version=version,
            keys=keys,
            expires=expires,
            channel=channel,
            actor=actor,
            detail=detail,
        )
    return ex.ledger.settle(a).index
