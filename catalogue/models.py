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
    price_cny: Mapped[float | None] = mapped_column(Float)
    current_version: Mapped[int | None] = mapped_column(Integer)
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
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="versions")
    resources: Mapped[list[Resource]] = relationship(
        back_populates="version",
        cascade="all, delete-orphan",
        order_by="Resource.position",
        lazy="selectin",
    )


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
