"""The service root (:class:`nsdx.core.Nsdx`) builds each part once, even when the first
requests of a cold server arrive together; every surface uses that one object."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

PARTS = ["catalogue", "store", "accounts", "packages", "index", "jobs", "exchange"]


def _count_builds(monkeypatch, cls, counter: list) -> None:
    """Count constructions of ``cls`` and widen the window in which a second thread could
    start a second one (the bug: two first requests built two exchanges)."""
    init = cls.__init__

    def slow_init(self, *a, **kw):
        counter.append(self)
        time.sleep(0.05)
        init(self, *a, **kw)

    monkeypatch.setattr(cls, "__init__", slow_init)


def _together(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    out: list = [None] * n
    errors: list = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


@pytest.mark.parametrize("part", PARTS)
def test_concurrent_first_access_builds_one(nsdx_env, monkeypatch, part):
    from nsdx.core import Nsdx

    nx = Nsdx()
    seen = _together(8, lambda: getattr(nx, part))
    assert all(x is seen[0] for x in seen), f"{part}: {len({id(x) for x in seen})} objects"
    assert nx.built(part) is seen[0]


def test_two_first_requests_share_one_exchange(nsdx_env, monkeypatch):
    """Two first requests to a cold server: one exchange (one ledger writer, one group
    commit), not one per request."""
    from exchange.context import Exchange
    from nsdx.core import Nsdx
    from nsdx.web.app import create_app

    built: list = []
    _count_builds(monkeypatch, Exchange, built)
    nx = Nsdx()
    app = create_app(nx, warm=False)
    with TestClient(app) as c:
        statuses = _together(6, lambda: c.get("/api/exchange/offers").status_code)
    assert statuses == [200] * 6
    assert len(built) == 1
    assert nx.built("exchange") is built[0]


def test_cli_and_http_use_the_service_root(nsdx_env):
    """The web app's state and the CLI helpers hand out the root's parts, not copies."""
    from nsdx.cli.admin import _accounts
    from nsdx.cli.exchange import _ex
    from nsdx.core import Nsdx
    from nsdx.web.app import create_app

    nx = Nsdx()
    state = create_app(nx, warm=False).state.nsdx
    assert state.nx is nx
    for part in ("accounts", "packages", "index", "jobs", "exchange"):
        assert getattr(state, part) is getattr(nx, part)
    assert type(_ex()).__name__ == "Exchange" and type(_accounts()).__name__ == "Accounts"


def test_provide_replaces_a_part_before_use(nsdx_env):
    from nsdx.core import Nsdx

    nx = Nsdx()
    marker = object()
    nx.provide(exchange=marker)
    assert nx.exchange is marker
    with pytest.raises(TypeError):
        nx.provide(settings=marker)
    nx.catalogue  # noqa: B018 - build it
    with pytest.raises(RuntimeError):
        nx.provide(catalogue=object())


def test_the_query_api_reads_the_catalogue_once_per_request(nsdx_env, tmp_path):
    """The views a query may name and their access facts come from one query of the
    datasets (it used to load the published tables, then the same datasets again), and only
    when the catalogue changed since: otherwise a request reads the catalogue's revision
    alone and reuses them (issue 15: this was ~40 ms of every query request). A change to a
    dataset - here made private, then moved to another organisation - is seen by the next
    request."""
    from sqlalchemy import event, select, update

    from catalogue.db import reader_engine
    from catalogue.models import Dataset, Organization
    from catalogue.query import queryable_tables
    from nsdx.core import Nsdx
    from tests.test_exchange_trade import OTHER, make_world

    nx = Nsdx()
    make_world(nx.settings.database_url, nx.settings.home)
    statements: list[str] = []

    def count(conn, cursor, statement, *a):
        statements.append(statement)

    # the revision is read through its own engine on PostgreSQL (catalogue.db.read_one)
    engines = {nx.catalogue.engine, reader_engine(nx.catalogue.engine)}

    def read() -> dict:
        statements.clear()
        for e in engines:
            event.listen(e, "before_cursor_execute", count)
        try:
            return dict(queryable_tables(nx.catalogue))
        finally:
            for e in engines:
                event.remove(e, "before_cursor_execute", count)

    tables = read()
    assert [(t.facts.name, t.version, t.facts.private) for t in tables.values()] == [
        ("ds1", 1, False)
    ]
    from_datasets = [s for s in statements if "FROM datasets" in s]
    assert len(from_datasets) == 1, from_datasets
    # the revision, the join, then its organisations, tags and resources: a fixed number
    assert len(statements) <= 5, [s.split("FROM")[1][:60] for s in statements]

    assert read() == tables  # nothing changed: the revision only
    assert len(statements) == 1 and "catalogue_revision" in statements[0], statements

    with nx.catalogue.Session.begin() as s:
        s.execute(update(Dataset).where(Dataset.name == "ds1").values(private=True))
    (t,) = read().values()
    assert t.facts.private is True
    assert any("FROM datasets" in s for s in statements)  # read again

    with nx.catalogue.Session.begin() as s:
        other = s.scalar(select(Organization.id).where(Organization.name == OTHER))
        s.execute(update(Dataset).where(Dataset.name == "ds1").values(organization_id=other))
    (t,) = read().values()
    assert t.facts.org_id == other and t.table.organization == OTHER
