"""Registration steps at the same moment on PostgreSQL (review finding 6).

On SQLite the ledger's transaction holds the database's write lock from its start, so the
steps run one after the other. On PostgreSQL they did not: two applications for one
dataset both passed the "one application at a time" check (two codes for one product),
two reviews both passed "awaiting review", and an objection lodged while the code was being
issued was lost. Each step now locks the row it decides on (the dataset when applying, the
registration otherwise).

The test holds the first step after its checks until the second step has either passed its
checks too (the race) or is waiting for a lock in PostgreSQL (the fix): no timing, only
the database's own lock-wait state.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.engine import make_url

from catalogue.scenarios import ScenarioSpec, save_scenarios
from exchange import registration as reg
from exchange.actors import Actor
from exchange.errors import InvalidState
from exchange.models import Registration, RegistrationObjection
from tests.conftest import PG_ADMIN_URL
from tests.test_exchange_trade import make_world
from tests.test_registration import PROVIDER, REVIEWER, STATEMENT, _add_ds3


def _lock_waiters(dbname: str) -> int:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else 0


def _race(monkeypatch, dbname: str, hooked: str, first, second) -> list:
    """Run ``first`` and ``second`` in two threads; the first to reach ``hooked`` (a function
    of exchange.registration called after a step's checks) waits there until the other
    has reached it too or is waiting for a lock. Returns each one's result or error."""
    real = getattr(reg, hooked)
    cond = threading.Condition()
    arrived = [0]
    done = threading.Event()

    def hook(*args, **kw):
        out = real(*args, **kw)
        with cond:
            arrived[0] += 1
            cond.notify_all()
        while not done.is_set():
            with cond:
                if arrived[0] >= 2:
                    break
                cond.wait(0.05)
            if _lock_waiters(dbname):
                break
        return out

    monkeypatch.setattr(reg, hooked, hook)
    results: list = [None, None]

    def run(i, fn):
        try:
            results[i] = fn()
        except Exception as e:  # noqa: BLE001 - the outcome is what the test checks
            results[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate((first, second))]
    for th in threads:
        th.start()
    try:
        for th in threads:
            th.join(300)
    finally:
        done.set()
        monkeypatch.setattr(reg, hooked, real)
    return results


def _one_won(results, refusal: str) -> dict:
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if not isinstance(r, dict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], InvalidState) and refusal in lost[0].message, lost[0]
    assert lost[0].status == 409
    return won[0]


def test_concurrent_registration_steps_run_one_after_the_other(postgres_url, tmp_path, monkeypatch):
    ex = make_world(postgres_url, tmp_path)
    _add_ds3(ex)
    save_scenarios(ex.catalogue, [ScenarioSpec(name="ns-race", title="并发", title_en="Race",
                   sector="other", proposer="p", datasets=[("ds3", None)])])  # fmt: skip
    db = make_url(postgres_url).database
    assert db

    # two applications for one dataset: one application, the other told to wait
    def apply():
        return reg.apply(ex, PROVIDER, "ds3", scenario="ns-race", **STATEMENT)

    a = _one_won(_race(monkeypatch, db, "_scenario", apply, apply), "already has a initial")
    with ex.catalogue.Session() as s:
        ds3 = [r for r in s.scalars(select(Registration)) if r.id != a["id"]]
        assert all(r.status == "registered" for r in ds3)  # make_world's ds1 only

    # two reviewers approve at once: one review, one ledger event
    def review():
        return reg.review(ex, REVIEWER, a["id"], approve=True)

    rv = _one_won(_race(monkeypatch, db, "_facts", review, review), "not awaiting review")
    events = [e for e in ex.ledger.events(ex.ledger.head_size())
              if e["type"] == "registration.reviewed" and e["registration"] == a["id"]]  # fmt: skip
    assert len(events) == 1

    # an objection on the notice's last day while the code is issued on the next: one wins,
    # and the record says so (never a registered product with an open objection)
    end = date.fromisoformat(rv["notice_end"])

    def lodge():
        return reg.lodge_objection(ex.on_day(end), Actor.for_org("rival"), a["id"],
                                   reason="来源存疑")  # fmt: skip

    def issue():
        return reg.issue(ex.on_day(end + timedelta(days=1)), REVIEWER, a["id"])

    won = _one_won(_race(monkeypatch, db, "_facts", lodge, issue), a["id"])
    with ex.catalogue.Session() as s:
        r = s.get(Registration, a["id"])
        assert r is not None
        objections = list(s.scalars(select(RegistrationObjection).where(
            RegistrationObjection.registration_id == a["id"])))  # fmt: skip
    if won["status"] == "registered":
        assert r.status == "registered" and r.code and not objections
    else:
        assert won["status"] == "objected"
        assert r.status == "objected" and r.code is None and len(objections) == 1
