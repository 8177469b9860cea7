"""The officials' transaction filters (exchange.ledger.browse) on both databases: the
enterprise and dataset filters match a leaf's parties exactly, and they, like the period
filter, are answered from the indexes of migration 0008."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text

from exchange.demo import run_demo
from exchange.ledger.browse import list_entries
from tests.test_ckan_api import make_nsdx


@pytest.fixture
def ledger(tmp_path, database_url, nsdx_env):
    nx = make_nsdx(tmp_path, database_url)
    run_demo(nx.exchange)
    return nx.exchange.ledger


def test_enterprise_dataset_and_period_filters_from_indexes(ledger):
    every = list_entries(ledger, limit=200)["entries"]
    name = "nansha-zhixing-ai"
    res = list_entries(ledger, enterprise=name, limit=200)
    want = [
        e["index"]
        for e in every
        if name in {e["payload"].get(k) for k in ("buyer", "seller", "org", "actor")}
    ]
    assert want and [e["index"] for e in res["entries"]] == want and res["total"] == len(want)
    assert list_entries(ledger, enterprise=name[:-1])["total"] == 0  # exact, not a prefix
    ds = next(e["payload"]["dataset"] for e in every if e["payload"].get("dataset"))
    res = list_entries(ledger, dataset=ds, kind="order.placed", limit=200)
    assert res["total"] and all(
        e["payload"]["dataset"] == ds and e["kind"] == "order.placed" for e in res["entries"]
    )
    today = date.today()
    assert list_entries(ledger, since=today, until=today)["total"] == len(every)
    assert list_entries(ledger, since=today + timedelta(days=1))["total"] == 0
    # the indexes are there, and SQLite's planner uses them for these expressions
    if ledger.engine.dialect.name != "sqlite":
        with ledger.engine.connect() as c:
            names = set(
                c.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename='ledger_entries'"))
            )
        assert {"ix_ledger_entries_buyer", "ix_ledger_entries_created"} <= names
        return
    with ledger.engine.connect() as c:
        plan = " ".join(
            str(r[-1])
            for r in c.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT count(*) FROM ledger_entries WHERE "
                    "json_extract(payload, '$.buyer') = 'x' OR json_extract(payload, '$.seller') = 'x'"
                    " OR json_extract(payload, '$.org') = 'x' OR json_extract(payload, '$.actor') = 'x'"
                )
            )
        )
        assert "ix_ledger_entries_buyer" in plan and "ix_ledger_entries_actor" in plan
        plan = " ".join(
            str(r[-1])
            for r in c.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT count(*) FROM ledger_entries WHERE created >= '2026-01-01'"
                )
            )
        )
        assert "ix_ledger_entries_created" in plan


def test_rows_digest_sees_an_edited_payload_of_the_same_length(ledger):
    """The check the rewards page makes on every view before it serves cached figures."""
    from exchange.ledger.verify import rows_digest

    n = ledger.head_size()
    first = rows_digest(ledger, n)
    assert rows_digest(ledger, n) == first and rows_digest(ledger, n - 1) != first
    with ledger.engine.begin() as c:
        if ledger.engine.dialect.name == "postgresql":  # append-only: a forger disables it
            c.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        payload = c.scalar(text("SELECT payload FROM ledger_entries WHERE idx = 3"))
        at = payload.index('"at":"') + 7  # a digit of the year, same length, still JSON
        forged = payload[:at] + ("1" if payload[at] != "1" else "2") + payload[at + 1 :]
        assert len(forged) == len(payload) and forged != payload
        c.execute(text("UPDATE ledger_entries SET payload = :p WHERE idx = 3"), {"p": forged})
    assert rows_digest(ledger, n) != first
