"""Reading the ledger page by page for officials: entries filtered by kind, period (when
recorded), enterprise and dataset, newest first. Read-only; one SQL query for the page and
one for the count, whatever the ledger's size.

The enterprise and dataset filters compare a leaf's top-level ``buyer``/``seller``/``org``/
``actor`` and ``dataset`` values exactly, through the expressions migration 0008 indexes.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, literal_column, select, union

from ..models import LedgerEntry
from .store import LedgerStore

PARTY_KEYS = ("buyer", "seller", "org", "actor")
MAX_PAGE = 200


def _field(dialect: str, key: str):
    """A leaf's top-level JSON value, by the expression migration 0008 indexes."""
    if dialect == "postgresql":
        return literal_column(f"((payload::jsonb) ->> '{key}')")
    return literal_column(f"json_extract(payload, '$.{key}')")


def entry_kinds(store: LedgerStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(select(LedgerEntry.kind).distinct()))


def list_entries(
    store: LedgerStore,
    *,
    kind: str | None = None,
    since: date | None = None,
    until: date | None = None,
    enterprise: str | None = None,
    dataset: str | None = None,
    offset: int = 0,
    limit: int = 50,
    upto: int | None = None,
) -> dict:
    """``{"total", "entries": [{index, kind, created, payload}]}``, newest first.
    ``until`` is inclusive (the whole day); ``upto`` bounds the indices (a tree size)."""
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    conds = []
    if kind and (enterprise or dataset):
        # not by the kind index: the party/dataset indexes find far fewer rows
        conds.append(LedgerEntry.kind.concat("") == kind)
    elif kind:
        conds.append(LedgerEntry.kind == kind)
    if since:
        conds.append(LedgerEntry.created >= datetime.combine(since, time.min))
    if until:
        conds.append(LedgerEntry.created < datetime.combine(until + timedelta(days=1), time.min))
    dialect = store.engine.dialect.name
    if enterprise:  # one index lookup per party key (a UNION: an OR would scan)
        parties = union(
            *(select(LedgerEntry.idx).where(_field(dialect, k) == enterprise) for k in PARTY_KEYS)
        )
        conds.append(LedgerEntry.idx.in_(parties))
    if dataset:
        conds.append(_field(dialect, "dataset") == dataset)
    if upto is not None:
        conds.append(LedgerEntry.idx < upto)
    with store.engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(LedgerEntry).where(*conds)) or 0
        rows = conn.execute(
            select(LedgerEntry.idx, LedgerEntry.kind, LedgerEntry.created, LedgerEntry.payload)
            .where(*conds)
            .order_by(LedgerEntry.idx.desc())
            .offset(offset)
            .limit(limit)
        ).all()
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "entries": [
            {"index": i, "kind": k, "created": c.isoformat(), "payload": json.loads(p)}
            for i, k, c, p in rows
        ],
    }


__all__ = ["entry_kinds", "list_entries"]
