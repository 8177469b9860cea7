"""Bought data read through the portal's download routes (:mod:`catalogue.downloads`):
the live grant that lets a buyer read a table, and the ledger record of each delivery.

A buyer reads a restricted table with its API token on the download route, or with a signed
URL the portal issued (``GET /api/downloads``, ``nsdx.connect(url, token=...)``). Either
way the grant is checked on every request (:func:`buyer_grant`, the exchange's one rule
:func:`exchange.grants.live_grant`), so a refund, a revocation or the grant's expiry cuts
access at once, and a signed URL never outlives the grant.

Each delivery — a grant receiving a table's files of a version for the first time, through
any channel — is one ``delivery.made`` ledger event (who, dataset, version, table, files,
when, URL expiry, channel); a reader polling the same files adds no event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from catalogue.auth import Principal
from catalogue.downloads import DownloadTable

from .context import Exchange
from .deliveries import record_delivery_once
from .grants import live_grant

CHANNELS = ("download", "signed-url")  # of exchange.deliveries.CHANNELS


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class LiveGrant:
    id: str
    order_id: str
    expires: datetime  # naive UTC

    def seconds_left(self, now: datetime | None = None) -> int:
        return int((self.expires - (now or _now())).total_seconds())


def buyer_grant(ex: Exchange, principal: Principal, t: DownloadTable) -> LiveGrant | None:
    """The live grant through which ``principal``'s organisations may read table ``t``."""
    if principal.anonymous or not principal.roles:
        return None
    with ex.catalogue.Session() as s:
        g = live_grant(s, principal.roles, t.dataset_id, t.version, _now())
        return LiveGrant(g.id, g.order_id, g.expires) if g is not None else None


def record_download(
    ex: Exchange,
    grant: LiveGrant,
    t: DownloadTable,
    *,
    user: str,
    channel: str,
    url_expires: datetime,
) -> int | None:
    """Record the delivery of table ``t`` to ``grant``'s buyer as one ``delivery.made`` event
    the first time the grant receives these files; later requests add nothing. Returns the
    new event's ledger index, or None. (The one delivery record:
    :func:`exchange.deliveries.record_delivery_once`.)"""
    return record_delivery_once(
        ex,
        grant_id=grant.id,
        version=t.version,
        keys=[f.key for f in t.files],
        expires=url_expires,
        channel=channel,
        actor=user,
        detail={
            "table": t.table,
            "files": [{"name": f.name, "sha256": f.sha256, "bytes": f.bytes} for f in t.files],
        },
    )


__all__ = ["CHANNELS", "LiveGrant", "buyer_grant", "record_download"]
