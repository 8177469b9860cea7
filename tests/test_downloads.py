"""Download routes over a real HTTP server (uvicorn in a thread, the real app), on the local
folder and on real SeaweedFS: open data by anyone with the tools AI firms use (DuckDB's
httpfs doing real range reads, pyarrow, curl-like httpx), restricted data only for those the
access rule allows, with signed URLs that expiry, refunds and revocation cut, and every bad
input a clear 4xx with a hint."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow.parquet as pq
import pytest

from tests.test_ckan_client import free_port

pytestmark = pytest.mark.xdist_group("downloads")

SELLER, BUYER, OTHER, BUREAU = "taxi-co", "pearl-ai", "other-co", "bureau"
BUCKET_PREFIX = "dlsecretbucket"  # distinctive: the crawler looks for it in every answer

DATASETS = """organizations:
  - {{name: {bureau}, title: 南沙区交通运输局}}
datasets:
  - id: bus-gps
    title: 南沙公交车辆GPS轨迹
    title_en: Nansha bus GPS positions
    domain: transport
    organization: {bureau}
    access: open
    source: {{path: {bus}, format: csv}}
  - id: bus-gtfs
    title: 南沙公交GTFS
    domain: transport
    organization: {bureau}
    access: open
    source: {{path: {gtfs}, format: gtfs}}
  - id: ride-orders
    title: 网约车订单
    domain: transport
    organization: {seller}
    access: restricted
    price_cny: 88000
    source: {{path: {orders}, format: csv}}
  - id: other-secret
    title: 另一机构的受限数据
    domain: urban-management
    organization: {other}
    access: restricted
    price_cny: 100
    source: {{path: {orders}, format: csv}}
"""


def bus_csv(path: Path, rows: int, seed: int = 0) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ts", "route_id", "speed_kmh", "lon", "lat"])
        t0 = datetime(2026, 3, 2, 6, 0, 0)
        for i in range(rows):
            w.writerow(
                [
                    (t0 + timedelta(seconds=i + seed)).isoformat(sep=" "),
                    f"R{(i * 7 + seed) % 23:02d}",
                    round((i * 13 + seed) % 600 / 10, 1),
                    round(113.5 + (i % 1000) / 10000, 6),
                    round(22.7 + (i % 777) / 10000, 6),
                ]
            )


def gtfs_zip(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("agency.txt", "agency_id,agency_name,agency_url,agency_timezone\n"
                   "NS,南沙公交,https://example.cn,Asia/Shanghai\n")  # fmt: skip
        z.writestr("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\n"
                   "S1,蕉门,22.79,113.53\nS2,金洲,22.77,113.55\nS3,南沙客运港,22.70,113.64\n")  # fmt: skip
        z.writestr("routes.txt", "route_id,agency_id,route_short_name,route_type\n"
                   "N1,NS,南沙1路,3\nN2,NS,南沙2路,3\n")  # fmt: skip


ORDERS = "order_id,fare_cny,district\nA1,32.5,南沙街\nA2,18.0,黄阁镇\nA3,44.1,横沥镇\n"


class Recorder:
    """ASGI middleware: every request the server saw (method, path, Range, status)."""

    def __init__(self, app) -> None:
        self.app = app
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        rec = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "range": headers.get(b"range", b"").decode(),
            "status": None,
        }
        self.seen.append(rec)

        async def send2(msg):
            if msg["type"] == "http.response.start":
                rec["status"] = msg["status"]
            await send(msg)

        return await self.app(scope, receive, send2)


@dataclass
class Portal:
    url: str
    backend: str
    home: Path
    env: dict[str, str]
    tokens: dict[str, str]
    recorder: Recorder
    server: object
    thread: threading.Thread
    secrets: list[str] = field(default_factory=list)  # storage locations never to be shown
    orders: dict[str, str] = field(default_factory=dict)
    client: httpx.Client = field(default_factory=lambda: http_client())

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": self.tokens[user]}

    def get(self, path: str, user: str | None = None, **kw) -> httpx.Response:
        return self.request("GET", path, user, **kw)

    def request(self, method: str, path: str, user: str | None = None, **kw) -> httpx.Response:
        headers = {**(self.h(user) if user else {}), **kw.pop("headers", {})}
        return self.client.request(method, self.url + path if path.startswith("/") else path,
                                   headers=headers, **kw)  # fmt: skip

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)


def http_client() -> httpx.Client:
    """One connection pool for the module's requests (building a client per request, as
    httpx.get does, costs more CPU than the request). It keeps no cookies, so each request
    stands alone as with httpx.get."""
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    return httpx.Client(timeout=60, cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])))


def exchange_of():
    from exchange.context import Exchange
    from nsdx.core import Nsdx

    nx = Nsdx()
    return nx, Exchange(nx.catalogue, nx.store, home=nx.settings.home, pii_key=nx.pii_key()[0])


def buy(portal: Portal, dataset: str) -> str:
    """offer -> order -> payment -> grant through the exchange API; the order id."""
    c = httpx.Client(base_url=portal.url, timeout=60)
    r = c.post("/api/exchange/offers", json={"dataset": dataset, "price_cny": "88000",
               "delivery_mode": "presigned-url"}, headers=portal.h("sam"))  # fmt: skip
    assert r.status_code == 201, r.text
    r = c.post("/api/exchange/orders", json={"offer": r.json()["id"], "buyer": BUYER},
               headers=portal.h("bo"))  # fmt: skip
    assert r.status_code == 201, r.text
    order = r.json()["id"]
    r = c.post(f"/api/exchange/orders/{order}/payment", json={"reference": "BOC-1"},
               headers=portal.h("sam"))  # fmt: skip
    assert r.status_code == 200, r.text
    r = c.post(f"/api/exchange/orders/{order}/grant", json={"days": 30}, headers=portal.h("sam"))
    assert r.status_code == 200, r.text
    return order


def start_portal(request, tmp: Path, backend: str, mp: pytest.MonkeyPatch) -> Portal:
    """Publish the datasets (bus-gps twice: v1 and v2), register enterprises and users,
    and serve the real app under uvicorn in a thread, behind a request recorder."""
    import uvicorn

    from catalogue.auth import Accounts
    from exchange import credit_code, trade
    from exchange.actors import Actor
    from nsdx.core import Nsdx
    from nsdx.web import create_app

    home = tmp / "home"
    bus, gtfs, orders = tmp / "bus.csv", tmp / "bus.zip", tmp / "orders.csv"
    bus_csv(bus, 20_000)
    gtfs_zip(gtfs)
    orders.write_text(ORDERS, encoding="utf-8")
    ds_yaml = tmp / "datasets.yaml"
    ds_yaml.write_text(
        DATASETS.format(bureau=BUREAU, seller=SELLER, other=OTHER, bus=bus, gtfs=gtfs,
                        orders=orders), "utf-8")  # fmt: skip
    port = free_port()
    env = {
        "NSDX_HOME": str(home),
        "NSDX_DATASETS": str(ds_yaml),
        "NSDX_PII_KEY": "test-pii-key",
        "NSDX_SERVE_WORKER": "0",
        "NSDX_VALIDATION_WORKER": "0",
    }
    for k in ("NSDX_DATABASE_URL", "NSDX_STORAGE_URL", "NSDX_S3_PUBLIC_ENDPOINT",
              "NSDX_PUBLIC_URL", "NSDX_SIGNED_URL_TTL", "NSDX_URL_SIGNING_KEY"):  # fmt: skip
        mp.delenv(k, raising=False)
    secrets = ["file://", str(home), str(tmp), "s3://"]
    if backend == "s3":
        sw = request.getfixturevalue("seaweedfs")
        if sw.proc is None or sw.proc.poll() is not None:
            sw.start()
        bucket = sw.bucket(f"{BUCKET_PREFIX}{os.getpid()}{int(time.time() * 1000) % 100000}")
        env.update(sw.env(bucket, "cat"))
        env["NSDX_STAGING_DIR"] = str(tmp / "staging")
        secrets += [bucket, sw.endpoint.split("://")[1]]
    for k, v in env.items():
        mp.setenv(k, v)

    nx, ex = exchange_of()
    assert all(r.version == 1 for r in nx.ingest(all_=True))
    bus_csv(bus, 25_000, seed=5)  # a second version of the bus data
    (r,) = nx.ingest(["bus-gps"])
    assert r.version == 2
    for i, org in enumerate((SELLER, BUYER, OTHER)):
        if org == BUYER:
            with nx.catalogue.Session.begin() as s:
                nx.catalogue.ensure_organization(s, BUYER)
        trade.register_enterprise(
            ex, Actor.for_org(org), org, credit_code_=credit_code.make("440115", f"MA5{i}TKT1"),
            legal_name=org, in_nansha=True,
        )  # fmt: skip
    from tests.registered import register

    register(ex, "ride-orders")  # no registration, no trade
    acc = Accounts(nx.catalogue)
    tokens = {}
    for user, org, role in (("sam", SELLER, "editor"), ("bo", BUYER, "member"),
                            ("eve", OTHER, "admin")):  # fmt: skip
        acc.create_user(user)
        acc.add_member(org, user, role)
        tokens[user], _ = acc.create_token(user)
    acc.create_user("root", sysadmin=True)
    tokens["root"], _ = acc.create_token("root")

    app = Recorder(create_app(Nsdx(), warm=False, worker=False))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True, name="portal")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the portal did not start")
        time.sleep(0.05)
    return Portal(f"http://127.0.0.1:{port}", backend, home, env, tokens, app, server, thread,
                  secrets)  # fmt: skip


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def portal(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        p = start_portal(request, tmp_path_factory.mktemp(f"dl-{request.param}"), request.param, mp)
        try:
            yield p
        finally:
            p.stop()


def manifest_sha(portal: Portal, name: str, version: int, table: str | None = None) -> str:
    from catalogue import downloads as dl
    from catalogue.registry import Catalogue

    cat = Catalogue(f"sqlite:///{portal.home / 'nsdx.db'}")
    t = dl.resolve(cat, name, version, table or name)
    return t.files[0].sha256


def duck():
    import duckdb

    from ingest.storage.duckdb_s3 import load_httpfs

    con = duckdb.connect()
    load_httpfs(con)
    return con


# -- open data ------------------------------------------------------------------------------


def test_resource_urls_are_the_download_routes(portal):
    pkg = portal.get("/api/3/action/package_show?id=bus-gps").json()["result"]
    (res,) = pkg["resources"]
    assert res["url"] == f"{portal.url}/dataset/bus-gps/v2/bus-gps.parquet"
    assert (
        res["nsdx_files"][0]["url"] == f"{portal.url}/dataset/bus-gps/v2/bus-gps/part-00000.parquet"
    )
    assert "key" not in res["nsdx_files"][0]
    gtfs = portal.get("/api/3/action/package_show?id=bus-gtfs").json()["result"]
    urls = sorted(r["url"] for r in gtfs["resources"])
    assert f"{portal.url}/dataset/bus-gtfs/v1/stops.parquet" in urls
    # every metadata document carries the same absolute URLs
    dcat = portal.get("/dataset/bus-gps.jsonld").json()
    assert dcat["dcat:distribution"][0]["dcat:downloadURL"]["@id"] == res["url"]
    cr = portal.get("/dataset/bus-gps/croissant.json").json()
    assert cr["distribution"][0]["contentUrl"] == res["nsdx_files"][0]["url"]
    page = portal.get("/dataset/bus-gps").text
    assert res["url"] in page  # the page's schema.org JSON-LD and its download link
    # a configured public base URL wins over the address the request came to
    from nsdx.core import Nsdx
    from nsdx.settings import Settings

    s = Settings.from_env({**portal.env, "NSDX_PUBLIC_URL": "https://data.nansha.example/"})
    assert s.public_url == "https://data.nansha.example"
    assert Nsdx(s).public_url("/dataset/x") == "https://data.nansha.example/dataset/x"


def test_parquet_route_headers_ranges_and_head(portal):
    path = "/dataset/bus-gps/v1/bus-gps.parquet"
    sha = manifest_sha(portal, "bus-gps", 1)
    whole = portal.get(path, follow_redirects=True)
    assert whole.status_code == 200 and whole.content[:4] == b"PAR1"
    assert pq.read_table(io.BytesIO(whole.content)).num_rows == 20_000
    import hashlib

    assert hashlib.sha256(whole.content).hexdigest() == sha  # the bytes the manifest names
    size = len(whole.content)
    first = portal.get(path, headers={"Range": "bytes=0-3"}, follow_redirects=True)
    assert first.status_code == 206 and first.content == b"PAR1"
    tail = portal.get(path, headers={"Range": "bytes=-8"}, follow_redirects=True)
    assert tail.status_code == 206 and tail.content[-4:] == b"PAR1" and len(tail.content) == 8
    if portal.backend == "local":
        head = httpx.head(portal.url + path)
        assert head.status_code == 200
        assert head.headers["etag"] == f'"{sha}"'
        assert int(head.headers["content-length"]) == size
        assert head.headers["accept-ranges"] == "bytes"
        assert head.headers["last-modified"].endswith("GMT")
        assert first.headers["content-range"] == f"bytes 0-3/{size}"
        # resuming: If-Range with the ETag gives the rest
        rest = portal.get(path, headers={"Range": "bytes=100-", "If-Range": f'"{sha}"'})
        assert rest.status_code == 206 and rest.content == whole.content[100:]
        r = portal.get(path, headers={"Range": f"bytes={size + 10}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
        assert "beyond the end" in r.json()["error"]["message"] and r.json()["error"]["hint"]
        r = portal.get(path, headers={"Range": "pages=1-2"})
        assert r.status_code == 400 and "bytes=0-1023" in r.json()["error"]["hint"]
    else:  # S3: a redirect to a short-lived presigned URL, not a proxy
        r = portal.get(path)
        assert r.status_code == 302 and "X-Amz-Signature=" in r.headers["location"]
        assert r.headers["etag"] == f'"{sha}"'
        assert "X-Amz-Expires=300" in r.headers["location"]
        r = portal.get(path, headers={"Range": f"bytes={size + 10}-"})  # no redirect
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
        assert "beyond the end" in r.json()["error"]["message"]


def test_duckdb_reads_the_route_with_range_requests(portal):
    con = duck()
    before = len(portal.recorder.seen)
    url = f"{portal.url}/dataset/bus-gps/v1/bus-gps.parquet"
    n, top = con.execute(f"SELECT count(*), max(speed_kmh) FROM read_parquet('{url}')").fetchone()
    assert n == 20_000 and top == 59.9
    seen = [r for r in portal.recorder.seen[before:] if r["path"].endswith("bus-gps.parquet")]
    assert any(r["range"].startswith("bytes=") for r in seen), seen  # DuckDB asked for ranges
    if portal.backend == "local":
        assert any(r["status"] == 206 for r in seen), seen
    else:
        assert all(r["status"] == 302 for r in seen if r["method"] == "GET"), seen
    # earlier versions stay readable, and their rows are their own
    v2 = con.execute(
        f"SELECT count(*) FROM read_parquet('{portal.url}/dataset/bus-gps/v2/bus-gps.parquet')"
    ).fetchone()[0]
    assert v2 == 25_000


def test_csv_and_jsonl_conversions(portal):
    from nsdx.core import Nsdx

    want = Nsdx().query("SELECT * FROM transport.bus_gtfs__stops ORDER BY stop_id").to_pylist()
    r = portal.get("/dataset/bus-gtfs/v1/stops.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["stop_id"] for x in rows] == [w["stop_id"] for w in want]
    assert rows[0]["stop_name"] == "蕉门"
    r = portal.get("/dataset/bus-gtfs/v1/stops.jsonl")
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["stop_name"] for x in lines] == [w["stop_name"] for w in want]
    assert r.headers["content-disposition"] == 'attachment; filename="bus-gtfs-v1-stops.jsonl"'
    big = portal.get("/dataset/bus-gps/v2/bus-gps.csv")
    assert big.text.count("\n") == 25_001  # header + every row, streamed in batches
    head = httpx.head(portal.url + "/dataset/bus-gps/v2/bus-gps.csv")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/dataset/nope/v1/nope.parquet", 404, "not found"),
        ("/dataset/bus-gps/v9/bus-gps.parquet", 404, "published versions: v1, v2"),
        ("/dataset/bus-gps/vx/bus-gps.parquet", 404, "not a version"),
        ("/dataset/bus-gps/v1/other.parquet", 404, "its tables are: bus-gps"),
        ("/dataset/bus-gps/v1/bus-gps.xlsx", 404, ".parquet, .csv or .jsonl"),
        ("/dataset/bus-gps/v1/bus-gps/part-00009.parquet", 404, "part-00000.parquet"),
        ("/dataset/bus-gtfs/v1/shapes.csv", 404, "stops"),
    ],
)
def test_bad_paths_are_clear_4xx(portal, path, status, words):
    r = portal.get(path)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"] + " " + (err.get("hint") or "")
    assert err["hint"]


# -- restricted data ------------------------------------------------------------------------

RIDE = "/dataset/ride-orders/v1/ride-orders"


def listed(portal: Portal, user: str | None) -> dict[str, dict]:
    r = portal.get("/api/downloads", user)
    assert r.status_code == 200, r.text
    return {f"{t['dataset']}/v{t['version']}/{t['table']}": t for t in r.json()["tables"]}


def delivery_events() -> list[dict]:
    _, ex = exchange_of()
    return [e for e in ex.ledger.events(ex.ledger.head_size()) if e["type"] == "delivery.made"]


def test_restricted_table_needs_a_token_or_a_signed_url(portal):
    r = portal.get(RIDE + ".parquet")
    assert r.status_code == 401
    assert "signed URL" in r.json()["error"]["hint"]
    assert httpx.head(portal.url + RIDE + ".parquet").status_code == 401
    # a token for another organisation: 403 saying how to buy
    r = portal.get(RIDE + ".csv", "eve")
    assert r.status_code == 403 and "/api/exchange/offers" in r.json()["error"]["hint"]
    # anonymous listing: open tables only, every version
    anon = listed(portal, None)
    assert "bus-gps/v1/bus-gps" in anon and "bus-gps/v2/bus-gps" in anon
    assert not any(k.startswith(("ride-orders", "other-secret")) for k in anon)
    assert anon["bus-gps/v2/bus-gps"]["expires"] is None  # open URLs do not expire
    # the owning organisation reads its own data; no delivery is recorded for it
    before = len(delivery_events())
    r = portal.get(RIDE + ".csv", "sam", follow_redirects=True)
    assert r.status_code == 200 and r.text.startswith('"order_id","fare_cny","district"')
    mine = listed(portal, "sam")
    assert "ride-orders/v1/ride-orders" in mine and "other-secret/v1/other-secret" not in mine
    assert len(delivery_events()) == before


def test_signed_urls_are_checked_every_time(portal):
    import duckdb

    entry = listed(portal, "sam")["ride-orders/v1/ride-orders"]
    (url,) = entry["parquet"]
    assert "?u=sam&k=" in url and "&e=" in url and "&s=" in url and entry["expires"]
    # read without any token, by DuckDB (range requests) and by pyarrow over plain HTTP
    con = duck()
    assert con.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone()[0] == 3
    got = portal.get(url, follow_redirects=True)
    assert pq.read_table(io.BytesIO(got.content)).num_rows == 3
    assert portal.get(entry["csv"]).text.count("\n") == 4
    # the same signature opens only its own table
    other = url.replace(
        "/ride-orders/v1/ride-orders.parquet", "/other-secret/v1/other-secret.parquet"
    )
    r = portal.get(other)
    assert r.status_code == 403 and "does not match" in r.json()["error"]["message"]
    # tampered: another user, a later expiry, a changed signature
    for bad in (url.replace("u=sam", "u=eve"), url.replace("&e=", "&e=9"),
                url[:-3] + ("xyz" if not url.endswith("xyz") else "abc")):  # fmt: skip
        r = portal.get(bad)
        assert r.status_code == 403, (bad, r.text)
        assert r.json()["error"]["hint"]
    # malformed or incomplete
    for q in ("?u=sam", "?u=sam&k=x&e=abc&s=x", "?u=sam&k=x&e=1&s=" + "x" * 500,
              "?u=sam&k=x&e=%C2%B2&s=x", "?u=sam&k=x&e=%D9%A1&s=x"):  # fmt: skip
        r = portal.get(RIDE + ".parquet" + q)
        assert r.status_code == 403 and r.json()["error"]["hint"], r.text
    # expired: signed with the portal's own key for a moment already past
    from catalogue import downloads as dl
    from nsdx.core import Nsdx

    nx = Nsdx()
    t = dl.resolve(nx.catalogue, "ride-orders", 1, "ride-orders")
    token_id = parse_qs(urlsplit(url).query)["k"][0]
    old = portal.url + dl.signed_url(nx.url_signing_key(), t, "sam", int(time.time()) - 5, token_id)
    r = portal.get(old)
    assert r.status_code == 403 and "expired" in r.json()["error"]["message"]
    with pytest.raises(duckdb.Error):
        con.execute(f"SELECT count(*) FROM read_parquet('{old}')").fetchone()
    # a valid signature for a user who has since left the organisation is refused
    from catalogue.auth import Accounts

    Accounts(nx.catalogue).remove_member(SELLER, "sam")
    try:
        assert portal.get(url).status_code == 403
    finally:
        Accounts(nx.catalogue).add_member(SELLER, "sam", "editor")
    assert portal.get(url, follow_redirects=True).status_code == 200


def test_signed_urls_die_with_their_token(portal):
    """A signed URL is bound to the token it was minted with: revoking the token (or
    minting with another user's token id) makes the URL useless."""
    from catalogue.auth import Accounts
    from nsdx.core import Nsdx

    acc = Accounts(Nsdx().catalogue)
    secret, info = acc.create_token("sam", name="short-lived")
    r = httpx.get(portal.url + "/api/downloads", headers={"Authorization": secret})
    assert r.status_code == 200, r.text
    entry = next(t for t in r.json()["tables"] if t["dataset"] == "ride-orders")
    (url,) = entry["parquet"]
    assert parse_qs(urlsplit(url).query)["k"] == [info["id"]]
    assert portal.get(url, follow_redirects=True).status_code == 200
    assert portal.get(entry["csv"]).status_code == 200
    acc.revoke_token(info["id"])
    for u in (url, entry["csv"], entry["jsonl"]):
        r = portal.get(u)
        assert r.status_code == 403, r.text
        assert "revoked" in r.json()["error"]["message"] and r.json()["error"]["hint"]
    # the token of another user cannot be swapped in (the signature covers it)
    other = url.replace(f"k={info['id']}", "k=" + acc.tokens("eve")[0]["id"])
    assert portal.get(other).status_code == 403


def test_private_dataset_answers_as_a_missing_one(portal):
    """Before any authorisation, a dataset the caller may not see gives away nothing: its
    wrong version, wrong table and real table answer byte for byte as a missing dataset."""
    from sqlalchemy import update

    from catalogue.models import Dataset
    from nsdx.core import Nsdx

    nx = Nsdx()

    def private(flag: bool) -> None:
        with nx.catalogue.Session.begin() as s:
            s.execute(update(Dataset).where(Dataset.name == "other-secret").values(private=flag))

    private(True)
    try:
        for user in (None, "eve", "sam"):  # anonymous, a member, an outsider
            for path in ("/v9/other-secret.parquet", "/v1/nope.csv", "/v1/other-secret.parquet",
                         "/v1/other-secret.jsonl", "/v1/other-secret/part-0.parquet"):  # fmt: skip
                r = portal.get("/dataset/other-secret" + path, user)
                if user == "eve":  # its organisation sees it
                    assert r.status_code in (200, 302, 404), r.text
                    continue
                ghost = portal.get("/dataset/no-such-thing" + path, user)
                assert r.status_code == ghost.status_code == 404, (path, r.text)
                assert r.content == ghost.content.replace(b"no-such-thing", b"other-secret")
                assert b"v1" not in r.content and b"tables" not in r.content
        # a signed URL's signature is checked before the dataset is looked up
        r = portal.get("/dataset/other-secret/v9/other-secret.parquet?u=sam&k=x&e=9&s=x")
        ghost = portal.get("/dataset/no-such-thing/v9/other-secret.parquet?u=sam&k=x&e=9&s=x")
        assert r.status_code == ghost.status_code == 403
        assert r.content == ghost.content
        # the portal page gives the same hint for a private and a missing dataset
        page = httpx.get(portal.url + "/dataset/other-secret")
        miss = httpx.get(portal.url + "/dataset/no-such-thing")
        assert page.status_code == miss.status_code == 404
        assert page.text == miss.text.replace("no-such-thing", "other-secret")
    finally:
        private(False)


def test_unicode_digits_are_not_numbers(portal):
    """'²' and '١' pass str.isdigit() but are not ASCII digits: a clear 4xx, never a 500,
    and never silently version 1."""
    for v in ("v%C2%B2", "v%D9%A1", "v1%C2%B2", "v%EF%BC%91"):
        r = portal.get(f"/dataset/bus-gps/{v}/bus-gps.parquet")
        assert r.status_code == 404, (v, r.text)
        assert r.json()["error"]["hint"]
    r = portal.get(RIDE + ".parquet?u=sam&k=x&e=%C2%B2&s=x")
    assert r.status_code == 403 and "malformed" in r.json()["error"]["message"]
    for rng in ("bytes=\xb2-", "bytes=-\xb2", "bytes=0-\xb2", "bytes=\u0661-"):
        r = portal.get(
            "/dataset/bus-gps/v1/bus-gps.parquet", headers={"Range": rng.encode("utf-8")}
        )
        assert r.status_code == 400, (rng, r.text)
        assert r.json()["error"]["error"] == "MalformedRange"
    from exchange.errors import InvalidRequest
    from exchange.rules import bounded_int

    for bad in ("²", "١", "+²"):
        with pytest.raises(InvalidRequest):
            bounded_int(bad, "days", 1, 100)
    assert bounded_int(" 42 ", "days", 1, 100) == 42


def test_signing_key_is_kept_private(portal):
    assert listed(portal, "sam")["ride-orders/v1/ride-orders"]["expires"]  # signs a URL
    key = portal.home / "url-signing.key"
    assert key.is_file() and oct(key.stat().st_mode & 0o777) == "0o600"


def paths(portal: Portal, signed: str, profile: dict | None) -> dict[str, bool]:
    """Whether the buyer reads ride-orders on each path (True: allowed)."""
    out = {
        "token parquet": portal.get(RIDE + ".parquet", "bo", follow_redirects=True).status_code,
        "token csv": portal.get(RIDE + ".csv", "bo").status_code,
        "token jsonl head": httpx.head(
            portal.url + RIDE + ".jsonl", headers=portal.h("bo")
        ).status_code,
        "signed url": portal.get(signed, follow_redirects=True).status_code,
        "query api": httpx.post(
            portal.url + "/api/query",
            headers=portal.h("bo"),
            timeout=60,
            json={"sql": "SELECT count(*) AS n FROM transport.ride_orders"},
        ).status_code,  # fmt: skip
        "listing": 200 if "ride-orders/v1/ride-orders" in listed(portal, "bo") else 403,
    }
    if profile is not None:
        ep = profile["endpoint"].rstrip("/")
        share = next(iter(profile["_share"]))
        r = httpx.post(f"{ep}/shares/{share}/schemas/transport/tables/ride-orders/query",
                       json={}, headers={"Authorization": f"Bearer {profile['bearerToken']}"},
                       timeout=60)  # fmt: skip
        out["delta sharing"] = r.status_code
    for k, v in out.items():
        assert v in (200, 401, 403), (k, v)
    return {k: v == 200 for k, v in out.items()}


def test_buyer_reads_while_the_grant_lives_and_not_after(portal):
    from sqlalchemy import update

    from exchange.models import Grant

    # no grant yet: refused everywhere (with a signed URL made for the seller, a guessed one)
    entry = listed(portal, "sam")["ride-orders/v1/ride-orders"]
    guessed = entry["parquet"][0].replace("u=sam", "u=bo")
    assert not any(paths(portal, guessed, None).values())
    order = buy(portal, "ride-orders")
    events = len(delivery_events())
    mine = listed(portal, "bo")["ride-orders/v1/ride-orders"]
    signed = mine["parquet"][0]
    assert "u=bo" in signed
    ev = delivery_events()
    assert len(ev) == events + 1  # issuing the signed URL is the delivery ...
    assert ev[-1]["channel"] == "signed-url" and ev[-1]["actor"] == "bo"
    assert ev[-1]["dataset"] == "ride-orders" and ev[-1]["version"] == 1
    assert ev[-1]["files"][0]["sha256"] and ev[-1]["order"] == order
    r = httpx.post(f"{portal.url}/api/exchange/orders/{order}/sharing-profile", json={},
                   headers=portal.h("bo"), timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    profile = {**r.json()["profile"], "_share": {f"order-{order}": 1}}
    assert all(paths(portal, signed, profile).values())
    # ... and reading again through any channel adds no event for the same files
    assert len([e for e in delivery_events() if e.get("channel") != "delta-sharing"]) == len(
        [e for e in ev if e.get("channel") != "delta-sharing"]
    )
    # the grant expires: every path closes at once, the signed URL included
    _, ex = exchange_of()
    with ex.catalogue.Session.begin() as s:
        (g,) = s.query(Grant).filter(Grant.order_id == order).all()
        real_starts, real_expires = g.starts, g.expires
        past = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=400)
        s.execute(
            update(Grant)
            .where(Grant.id == g.id)
            .values(starts=past, expires=past + timedelta(days=1))
        )
    assert not any(paths(portal, signed, profile).values())
    with ex.catalogue.Session.begin() as s:
        s.execute(
            update(Grant)
            .where(Grant.order_id == order)
            .values(starts=real_starts, expires=real_expires)
        )
    assert all(paths(portal, signed, profile).values())
    # a refund revokes the grant: every path closes again
    r = httpx.post(f"{portal.url}/api/exchange/orders/{order}/refund", json={"reason": "test"},
                   headers=portal.h("sam"), timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    assert not any(paths(portal, signed, profile).values())
    r = portal.get(signed)
    assert r.status_code == 403 and "bo" in r.json()["error"]["message"]


# -- the Python API and the shell -----------------------------------------------------------


def test_connect_local_and_remote(portal):
    import duckdb

    import nsdx
    from nsdx.remote import RemoteError

    local = nsdx.connect()
    counts = "SELECT (SELECT count(*) FROM transport.bus_gps), (SELECT count(*) FROM transport.bus_gps__v1), (SELECT count(*) FROM transport.bus_gps__v2), (SELECT count(*) FROM transport.bus_gtfs__stops), (SELECT count(*) FROM transport.bus_gtfs__stops__v1)"  # noqa: E501
    assert local.execute(counts).fetchone() == (25_000, 20_000, 25_000, 3, 3)
    before = len(portal.recorder.seen)
    remote = nsdx.connect(portal.url)  # anonymous: open data only
    assert remote.execute(counts).fetchone() == (25_000, 20_000, 25_000, 3, 3)
    agg = "SELECT route_id, count(*), round(avg(speed_kmh), 3) FROM transport.bus_gps GROUP BY 1 ORDER BY 1"
    assert remote.execute(agg).fetchall() == local.execute(agg).fetchall()
    got = [r for r in portal.recorder.seen[before:] if r["path"].startswith("/dataset/bus-gps/")]
    assert any(r["range"] for r in got), got  # DuckDB read by ranges, through the portal
    with pytest.raises(duckdb.CatalogException):
        remote.execute("SELECT * FROM transport.ride_orders")
    # the seller's member reads its own restricted data, without its token in the views
    own = nsdx.connect(portal.url, token=portal.tokens["sam"])
    assert own.execute("SELECT sum(fare_cny) FROM transport.ride_orders").fetchone()[0] > 90
    view_sql = own.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'ride_orders'"
    ).fetchone()[0]
    assert portal.tokens["sam"] not in view_sql and "u=sam" in view_sql
    eve = nsdx.connect(portal.url, token=portal.tokens["eve"])
    with pytest.raises(duckdb.CatalogException):
        eve.execute("SELECT * FROM transport.ride_orders")
    with pytest.raises(RemoteError, match="not valid") as e:
        nsdx.connect(portal.url, token="nsdx_wrong")
    assert e.value.hint
    with pytest.raises(RemoteError, match="cannot reach"):
        nsdx.connect(f"http://127.0.0.1:{free_port()}")


def test_query_remote_from_the_shell(portal):
    from tests.conftest import run_cli

    out = run_cli("query", "--remote", portal.url, "--token", portal.tokens["sam"],
                  "SELECT count(*) AS n FROM transport.ride_orders", "--format", "json",
                  env=portal.env)  # fmt: skip
    assert json.loads(out.stdout) == [{"n": 3}]
    out = run_cli("query", "--remote", portal.url, "SELECT count(*) AS n FROM transport.bus_gps__v1",
                  "--format", "csv", env=portal.env)  # fmt: skip
    assert out.stdout.split() == ['"n"', "20000"]
    bad = run_cli("query", "--remote", portal.url, "--token", "nope",
                  "SELECT 1", env=portal.env, check=False)  # fmt: skip
    assert bad.returncode != 0 and "refused the listing" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_ckanapi_dump_datapackages(portal, tmp_path):
    """The real ckanapi CLI dumps every dataset as a Data Package and downloads its files
    from the resource URLs (as the sysadmin, so restricted ones too)."""
    from tests.test_ckan_client import CKANAPI

    out = tmp_path / "dump"
    p = subprocess.run(
        [CKANAPI, "dump", "datasets", "--all", f"--datapackages={out}", "-r", portal.url,
         "-a", portal.tokens["root"], "-p", "1"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{Path(CKANAPI).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    for name, rows in (("bus-gps", 25_000), ("ride-orders", None)):
        dp = json.loads((out / name / "datapackage.json").read_text())
        (res,) = dp["resources"]
        assert res["path"].startswith("data/")
        table = pq.read_table(out / name / res["path"])
        assert table.num_rows == (rows or table.num_rows) and table.num_rows > 0


# -- no storage location reaches a client ---------------------------------------------------

INTROSPECTION = [
    "SELECT * FROM duckdb_views()",
    "SELECT sql FROM duckdb_views()",
    "SELECT pg_get_viewdef('transport.bus_gps')",
    "SELECT * FROM duckdb_settings()",
    "SELECT current_setting('allowed_paths')",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM duckdb_databases()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM glob('*')",
    "EXPLAIN SELECT * FROM transport.bus_gps",
    "EXPLAIN ANALYZE SELECT count(*) FROM transport.bus_gps",
    "SELECT * FROM transport.nope",
    "SELECT * FROM transport.bus_gps LIMIT 2",
    "SELECT count(*) FROM transport.ride_orders",
    "SELECT 1/0",
]


@pytest.mark.slow
def test_no_storage_location_reaches_a_client(portal, tmp_path):
    """Crawl every API and page on a demo-like state (open, multi-table, restricted and bought
    data, two versions, a job, a Delta Sharing share) as anonymous, a buyer and a sysadmin,
    and look for the storage: file://, s3://, the bucket, the S3 endpoint, server folders."""
    import re
    from urllib.parse import urljoin, urlsplit

    from catalogue.ckan import ACTIONS

    order = buy(portal, "ride-orders")
    r = httpx.post(f"{portal.url}/api/exchange/orders/{order}/sharing-profile", json={},
                   headers=portal.h("bo"), timeout=60)  # fmt: skip
    profile = r.json()["profile"]
    up = tmp_path / "orders-v2.csv"
    up.write_text(ORDERS + "A4,9.9,珠江街\n", encoding="utf-8")
    with up.open("rb") as f:
        r = httpx.post(f"{portal.url}/api/3/action/resource_create", headers=portal.h("sam"),
                       data={"package_id": "ride-orders"}, files={"upload": f}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    job = r.json()["result"]["id"]
    for _ in range(600):
        j = portal.get(f"/api/3/action/nsdx_job_show?id={job}", "sam").json()["result"]
        if j["status"] in ("finished", "failed"):
            break
        time.sleep(0.1)
    assert j["status"] == "finished", j

    seen: list[tuple[str, httpx.Response]] = []
    presigned: list[str] = []

    def hit(method: str, url: str, user: str | None = None, **kw) -> httpx.Response:
        url = url if url.startswith("http") else portal.url + url
        r = portal.request(method, url, user, **kw)
        seen.append((f"{method} {url} as {user}", r))
        return r

    users = (None, "bo", "sam", "root")
    names = ["bus-gps", "bus-gtfs", "ride-orders", "other-secret"]
    for user in users:
        for name, spec in ACTIONS.items():
            if spec.get:
                hit("GET", f"/api/3/action/{name}", user)
        for n in names:
            for a in ("package_show", "organization_show"):
                hit("GET", f"/api/3/action/{a}?id={n}", user)
            pkg = hit("GET", f"/api/3/action/package_show?id={n}", "root").json()["result"]
            for res in pkg["resources"]:
                hit("GET", f"/api/3/action/resource_show?id={res['id']}", user)
            for org in (BUREAU, SELLER, BUYER, OTHER):
                hit("GET", f"/api/3/action/organization_show?id={org}&include_datasets=true", user)
            for path in (f"/dataset/{n}", f"/dataset/{n}.jsonld", f"/dataset/{n}.ttl",
                         f"/dataset/{n}/croissant.json", f"/dataset/{n}/datapackage.json"):  # fmt: skip
                hit("GET", path, user)
        hit("GET", "/api/3/action/package_search?q=*:*&rows=1000", user)
        hit("GET", "/api/3/action/current_package_list_with_resources?limit=1000", user)
        hit("GET", f"/api/3/action/nsdx_job_show?id={job}", user)
        hit("GET", "/catalog.jsonld", user)
        hit("GET", "/catalog.ttl", user)
        hit("GET", "/api/downloads", user)
        for i, sql in enumerate(INTROSPECTION):
            if i % 2 == 0:
                hit("POST", "/api/query", user, json={"sql": sql})
            else:
                hit("GET", "/api/query", user, params={"sql": sql, "format": "csv"})
        for path in ("/api/exchange/orders", "/api/exchange/offers", f"/api/exchange/orders/{order}",
                     "/api/audit/checkpoint", "/api/audit/entries?limit=1000"):  # fmt: skip
            hit("GET", path, user)
        # every download route, with and without ranges, and its errors
        for t in listed(portal, user).values():
            for url in t["parquet"]:
                for h in ({"Range": "bytes=0-3"}, {"Range": "bytes=999999999-"}):
                    r = hit("GET", url, user, headers=h)
                    if r.status_code == 302:
                        presigned.append(r.headers["location"])
            if t["rows"] < 1000:  # the conversions' answers (the big ones are tested above)
                hit("GET", t["csv"], user)
                hit("GET", t["jsonl"], user)
        for bad in ("/dataset/bus-gps/v7/bus-gps.parquet", "/dataset/ride-orders/v1/ride-orders.csv",
                    "/dataset/bus-gps/v1/bus-gps.parquet?u=x&e=1&s=y", "/dataset/nope/v1/x.csv"):  # fmt: skip
            hit("GET", bad, user)
    # Delta Sharing, as the buyer's profile
    ds = {"Authorization": f"Bearer {profile['bearerToken']}"}
    base = profile["endpoint"].rstrip("/")
    share = f"order-{order}"
    for path in ("/shares", f"/shares/{share}", f"/shares/{share}/schemas",
                 f"/shares/{share}/schemas/transport/tables", f"/shares/{share}/all-tables",
                 f"/shares/{share}/schemas/transport/tables/ride-orders/metadata",
                 f"/shares/{share}/schemas/transport/tables/ride-orders/version"):  # fmt: skip
        hit("GET", base + path, headers=ds)
    q = hit("POST", base + f"/shares/{share}/schemas/transport/tables/ride-orders/query",
            headers=ds, json={})  # fmt: skip
    ds_urls = [json.loads(x)["file"]["url"] for x in q.text.splitlines() if '"file"' in x]
    assert ds_urls
    # the HTML portal: every page reachable from the front page
    todo, pages = ["/"], set()
    while todo and len(pages) < 200:
        path = todo.pop()
        if path in pages:
            continue
        pages.add(path)
        r = hit("GET", path)
        if "text/html" in r.headers.get("content-type", ""):
            for href in re.findall(r'href="([^"#]+)"', r.text):
                u = urlsplit(urljoin(portal.url + path, href.replace("&amp;", "&")))
                if f"{u.scheme}://{u.netloc}" == portal.url and not u.path.endswith(
                    (".parquet", ".csv", ".jsonl")
                ):
                    todo.append(u.path + (f"?{u.query}" if u.query else ""))
    hit("GET", "/openapi.json")
    hit("GET", "/docs")
    assert len(seen) > 400 and len(pages) > 5
    # the markers are real: the operator's own CLI shows where the files are
    from tests.conftest import run_cli

    shown = run_cli("datasets", "show", "bus-gps", env=portal.env).stdout
    assert any(s in shown for s in portal.secrets[1:] if s != "s3://"), shown

    # presigned S3 URLs are the one designed exception: the redirect of a download and
    # the file URLs of a Delta Sharing answer, short-lived and signed
    exempt = set(presigned)
    if portal.backend == "s3":
        assert presigned and all("X-Amz-Signature=" in u for u in presigned)
        assert all("X-Amz-Signature=" in u for u in ds_urls)
        exempt |= set(ds_urls)
    else:
        assert not presigned
    for what, r in seen:
        text = r.text
        for u in exempt:
            text = text.replace(u, "").replace(json.dumps(u)[1:-1], "")
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items() if k != "location")
        for secret in portal.secrets:
            assert secret not in text, (what, secret, text[max(0, text.find(secret) - 300) :][:600])
            assert secret not in headers, (what, secret, headers)
        assert r.status_code < 500, (what, r.status_code, text[:500])


def test_conversions_are_bounded_and_give_their_slot_back(portal, monkeypatch):
    """CSV/JSON Lines conversions hold a DuckDB reader while the client reads: only
    NSDX_DOWNLOAD_CONVERSIONS run at once; one more is a 503 with Retry-After and a hint, and
    every way a response ends (finished, or the client gone mid-way) gives its slot back."""
    import asyncio
    import threading

    from nsdx.web import download

    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(download, "_SLOTS", slots)
    assert slots.acquire(blocking=False)  # a slow client holds the only slot
    r = portal.get("/dataset/bus-gps/v2/bus-gps.csv")
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == download.RETRY_AFTER
    body = r.json()["error"]
    assert body["transient"] is True and ".parquet" in body["hint"]
    # files are never refused for load (S3: the redirect to a presigned URL)
    assert portal.get("/dataset/bus-gps/v2/bus-gps.parquet").status_code in (200, 302)
    slots.release()
    r = portal.get("/dataset/bus-gps/v2/bus-gps.csv")
    assert r.status_code == 200 and r.text.count("\n") == 25_001
    assert slots.acquire(blocking=False), "a finished conversion keeps its slot"
    slots.release()

    closed = []

    def chunks():
        try:
            yield from (b"a\n", b"b\n", b"c\n")
        finally:
            closed.append(True)

    async def client_leaves_after_one_chunk():
        assert slots.acquire(blocking=False)
        gen = chunks()
        first = next(gen)
        stream = download._chain(first, gen)
        assert await stream.__anext__() == b"a\n"
        await stream.aclose()  # what Starlette does when the client disconnects

    asyncio.run(client_leaves_after_one_chunk())
    assert closed == [True], "the converter (and its DuckDB connection) is closed"
    assert slots.acquire(blocking=False), "a conversion whose client left keeps its slot"
    slots.release()


def test_conversion_slots_setting_is_checked(monkeypatch):
    from nsdx.web import download

    monkeypatch.setenv("NSDX_DOWNLOAD_CONVERSIONS", "2")
    assert download._conversion_slots() == 2
    for bad in ("0", "x", "-1", "²"):
        monkeypatch.setenv("NSDX_DOWNLOAD_CONVERSIONS", bad)
        with pytest.raises(ValueError, match="NSDX_DOWNLOAD_CONVERSIONS"):
            download._conversion_slots()
