"""The query API (``POST /api/query``) through the real ASGI app, on two real deployments:
SQLite + the local folder, and PostgreSQL + S3 (a real SeaweedFS; the views read
``s3://`` through httpfs). Datasets are published by the real pipeline; access grants
come from the real exchange flow (offer, order, payment, grant, refund)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from catalogue.auth import Accounts
from catalogue.query import QueryLimits
from nsdx.core import Nsdx
from nsdx.settings import Settings
from tests.conftest import create_pg_database, drop_pg_database, pg_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from nsdx.web import create_app

DATASETS = """
datasets:
  - {id: bus-gps, title: 公交GPS, domain: transport, organization: bus-co, licence: CC-BY-4.0,
     access: open, source: {path: bus.csv, format: csv}}
  - {id: bus-routes, title: 线路, domain: urban-management, organization: city,
     licence: CC-BY-4.0, access: open, source: {path: routes.csv, format: csv}}
  - {id: bus-fares, title: 票价, domain: transport, organization: bus-co,
     licence: nsdx-exchange-commercial, access: restricted, price_cny: 100,
     source: {path: fares.csv, format: csv}}
"""
BUS = (
    "ts,route,speed_kmh\n"
    "2026-03-02 08:00:00,南沙1路,30.5\n2026-03-02 08:00:30,南沙1路,32.0\n"
    "2026-03-02 08:01:00,南沙2路,12.0\n2026-03-02 08:01:30,南沙2路,0.0\n"
    "2026-03-02 08:02:00,南沙2路,18.0\n"
)
ROUTES = "route,operator,km\n南沙1路,bus-co,21.5\n南沙2路,bus-co,14.0\n"
FARES_SQL = "SELECT route, fare_cny FROM transport.bus_fares ORDER BY route"
FARES = "route,fare_cny\n南沙1路,2\n南沙2路,3\n"


@dataclass
class World:
    kind: str
    nx: Nsdx
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def q(self, sql: str, who: str | None = None, **body):
        headers = {"Authorization": self.tokens[who]} if who else {}
        return self.client.post("/api/query", json={"sql": sql, **body}, headers=headers)

    def rows(self, sql: str, who: str | None = None, **body) -> list:
        r = self.q(sql, who, **body)
        assert r.status_code == 200, r.text
        return r.json()["rows"]


def _grants(nx: Nsdx, home: Path) -> None:
    """firm: an active grant; refunded-firm: granted then refunded; expired-firm: a grant
    that ended yesterday; rival: nothing."""
    from exchange import credit_code, trade
    from exchange.actors import Actor
    from exchange.context import Exchange
    from exchange.ledger.keys import load_signer

    ex = Exchange(nx.catalogue, nx.store, home=home, pii_key=b"k", signer=load_signer(home, {}))
    orgs = ["bus-co", "firm", "refunded-firm", "expired-firm", "rival"]
    for i, org in enumerate(orgs):
        trade.register_enterprise(
            ex, Actor.for_org(org), org, credit_code_=credit_code.make("440115", f"MA5{i}TKT1"),
            legal_name=org, in_nansha=True,
        )  # fmt: skip
    seller = Actor.for_org("bus-co")
    from tests.registered import register

    register(ex, "bus-fares", "bus-co")  # no registration, no trade
    offer = trade.create_offer(ex, seller, "bus-fares", price="100")
    for buyer in ("firm", "refunded-firm", "expired-firm"):
        o = trade.place_order(ex, Actor.for_org(buyer, "member"), offer["id"], buyer=buyer)
        trade.confirm_payment(ex, seller, o["id"])
        if buyer == "expired-firm":
            start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
            trade.grant_access(ex, seller, o["id"], days=1, starts=start)
        else:
            trade.grant_access(ex, seller, o["id"], days=30)
        if buyer == "refunded-firm":
            trade.refund(ex, seller, o["id"], reason="test")


@pytest.fixture(scope="class")
def world(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("qapi")
    for name, text in (("bus.csv", BUS), ("routes.csv", ROUTES), ("fares.csv", FARES)):
        (root / name).write_text(text, encoding="utf-8")
    (root / "datasets.yaml").write_text(DATASETS, encoding="utf-8")
    home = root / "home"
    kind = request.cls.kind
    pg = None
    if kind == "postgres-s3":
        if not request.getfixturevalue("pg_available"):
            pytest.skip("PostgreSQL not reachable (NSDX_TEST_PG)")
        pg = create_pg_database()
        url = pg_url(pg)
    else:
        url = f"sqlite:///{root / 'nsdx.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("NSDX_PII_KEY", "test-pii-key")
    # these tests check answers, not speed: a loaded machine's first S3 query may take more
    # than the default 10 s (the timeout tests set their own limit)
    mp.setenv("NSDX_QUERY_TIMEOUT", "120")
    nx = Nsdx(Settings(home=home, database_url=url, storage_url=f"file://{home / 'objects'}",
                       datasets_path=root / "datasets.yaml"))  # fmt: skip
    if kind == "postgres-s3":
        sw = request.getfixturevalue("seaweedfs")
        if sw.proc is None or sw.proc.poll() is not None:
            sw.start()
        store = sw.store(prefix="nsdx", staging_dir=root / "staging")
        nx.__dict__["store"] = store
        nx.__dict__["settings"] = Settings(home, url, store.url, root / "datasets.yaml")
    try:
        assert {r.status for r in nx.ingest(all_=True)} == {"published"}
        acc = Accounts(nx.catalogue)
        for org in ("firm", "refunded-firm", "expired-firm", "rival"):
            acc.create_org(org)
        users = {
            "admin": dict(sysadmin=True),
            "auditor": dict(auditor=True),
            "owner": dict(org="bus-co"),
            "buyer": dict(org="firm"),
            "refunded": dict(org="refunded-firm"),
            "expired": dict(org="expired-firm"),
            "rival": dict(org="rival"),
        }
        tokens = {}
        for name, how in users.items():
            org = how.pop("org", None)
            acc.create_user(name, **how)
            if org:
                acc.add_member(org, name, "member")
            tokens[name] = acc.create_token(name)[0]
        _grants(nx, home)
        with TestClient(create_app(nx, warm=False, worker=False)) as client:
            yield World(kind, nx, client, tokens)
    finally:
        mp.undo()
        if pg:
            from catalogue.db import dispose_all

            dispose_all()
            drop_pg_database(pg)


class QueryAPITests:
    """The same tests on each deployment (see the subclasses)."""

    kind = ""

    # -- open data -------------------------------------------------------------------------------
    def test_open_dataset_for_anyone(self, world):
        r = world.q(
            "SELECT route, count(*) AS n, round(avg(speed_kmh), 2) AS v FROM transport.bus_gps "
            "GROUP BY route ORDER BY route"
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["columns"] == [
            {"name": "route", "type": "string"},
            {"name": "n", "type": "int64"},
            {"name": "v", "type": "double"},
        ]
        assert body["rows"] == [["南沙1路", 2, 31.25], ["南沙2路", 3, 10.0]]
        assert body["row_count"] == 2 and body["truncated"] is False
        assert body["views"] == ["transport.bus_gps"]
        assert r.headers["x-nsdx-truncated"] == "false"

    def test_get_with_sql_parameter(self, world):
        r = world.client.get(
            "/api/query", params={"sql": "SELECT max(ts) AS last FROM transport.bus_gps"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [["2026-03-02T08:02:00"]]

    def test_joins_ctes_windows_across_datasets(self, world):
        rows = world.rows(
            """
            WITH speeds AS (
                SELECT route, ts, speed_kmh,
                       avg(speed_kmh) OVER (PARTITION BY route ORDER BY ts
                                            ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS smooth,
                       row_number() OVER (PARTITION BY route ORDER BY ts DESC) AS latest
                FROM transport.bus_gps)
            SELECT s.route, r.km, s.smooth
            FROM speeds s JOIN urban_management.bus_routes r USING (route)
            WHERE s.latest = 1 ORDER BY s.route
            """
        )
        assert rows == [["南沙1路", 21.5, 31.25], ["南沙2路", 14.0, 9.0]]

    def test_row_cap_and_truncation(self, world):
        r = world.q("SELECT * FROM transport.bus_gps ORDER BY ts", max_rows=2)
        body = r.json()
        assert body["row_count"] == 2 and body["truncated"] is True and body["max_rows"] == 2
        assert world.q("SELECT * FROM transport.bus_gps", max_rows=5).json()["truncated"] is False
        # the server's ceiling wins over a larger request
        r = world.q("SELECT * FROM range(50000)", max_rows=10**9)
        assert r.json()["row_count"] == QueryLimits().max_rows and r.json()["truncated"] is True

    def test_csv_and_arrow(self, world):
        r = world.q("SELECT route, km FROM urban_management.bus_routes ORDER BY 1", format="csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.text.splitlines() == ['"route","km"', '"南沙1路",21.5', '"南沙2路",14']
        assert r.headers["x-nsdx-row-count"] == "2"
        r = world.q("SELECT * FROM transport.bus_gps", format="arrow", max_rows=3)
        assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
        t = pa.ipc.open_stream(io.BytesIO(r.content)).read_all()
        assert t.num_rows == 3 and t.column_names == ["ts", "route", "speed_kmh"]
        assert t.schema.metadata[b"nsdx.truncated"] == b"true"
        assert r.headers["x-nsdx-truncated"] == "true"

    # -- restricted data ---------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("who", "allowed"),
        [
            ("owner", True),  # a member of the dataset's organisation
            ("admin", True),  # a sysadmin
            ("buyer", True),  # an organisation with an active grant
            (None, False),
            ("rival", False),
            ("refunded", False),  # refunded: the grant is revoked
            ("expired", False),  # the grant ended yesterday
            ("auditor", False),  # auditors read exchange records, not the data
        ],
    )
    def test_restricted_dataset(self, world, who, allowed):
        r = world.q(FARES_SQL, who)
        if allowed:
            assert r.status_code == 200, r.text
            assert r.json()["rows"] == [["南沙1路", 2], ["南沙2路", 3]]
            return
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert err["error"] == "DatasetRestricted" and err["dataset"] == "bus-fares"
        assert "'bus-fares'" in err["message"] and "restricted" in err["message"]
        if who is None:
            assert "API token" in err["hint"]
        else:
            assert "/api/exchange/offers?dataset=bus-fares" in err["hint"]
            assert "/api/exchange/orders" in err["hint"]

    def test_restricted_inside_a_join_or_subquery_is_caught(self, world):
        for sql in (
            "SELECT * FROM transport.bus_gps JOIN transport.bus_fares USING (route)",
            "SELECT (SELECT max(fare_cny) FROM transport.bus_fares)",
            "WITH f AS (SELECT * FROM transport.bus_fares) SELECT count(*) FROM f",
            "DESCRIBE transport.bus_fares",
        ):
            r = world.q(sql, "rival")
            assert r.status_code == 403 and r.json()["error"]["dataset"] == "bus-fares", sql
        assert world.rows(
            "SELECT g.route, f.fare_cny FROM transport.bus_gps g JOIN transport.bus_fares f "
            "USING (route) ORDER BY g.ts LIMIT 1",
            "buyer",
        ) == [["南沙1路", 2]]

    def test_bad_token_is_refused_in_the_same_shape(self, world):
        r = world.client.post(
            "/api/query", json={"sql": "SELECT 1"}, headers={"Authorization": "nsdx_nope"}
        )
        assert r.status_code == 403
        assert r.json()["error"]["error"] == "NotAuthorized"

    # -- what is refused ----------------------------------------------------------------------------
    def test_writes_and_file_reads_are_refused_and_change_nothing(self, world):
        store = world.nx.store
        (t,) = [t for t in world.nx.catalogue.published_tables() if t.dataset == "bus-gps"]
        target = store.uri(t.uris[0])
        attacks = [
            f"COPY (SELECT 1 AS x) TO '{target}' (FORMAT parquet, USE_TMP_FILE false)",
            f"EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{target}' (FORMAT parquet)",
            "CREATE SECRET evil (TYPE s3, KEY_ID 'a', SECRET 'b', ENDPOINT '127.0.0.1:1')",
            "DROP VIEW transport.bus_gps",
            "CREATE TABLE t AS SELECT 1",
            "CREATE MACRO m(a) AS a",
            "ATTACH ':memory:' AS m",
            "SELECT * FROM enable_logging(storage='file', storage_path='/tmp/nsdx-log')",
            "SELECT * FROM duckdb_secrets()",
            f"SELECT * FROM read_parquet('{target}')",
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM '{target.rsplit('/', 1)[0]}/../x.parquet'",
            "SELECT 1; DROP VIEW transport.bus_gps",
            "PRAGMA version",
            "SET enable_external_access = true",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SELECT current_setting('allowed_paths')",
        ]
        for sql in attacks:
            r = world.q(sql, "admin")
            assert r.status_code == 400, (sql, r.text)
            err = r.json()["error"]
            assert err["error"] == "SqlRejected" and err["rule"] and err["message"], err
            assert set(err) >= {"error", "message", "hint", "transient", "rule"}
        assert world.rows("SELECT count(*) FROM transport.bus_gps") == [[5]]

    def test_unknown_view_and_engine_errors(self, world):
        r = world.q("SELECT * FROM transport.bus_gpz")
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["rule"] == "table" and "no published view 'transport.bus_gpz'" in err["message"]
        r = world.q("SELECT no_such_column FROM transport.bus_gps")
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["error"] == "QueryError" and "no_such_column" in err["message"]
        assert str(world.nx.store.uri("x"))[:-1] not in r.text  # the storage location stays private

    def test_bad_requests(self, world):
        c = world.client
        cases = [
            c.post(
                "/api/query", content=b"{not json", headers={"Content-Type": "application/json"}
            ),
            c.post("/api/query", json=["SELECT 1"]),
            c.post("/api/query", json={}),
            c.post("/api/query", json={"sql": "SELECT 1", "format": "xml"}),
            c.post("/api/query", json={"sql": "SELECT 1", "max_rows": -1}),
            c.get("/api/query", params={"sql": "SELECT 1", "max_rows": "many"}),
        ]
        for r in cases:
            assert r.status_code == 400, r.text
            assert r.json()["error"]["error"] == "BadRequest"
        r = c.get("/api/query")
        assert r.status_code == 400 and r.json()["error"]["rule"] == "empty"

    def test_timeout(self, world):
        state = world.client.app.state.nsdx
        state.query_limits = QueryLimits(timeout=0.5)
        try:
            # a streaming aggregate: long, in constant memory (a cross join would build its
            # right side first and could meet the memory limit before the time limit)
            r = world.q("SELECT sum(hash(range)) FROM range(1000000000000)")
        finally:
            state.query_limits = None
        assert r.status_code == 408, r.text
        assert r.json()["error"]["error"] == "QueryTimeout"

    def test_busy(self, world, monkeypatch):
        from nsdx.web.query import _pool

        state = world.client.app.state.nsdx
        procs = _pool(state).procs
        taken = 0
        while procs.try_acquire():
            taken += 1
        monkeypatch.setenv("NSDX_QUERY_QUEUE_WAIT", "0.2")
        try:
            r = world.q("SELECT 1")
        finally:
            for _ in range(taken):
                procs.release()
        assert r.status_code == 503 and r.json()["error"]["error"] == "QueryBusy"
        assert r.json()["error"]["transient"] is True
        assert r.headers["retry-after"] == "1"

    def test_query_connection_uses_its_own_s3_key(self, world, monkeypatch):
        """NSDX_QUERY_S3_* give the query connection its own (read-only) key: a wrong one
        fails with a storage error, which shows it is the key in use."""
        if world.kind != "postgres-s3":
            pytest.skip("S3 only")
        monkeypatch.setenv("NSDX_QUERY_S3_ACCESS_KEY_ID", "nobody")
        monkeypatch.setenv("NSDX_QUERY_S3_SECRET_ACCESS_KEY", "wrong-secret")
        r = world.q("SELECT count(*) FROM transport.bus_gps")
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["error"] == "QueryStorageError" and err["transient"] is True
        assert world.nx.store.bucket not in r.text

    def test_openapi_shows_the_endpoint(self, world):
        spec = world.client.get("/openapi.json").json()
        ops = spec["paths"]["/api/query"]
        assert set(ops) >= {"get", "post"}
        body = ops["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["properties"]) == {"sql", "format", "max_rows"}
        assert {"400", "403", "408"} <= set(ops["post"]["responses"])


class TestSQLiteLocal(QueryAPITests):
    kind = "sqlite-local"
    pytestmark = pytest.mark.xdist_group("query_api_local")


class TestPostgresS3(QueryAPITests):
    kind = "postgres-s3"
    pytestmark = [pytest.mark.s3, pytest.mark.xdist_group("query_api_s3")]
