"""Catalogue tables (SQLAlchemy 2). Shapes follow CKAN: organisation, package (dataset),
resource, tag, extras; nsdx adds immutable versions with manifests and quality summaries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def _uuid() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str] = mapped_column(String(500), default="")
    state: Mapped[str] = mapped_column(String(20), default="active")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)

    datasets: Mapped[list[Dataset]] = relationship(back_populates="organization")


class DatasetTag(Base):
    __tablename__ = "dataset_tags"
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    title_en: Mapped[str | None] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text)
    notes_en: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(String(100), index=True)
    access: Mapped[str] = mapped_column(String(20), default="open")
    license_id: Mapped[str] = mapped_column(String(100), default="CC-BY-4.0")
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20), default="active", index=True)
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    author: Mapped[str | None] = mapped_column(String(300))
    url: Mapped[str | None] = mapped_column(String(1000))  # source / landing page
    attribution: Mapped[str | None] = mapped_column(Text)
    price_fen: Mapped[int | None] = mapped_column(BigInteger)  # list price, fen (validation.money)
    current_version: Mapped[int | None] = mapped_column(Integer)
    # classification (GB/T 43697-2024, migration 0011): grade general | important | core;
    # personal information held, sensitive or not; the data category within the domain
    grade: Mapped[str] = mapped_column(String(20), default="general")
    has_pi: Mapped[bool] = mapped_column(Boolean, default=False)
    sensitive_pi: Mapped[bool] = mapped_column(Boolean, default=False)
    data_category: Mapped[str | None] = mapped_column(String(100))
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    metadata_modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)

    organization: Mapped[Organization | None] = relationship(back_populates="datasets")
    tags: Mapped[list[DatasetTag]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    versions: Mapped[list[Version]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="Version.number"
    )


class Version(Base):
    """One immutable published version: ``<org>/<dataset>/v<number>/`` in object storage."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    prefix: Mapped[str] = mapped_column(String(500))
    storage_url: Mapped[str] = mapped_column(String(1000))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    manifest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    validation: Mapped[dict[str, Any]] = mapped_column(default=dict)  # summary of the report
    quality_score: Mapped[float | None] = mapped_column(Float)
    # distinct individuals in the personal-data columns, counted at ingest from the masked
    # tokens (migration 0011); None: not counted (published before the count existed)
    individuals: Mapped[int | None] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")
    resources: Mapped[list[Resource]] = relationship(
        back_populates="version",
        cascade="all, delete-orphan",
        order_by="Resource.position",
        lazy="selectin",
    )


class VersionClaim(Base):
    """A version number taken by a publish before it writes anything (migration 0005)."""

    __tablename__ = "version_claims"
    dataset: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    run_id: Mapped[str] = mapped_column(String(36))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="claimed")  # claimed | writing
    claimed: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Resource(Base):
    """A table of a version (one Parquet file set); a GTFS feed has one per file."""

    __tablename__ = "resources"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    table: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(50), default="Parquet")
    url: Mapped[str] = mapped_column(String(1000), default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    files: Mapped[list[Any]] = mapped_column(default=list)  # [{key, bytes, sha256, rows}]
    table_schema: Mapped[list[Any]] = mapped_column("schema", default=list)
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="active")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    version: Mapped[Version] = relationship(back_populates="resources")


# -- accounts, jobs and the search change log (migration 0002) ------------------------------


class User(Base):
    """A person or a machine account. ``sysadmin`` may do anything; ``auditor`` may read the
    exchange records (offers, orders, grants, ledger) of every organisation and change nothing."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    fullname: Mapped[str] = mapped_column(String(300), default="")
    email: Mapped[str] = mapped_column(String(300), default="")
    sysadmin: Mapped[bool] = mapped_column(Boolean, default=False)
    auditor: Mapped[bool] = mapped_column(Boolean, default=False)
    # reviews data-resource registrations (exchange.registration; migration 0011)
    reviewer: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20), default="active")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # argon2id hash (PHC string) of the portal password; None: no password sign-in
    password_hash: Mapped[str | None] = mapped_column(String(200))


class Membership(Base):
    """A user's role in an organisation: admin, editor (providers) or member (AI firm)."""

    __tablename__ = "memberships"
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(20), default="member")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ApiToken(Base):
    """An API token; only the sha256 of the secret is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires: Mapped[datetime | None] = mapped_column(DateTime)
    last_used: Mapped[datetime | None] = mapped_column(DateTime)
    revoked: Mapped[datetime | None] = mapped_column(DateTime)


class WebSession(Base):
    """A signed-in portal session; only the sha256 of the cookie's secret is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the secret
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(DateTime, index=True)


class SignInFailure(Base):
    """Failed portal sign-ins per account (``user:NAME``) and per client (``ip:ADDR``)
    in the current window, so the throttle survives a restart."""

    __tablename__ = "signin_failures"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class LinkResource(Base):
    """A CKAN resource that is only a link (created through the API or harvested), not a
    table of a published version."""

    __tablename__ = "link_resources"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str] = mapped_column(String(100), default="")
    url: Mapped[str] = mapped_column(String(2000), default="")
    extras: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_modified: Mapped[datetime | None] = mapped_column(DateTime)


class Job(Base):
    """A background job (upload ingest, re-ingest) and its outcome."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    kind: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(String(36))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(DateTime)
    finished: Mapped[datetime | None] = mapped_column(DateTime)


class CatalogueRevision(Base):
    """One row: a counter bumped by a trigger on every change to ``datasets``; search
    indexes compare it to know they are current."""

    __tablename__ = "catalogue_revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rev: Mapped[int] = mapped_column(BigInteger, default=0)


class CatalogueChange(Base):
    """Which dataset changed at which revision (written by the same trigger)."""

    __tablename__ = "catalogue_changes"
    rev: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(64), primary_key=True)


# -- application scenarios (migration 0011) -------------------------------------------------


class Scenario(Base):
    """An application scenario (应用场景): what AI firms build over published data, with the
    datasets it uses and, where one exists, an evaluation task. CKAN sees it as a group."""

    __tablename__ = "scenarios"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_uuid)
    name: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    title: Mapped[str] = mapped_column(String(300))
    title_en: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    sector: Mapped[str] = mapped_column(String(50), index=True)
    proposer: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="open")  # catalogue.scenarios
    query: Mapped[str] = mapped_column(Text, default="")  # an example query over its data
    evaluation: Mapped[dict[str, Any]] = mapped_column(default=dict)  # metric, split query
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    uses: Mapped[list[ScenarioDataset]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ScenarioDataset.position"
    )


class ScenarioDataset(Base):
    """A dataset a scenario uses, at a version (``None``: the current one)."""

    __tablename__ = "scenario_datasets"
    scenario_id: Mapped[str] = mapped_column(
        ForeignKey("scenarios.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    version: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)
