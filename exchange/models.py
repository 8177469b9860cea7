"""Exchange tables. They use :class:`catalogue.models.Base` so that Alembic sees them.

Money is kept in fen (分, 1/100 CNY) as integers: no float ever touches a contract value.

The trade tables (offers, orders, ...) are the working state; the ledger tables are the
record. Every change of the working state appends one ledger entry in the same transaction,
and reward computation reads only the ledger.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from catalogue.models import Base, utcnow


def _uuid() -> str:
    return str(uuid.uuid4())


class Enterprise(Base):
    """The enterprise profile of an organisation (企业信息), as the reward audit needs it."""

    __tablename__ = "exchange_enterprises"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id"), unique=True, index=True
    )
    credit_code: Mapped[str] = mapped_column(String(18), unique=True, index=True)
    legal_name: Mapped[str] = mapped_column(String(300))
    corporate_group: Mapped[str | None] = mapped_column(String(300), index=True)
    legal_representative: Mapped[str | None] = mapped_column(String(100))
    shareholders: Mapped[list[Any]] = mapped_column(default=list)  # names or credit codes
    controllers: Mapped[list[Any]] = mapped_column(default=list)  # actual controllers
    registered_address: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(String(50))
    bank_account: Mapped[str | None] = mapped_column(String(64))
    in_nansha: Mapped[bool] = mapped_column(Boolean, default=False)
    # where it is registered (migration 0009; exchange.crossborder.regions): mainland |
    # hong-kong | macao | abroad, and the GB/T 2260 division on the mainland; whether it is
    # a critical-information-infrastructure operator (关键信息基础设施运营者)
    region: Mapped[str] = mapped_column(String(20), default="mainland")
    division: Mapped[str | None] = mapped_column(String(6))
    ciio: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Offer(Base):
    __tablename__ = "exchange_offers"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)  # None: latest during the term
    price_fen: Mapped[int] = mapped_column(BigInteger)
    licence_terms: Mapped[str] = mapped_column(Text, default="")
    term_start: Mapped[date] = mapped_column(Date)
    term_end: Mapped[date] = mapped_column(Date)
    delivery_mode: Mapped[str] = mapped_column(String(30), default="presigned-url")
    cross_border: Mapped[bool] = mapped_column(Boolean, default=False)
    access_days: Mapped[int] = mapped_column(Integer, default=365)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | withdrawn
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Order(Base):
    __tablename__ = "exchange_orders"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    offer_id: Mapped[str] = mapped_column(ForeignKey("exchange_offers.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    contract_no: Mapped[str | None] = mapped_column(String(100))
    # placed -> paid -> granted -> delivered; refunded from paid/granted/delivered
    status: Mapped[str] = mapped_column(String(20), default="placed", index=True)
    other_support: Mapped[bool] = mapped_column(Boolean, default=False)  # declared subsidy
    ordered_on: Mapped[date | None] = mapped_column(Date)  # the order date (server's clock)
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Payment(Base):
    __tablename__ = "exchange_payments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    order_id: Mapped[str] = mapped_column(ForeignKey("exchange_orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(200), default="")  # bank transfer reference
    paid_on: Mapped[date] = mapped_column(Date)
    confirmed_by: Mapped[str] = mapped_column(String(200), default="")
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Grant(Base):
    """Access to a dataset for a buyer until ``expires``."""

    __tablename__ = "exchange_grants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    order_id: Mapped[str] = mapped_column(ForeignKey("exchange_orders.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)  # None: latest during the grant
    starts: Mapped[datetime] = mapped_column(DateTime)
    expires: Mapped[datetime] = mapped_column(DateTime, index=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Delivery(Base):
    """One delivery (see :mod:`exchange.deliveries`): the object keys handed over (the URLs
    themselves are bearer secrets and are not stored), through which channel, to whom."""

    __tablename__ = "exchange_deliveries"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    grant_id: Mapped[str] = mapped_column(ForeignKey("exchange_grants.id"), index=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("exchange_orders.id"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    keys: Mapped[list[Any]] = mapped_column(default=list)
    url_expires: Mapped[datetime] = mapped_column(DateTime)
    channel: Mapped[str | None] = mapped_column(String(30))  # deliveries.CHANNELS
    actor: Mapped[str | None] = mapped_column(String(200))  # who took it
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Refund(Base):
    __tablename__ = "exchange_refunds"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    order_id: Mapped[str] = mapped_column(ForeignKey("exchange_orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")
    refunded_on: Mapped[date] = mapped_column(Date)
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class CrossBorderDecision(Base):
    """The cross-border decision of an order (exchange.crossborder): its route, the rule
    that fired, the individuals it added to the exporter's count for the year, and the
    evidence recorded since (kind -> reference). Working state: the ledger's
    ``crossborder.*`` events are the record."""

    __tablename__ = "exchange_crossborder"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    order_id: Mapped[str] = mapped_column(ForeignKey("exchange_orders.id"), unique=True)
    seller_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int | None] = mapped_column(Integer)
    year: Mapped[int] = mapped_column(Integer, index=True)
    decided_on: Mapped[date] = mapped_column(Date)
    route: Mapped[str] = mapped_column(String(30))
    rule: Mapped[str] = mapped_column(String(60))
    individuals: Mapped[int] = mapped_column(BigInteger, default=0)  # added to the count
    sensitive: Mapped[int] = mapped_column(BigInteger, default=0)
    policy_sha256: Mapped[str] = mapped_column(String(64))
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    filing_due: Mapped[date | None] = mapped_column(Date)
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


# -- the ledger -------------------------------------------------------------------------


class LedgerEntry(Base):
    """One leaf. ``idx`` is dense from 0; ``payload`` is the canonical JSON whose RFC 6962
    leaf hash is ``leaf_hash``. Append-only (PostgreSQL triggers reject UPDATE/DELETE)."""

    __tablename__ = "ledger_entries"
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    payload: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LedgerCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint as a C2SP signed note). Append-only."""

    __tablename__ = "ledger_checkpoints"
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LedgerHead(Base):
    """The single row writers lock: the tree size and its compact range (the roots of the
    perfect subtrees, left to right, concatenated), so a root at any size costs O(log n).
    Derived state: `nsdx audit verify` never trusts it."""

    __tablename__ = "ledger_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    frontier: Mapped[bytes] = mapped_column(LargeBinary, default=b"")


class LedgerCosignature(Base):
    """A witness's C2SP ``cosignature/v1`` line on a checkpoint (migration 0012), stored
    after it verified against the witness's configured key."""

    __tablename__ = "ledger_cosignatures"
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(255), primary_key=True)
    key_id: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    line: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LedgerWitnessed(Base):
    """A checkpoint that a quorum of distinct witnesses cosigned (migration 0012)."""

    __tablename__ = "ledger_witnessed"
    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    quorum: Mapped[int] = mapped_column(Integer)
    cosigners: Mapped[int] = mapped_column(Integer)
    witnessed: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LedgerWitnessStatus(Base):
    """Per configured witness: the size it last cosigned for this log, its consecutive
    failures, the last error and when it is asked next (migration 0012)."""

    __tablename__ = "ledger_witness_status"
    witness: Mapped[str] = mapped_column(String(255), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    size: Mapped[int | None] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt: Mapped[datetime | None] = mapped_column(DateTime)
    last_ok: Mapped[datetime | None] = mapped_column(DateTime)
    next_attempt: Mapped[datetime | None] = mapped_column(DateTime)


# -- data-resource registration (数据资源登记, migration 0011) --------------------------------


class Registration(Base):
    """One registration application of a data product (see :mod:`exchange.registration`):
    initial, change, correction or cancellation, each through application → review →
    public notice → code. ``code`` is the product's registration code (kept by its change,
    correction and cancellation records, which count ``revision`` up)."""

    __tablename__ = "exchange_registrations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    kind: Mapped[str] = mapped_column(String(20))  # initial | change | correction | cancellation
    code: Mapped[str | None] = mapped_column(String(40), index=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    previous_id: Mapped[str | None] = mapped_column(String(36))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    scenario_id: Mapped[str | None] = mapped_column(ForeignKey("scenarios.id"), index=True)
    holder_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    compliance_statement: Mapped[str] = mapped_column(Text, default="")
    legality_pledge: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")  # of a change/correction/cancellation
    # applied → notice → registered; rejected; objected (back to notice when dismissed);
    # superseded (a later change/correction took over); cancelled
    status: Mapped[str] = mapped_column(String(20), default="applied", index=True)
    applied_by: Mapped[str] = mapped_column(String(200), default="")
    applied_on: Mapped[date] = mapped_column(Date)
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    review_note: Mapped[str] = mapped_column(Text, default="")
    notice_start: Mapped[date | None] = mapped_column(Date)
    notice_end: Mapped[date | None] = mapped_column(Date)
    registered_on: Mapped[date | None] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date)  # superseded or cancelled
    ledger: Mapped[dict[str, Any]] = mapped_column(default=dict)  # step -> ledger index
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)  # its registration.issued
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RegistrationObjection(Base):
    """An objection lodged during a registration's public notice (异议)."""

    __tablename__ = "exchange_registration_objections"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    registration_id: Mapped[str] = mapped_column(
        ForeignKey("exchange_registrations.id"), index=True
    )
    lodged_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    lodged_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | upheld | dismissed
    resolution: Mapped[str] = mapped_column(Text, default="")
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
