"""Delta Sharing for bought data, with the official `delta-sharing` client against a real
`nsdx serve` (uvicorn on a free port) on both storage backends: the local folder (files
served by nsdx with signed URLs) and real SeaweedFS (presigned S3 URLs)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from exchange import sharing
from tests.conftest import NSDX, run_cli
from tests.fixtures.procs import stop_process
from tests.test_ckan_client import free_port

SELLER, BUYER, OTHER = "nansha-taxi-co", "pearl-ai", "gz-urban-bureau"

CSV = """trip_id,started,day,district,km,fare,shared
T001,2026-03-02 08:00:00,2026-03-02,南沙街,3.5,12.50,true
T002,2026-03-02 08:10:30,2026-03-02,黄阁镇,12.25,38.00,false
T003,2026-03-02 09:45:00,2026-03-02,横沥镇,7.0,21.75,true
T004,2026-03-03 17:20:00,2026-03-03,珠江街,1.2,10.00,false
T005,2026-03-03 18:05:10,2026-03-03,南沙街,25.8,76.40,
"""


def _gtfs(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("agency.txt", "agency_id,agency_name,agency_url,agency_timezone\n"
                   "NS,南沙公交,https://example.cn,Asia/Shanghai\n")  # fmt: skip
        z.writestr("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\n"
                   "S1,蕉门,22.79,113.53\nS2,金洲,22.77,113.55\nS3,南沙客运港,22.70,113.64\n")  # fmt: skip


DATASETS = """datasets:
  - id: nansha-taxi-trips
    title: 南沙出租车行程
    title_en: Nansha taxi trips
    domain: transport
    organization: {seller}
    access: restricted
    source: {{path: {csv}, format: csv}}
    schema:
      - {{name: trip_id, type: string}}
      - {{name: started, type: timestamp}}
      - {{name: day, type: date}}
      - {{name: district, type: string}}
      - {{name: km, type: float}}
      - {{name: fare, type: "decimal(8,2)"}}
      - {{name: shared, type: boolean}}
  - id: nansha-bus-gtfs
    title: 南沙公交GTFS
    domain: transport
    organization: {seller}
    access: restricted
    source: {{path: {gtfs}, format: gtfs}}
  - id: gz-hotline
    title: 12345热线
    domain: urban-management
    organization: {other}
    access: restricted
    source: {{path: {csv}, format: csv}}
"""


# -- the core, without a server ------------------------------------------------------------


def test_spark_schema_from_arrow_types():
    schema = pa.schema(
        [
            ("a", pa.int64()),
            ("b", pa.string()),
            ("c", pa.timestamp("us")),
            ("d", pa.timestamp("ms", tz="Asia/Shanghai")),
            ("e", pa.uint32()),
            ("f", pa.uint64()),
            ("g", pa.decimal128(8, 2)),
            ("h", pa.large_string()),
            ("i", pa.list_(pa.int32())),
            ("j", pa.struct([("x", pa.float32()), ("y", pa.date32())])),
            ("k", pa.map_(pa.string(), pa.int16())),
            ("l", pa.dictionary(pa.int32(), pa.string())),
            ("m", pa.uint8()),
        ]
    )
    got = json.loads(sharing.schema_string(schema))
    types = {f["name"]: f["type"] for f in got["fields"]}
    assert types["a"] == "long" and types["b"] == "string" and types["h"] == "string"
    assert types["c"] == types["d"] == "timestamp"
    assert types["e"] == "long" and types["f"] == "decimal(20,0)" and types["m"] == "short"
    assert types["g"] == "decimal(8,2)" and types["l"] == "string"
    assert types["i"] == {"type": "array", "elementType": "integer", "containsNull": True}
    assert types["j"]["fields"][1]["type"] == "date"
    assert types["k"] == {"type": "map", "keyType": "string", "valueType": "short",
                          "valueContainsNull": True}  # fmt: skip
    text = sharing.schema_string(schema)
    for bad in ("bigint", "varchar", "timestamp_ntz", "int64", "uint"):
        assert f'"{bad}' not in text
    # the manifests record str(arrow type); it parses back to the same type
    for f in schema:
        if not pa.types.is_dictionary(f.type):
            assert sharing.arrow_type(str(f.type)) == f.type
    with pytest.raises(ValueError):
        sharing.arrow_type("list<item: int64")


def test_capabilities_and_download_signatures(tmp_path):
    with pytest.raises(sharing.BadRequest, match="parquet response format only"):
        sharing.check_response_format("responseformat=delta;readerfeatures=deletionvectors")
    sharing.check_response_format("responseformat=delta,parquet;readerfeatures=x")
    sharing.check_response_format(None)

    class Ex:
        pii_key = b"k"

    q = sharing.sign_download(Ex, "a/b.parquet", int(time.time()) + 60)
    e, s = (p.split("=", 1)[1] for p in q.split("&"))
    sharing.verify_download(Ex, "a/b.parquet", e, s)
    with pytest.raises(sharing.Forbidden, match="signature"):
        sharing.verify_download(Ex, "a/c.parquet", e, s)  # another file
    with pytest.raises(sharing.Forbidden, match="signature"):
        sharing.verify_download(Ex, "a/b.parquet", str(int(e) + 3600), s)  # a longer life
    old = sharing.sign_download(Ex, "a/b.parquet", int(time.time()) - 1)
    e, s = (p.split("=", 1)[1] for p in old.split("&"))
    with pytest.raises(sharing.Forbidden, match="expired"):
        sharing.verify_download(Ex, "a/b.parquet", e, s)
    tok = sharing.make_token(Ex, "g1", datetime(2099, 1, 1))
    assert sharing.parse_token(Ex, tok).grant_id == "g1"
    for bad in (tok[:-2] + "xx", tok.replace(".g1.", ".g2."), "nsdx_abc", ""):
        with pytest.raises(sharing.Unauthenticated):
            sharing.parse_token(Ex, bad)
    with pytest.raises(sharing.Unauthenticated, match="expired"):
        sharing.parse_token(Ex, sharing.make_token(Ex, "g1", datetime(2020, 1, 1)))


# -- a real deployment and a real server -----------------------------------------------------


@dataclass
class Deployment:
    url: str
    env: dict[str, str]
    home: Path
    tokens: dict[str, str]
    proc: subprocess.Popen
    log: Path
    backend: str = "local"

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def stop(self) -> None:
        stop_process(self.proc)


def _exchange():
    from nsdx.core import Nsdx

    nx = Nsdx()
    return nx, nx.exchange


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def deployment(request, tmp_path, monkeypatch):
    dep = _deploy(request, tmp_path, monkeypatch, request.param)
    yield dep
    dep.stop()


@pytest.fixture
def local_deployment(request, tmp_path, monkeypatch):
    dep = _deploy(request, tmp_path, monkeypatch, "local")
    yield dep
    dep.stop()


def _deploy(request, tmp_path, monkeypatch, backend: str) -> Deployment:
    """Publish the datasets, register the enterprises and users, start `nsdx serve`."""
    from catalogue.auth import Accounts
    from exchange import credit_code, trade
    from exchange.actors import Actor

    home = tmp_path / "home"
    csv, gtfs = tmp_path / "trips.csv", tmp_path / "bus.zip"
    csv.write_text(CSV, encoding="utf-8")
    _gtfs(gtfs)
    ds_yaml = tmp_path / "datasets.yaml"
    ds_yaml.write_text(DATASETS.format(seller=SELLER, other=OTHER, csv=csv, gtfs=gtfs), "utf-8")
    env = {
        "NSDX_HOME": str(home),
        "NSDX_DATASETS": str(ds_yaml),
        "NSDX_PII_KEY": "test-pii-key",
        "NSDX_SERVE_WORKER": "0",
    }
    for k in ("NSDX_DATABASE_URL", "NSDX_STORAGE_URL", "NSDX_S3_PUBLIC_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    if backend == "s3":
        sw = request.getfixturevalue("seaweedfs")
        if sw.proc is None or sw.proc.poll() is not None:
            sw.start()
        env.update(sw.env(sw.bucket(), "nsdx"))
        env["NSDX_STAGING_DIR"] = str(tmp_path / "staging")
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    nx, ex = _exchange()
    results = nx.ingest(all_=True)
    assert all(r.version == 1 for r in results), results
    for i, org in enumerate((SELLER, BUYER, OTHER)):
        if org == BUYER:
            with nx.catalogue.Session.begin() as s:
                nx.catalogue.ensure_organization(s, BUYER)
        trade.register_enterprise(
            ex, Actor.for_org(org), org, credit_code_=credit_code.make("440115", f"MA5{i}TKT1"),
            legal_name=org, in_nansha=True,
        )  # fmt: skip
    from tests.registered import register

    for name in ("nansha-taxi-trips", "nansha-bus-gtfs"):
        register(ex, name)  # no registration, no trade
    acc = Accounts(nx.catalogue)
    tokens = {}
    for user, org, role in (("sam", SELLER, "editor"), ("bo", BUYER, "member"),
                            ("eve", OTHER, "admin")):  # fmt: skip
        acc.create_user(user)
        acc.add_member(org, user, role)
        tokens[user], _ = acc.create_token(user)

    port = free_port()
    log = tmp_path / f"server-{port}.log"
    proc = subprocess.Popen(
        [NSDX, "serve", "--port", str(port), "--log-level", "warning", "--no-worker"],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    dep = Deployment(url, env, home, tokens, proc, log, backend)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nsdx serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/3/action/status_show", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            dep.stop()
            raise RuntimeError("nsdx serve did not answer within 30 s")
        time.sleep(0.1)
    return dep


def _buy(dep: Deployment, dataset: str) -> str:
    """offer -> order -> payment -> grant, through the exchange HTTP API; the order id."""
    c = httpx.Client(base_url=dep.url, timeout=30)
    r = c.post("/api/exchange/offers", json={"dataset": dataset, "price_cny": "88000",
               "delivery_mode": "delta-sharing"}, headers=dep.h("sam"))  # fmt: skip
    assert r.status_code == 201, r.text
    r = c.post("/api/exchange/orders", json={"offer": r.json()["id"], "buyer": BUYER},
               headers=dep.h("bo"))  # fmt: skip
    assert r.status_code == 201, r.text
    order = r.json()["id"]
    assert c.post(f"/api/exchange/orders/{order}/payment", json={"reference": "BOC-1"},
                  headers=dep.h("sam")).status_code == 200  # fmt: skip
    r = c.post(f"/api/exchange/orders/{order}/grant", json={"days": 30}, headers=dep.h("sam"))
    assert r.status_code == 200, r.text
    return order


def _published(table: str):
    """The rows nsdx itself serves for a view (its own DuckDB over the store)."""
    from nsdx.core import Nsdx

    return Nsdx().query(f"SELECT * FROM {table}").to_pandas()


def _same_rows(got, want, key: str) -> None:
    import pandas as pd

    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        g, w = got[col], want[col]
        if pd.api.types.is_datetime64_any_dtype(w):
            g, w = pd.to_datetime(g).dt.tz_localize(None), w.dt.tz_localize(None)
        assert g.astype(str).tolist() == w.astype(str).tolist(), col


def _delivery_events(ex) -> list[dict]:
    return [e for e in ex.ledger.events(ex.ledger.head_size()) if e["type"] == "delivery.made"]


def test_bought_data_through_the_official_client(deployment, tmp_path):
    import delta_sharing
    import duckdb
    from requests.exceptions import HTTPError

    from ingest.storage.duckdb_s3 import load_httpfs

    dep = deployment
    order = _buy(dep, "nansha-taxi-trips")
    share = f"order-{order}"
    profile = tmp_path / "buyer.share"
    if dep.backend == "local":  # the CLI, acting as the buyer's user
        out = run_cli("exchange", "profile", order, "--endpoint", f"{dep.url}/delta-sharing/",
                      "--out", str(profile), "--user", "bo", env=dep.env)  # fmt: skip
        assert f"{share}.transport.nansha-taxi-trips" in out.stdout
        assert oct(profile.stat().st_mode & 0o777) == "0o600"
    else:  # the HTTP API
        r = httpx.post(f"{dep.url}/api/exchange/orders/{order}/sharing-profile", json={},
                       headers=dep.h("bo"), timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["receipt"]["entry"]["channel"] == "delta-sharing"
        profile.write_text(json.dumps(r.json()["profile"]))
        # the seller cannot take the buyer's profile
        r = httpx.post(f"{dep.url}/api/exchange/orders/{order}/sharing-profile", json={},
                       headers=dep.h("sam"), timeout=30)  # fmt: skip
        assert r.status_code == 403
    prof = json.loads(profile.read_text())
    assert prof["shareCredentialsVersion"] == 1 and prof["endpoint"].endswith("/delta-sharing/")

    client = delta_sharing.SharingClient(str(profile))
    tables = client.list_all_tables()
    assert [(t.share, t.schema, t.name) for t in tables] == [
        (share, "transport", "nansha-taxi-trips")
    ]
    assert [s.name for s in client.list_shares()] == [share]
    url = f"{profile}#{share}.transport.nansha-taxi-trips"
    df = delta_sharing.load_as_pandas(url)
    _same_rows(df, _published("transport.nansha_taxi_trips"), "trip_id")
    assert len(df) == 5 and df["district"].tolist().count("南沙街") == 2
    assert len(delta_sharing.load_as_pandas(url, limit=2)) == 2
    assert delta_sharing.get_table_version(url) == 1
    meta = delta_sharing.get_table_metadata(url)
    fields = {f["name"]: f["type"] for f in json.loads(meta.schema_string)["fields"]}
    assert fields == {"trip_id": "string", "started": "timestamp", "day": "date",
                      "district": "string", "km": "double", "fare": "decimal(8,2)",
                      "shared": "boolean"}  # fmt: skip
    # the DuckDB spelling of the table name works too
    assert len(delta_sharing.load_as_pandas(f"{profile}#{share}.transport.nansha_taxi_trips")) == 5

    # the raw protocol: headers, NDJSON lines, presigned URLs; DuckDB reads the same URLs
    tok = {"Authorization": f"Bearer {prof['bearerToken']}"}
    base = f"{dep.url}/delta-sharing/shares/{share}/schemas/transport/tables/nansha-taxi-trips"
    r = httpx.post(f"{base}/query", json={}, headers=tok, timeout=30)
    assert r.status_code == 200 and r.headers["delta-table-version"] == "1"
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[0] == {"protocol": {"minReaderVersion": 1}}
    assert lines[1]["metaData"]["format"]["provider"] == "parquet"
    files = [x["file"] for x in lines[2:]]
    assert files and all(json.loads(f["stats"])["numRecords"] > 0 for f in files)
    assert all(f["expirationTimestamp"] > time.time() * 1000 for f in files)
    if dep.backend == "s3":
        assert all("X-Amz-Signature=" in f["url"] for f in files)
    else:
        assert all(f["url"].startswith(f"{dep.url}/delta-sharing/files/") for f in files)
    again = [json.loads(x)["file"] for x in
             httpx.post(f"{base}/query", headers=tok, timeout=30).text.splitlines()[2:]]  # fmt: skip
    assert [f["id"] for f in again] == [f["id"] for f in files]  # stable ids
    for suffix in ("metadata", "version"):
        assert httpx.get(f"{base}/{suffix}", headers=tok).headers["delta-table-version"] == "1"
    con = duckdb.connect()
    load_httpfs(con)
    urls = ", ".join(f"'{f['url']}'" for f in files)
    n, km = con.execute(f"SELECT count(*), sum(km) FROM read_parquet([{urls}])").fetchone()
    assert n == 5 and abs(km - 49.75) < 1e-6
    # a tampered download URL is refused (local store: nsdx signs its own URLs)
    bad = files[0]["url"].replace("s=", "s=x") if dep.backend == "local" else files[0]["url"][:-4]
    assert httpx.get(bad, timeout=10).status_code == 403

    # the ledger: one event for the profile, one for the first delivery of the table's
    # files; repeated queries add nothing
    _, ex = _exchange()
    ds_events = [e for e in _delivery_events(ex) if e.get("channel") == "delta-sharing"]
    assert [e["what"] for e in ds_events] == ["profile", "query"]
    assert ds_events[1]["keys"] and ds_events[1]["version"] == 1

    # a wrong token: 401 at once, no retry storm
    bad_profile = tmp_path / "bad.share"
    bad_profile.write_text(json.dumps({**prof, "bearerToken": prof["bearerToken"][:-3] + "abc"}))
    t0 = time.monotonic()
    with pytest.raises(HTTPError) as e:
        delta_sharing.load_as_pandas(f"{bad_profile}#{share}.transport.nansha-taxi-trips")
    assert e.value.response.status_code == 401 and time.monotonic() - t0 < 60
    r = httpx.get(f"{dep.url}/delta-sharing/shares", timeout=10)
    assert r.status_code == 401 and r.json()["errorCode"] == "UNAUTHENTICATED"
    r = httpx.get(f"{dep.url}/delta-sharing/shares", headers=dep.h("bo"), timeout=10)
    assert r.status_code == 401  # an API token is not a sharing profile

    # tables not granted: another seller's dataset, another share, the seller's other dataset
    for other in (f"{share}.urban-management.gz-hotline", "order-x.transport.nansha-taxi-trips",
                  f"{share}.transport.nansha-bus-gtfs__stops"):  # fmt: skip
        t0 = time.monotonic()
        with pytest.raises(HTTPError) as e:
            delta_sharing.load_as_pandas(f"{profile}#{other}")
        assert e.value.response.status_code == 404 and time.monotonic() - t0 < 60
    r = httpx.post(f"{base}/query", json={"version": 7}, headers=tok)
    assert r.status_code == 400 and "version 1" in r.json()["message"]

    # the delta response format is refused with a 400 that says why (documented)
    t0 = time.monotonic()
    with pytest.raises(HTTPError) as e:
        delta_sharing.load_as_pandas(url, use_delta_format=True)
    assert e.value.response.status_code == 400 and time.monotonic() - t0 < 60
    assert "parquet response format only" in e.value.response.json()["message"]

    # an expired grant is refused without the client's ~100 s retry loop (< 60 s is generous
    # on a loaded machine; an answer normally takes milliseconds); the check is live (restoring it restores access)
    from sqlalchemy import update

    from exchange.models import Grant

    with ex.catalogue.Session.begin() as s:
        g = s.get(Grant, ds_events[0]["grant"])
        real, real_starts = g.expires, g.starts
        past = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
        s.execute(
            update(Grant)
            .where(Grant.id == g.id)
            .values(starts=past - timedelta(days=1), expires=past)
        )
    t0 = time.monotonic()
    with pytest.raises(HTTPError) as e:
        delta_sharing.load_as_pandas(url)
    assert e.value.response.status_code == 403 and time.monotonic() - t0 < 60
    assert "expired" in httpx.get(f"{base}/version", headers=tok).json()["message"]
    with ex.catalogue.Session.begin() as s:
        s.execute(
            update(Grant)
            .where(Grant.id == ds_events[0]["grant"])
            .values(starts=real_starts, expires=real)
        )
    assert len(delta_sharing.load_as_pandas(url)) == 5

    # a refund revokes the grant, and with it the profile
    r = httpx.post(f"{dep.url}/api/exchange/orders/{order}/refund", json={"reason": "test"},
                   headers=dep.h("sam"), timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    with pytest.raises(HTTPError) as e:
        client.list_all_tables()
    assert e.value.response.status_code == 403
    r = httpx.post(f"{base}/query", json={}, headers=tok)
    assert r.status_code == 403 and "refunded" in r.json()["message"]


def test_multi_table_dataset(local_deployment, tmp_path):
    """A GTFS feed: one table per member, named <dataset>__<table> (naming does not depend
    on the backend; both backends are covered above)."""
    import delta_sharing

    dep = local_deployment
    order = _buy(dep, "nansha-bus-gtfs")
    r = httpx.post(f"{dep.url}/api/exchange/orders/{order}/sharing-profile",
                   json={"days": 1}, headers=dep.h("bo"), timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    profile = tmp_path / "gtfs.share"
    profile.write_text(json.dumps(r.json()["profile"]))
    share = f"order-{order}"
    names = sorted(t.name for t in delta_sharing.SharingClient(str(profile)).list_all_tables())
    assert names == ["nansha-bus-gtfs__agency", "nansha-bus-gtfs__stops"]
    stops = delta_sharing.load_as_pandas(f"{profile}#{share}.transport.nansha-bus-gtfs__stops")
    _same_rows(stops, _published("transport.nansha_bus_gtfs__stops"), "stop_id")
    assert sorted(stops["stop_name"]) == ["南沙客运港", "蕉门", "金洲"]
    page = httpx.get(f"{dep.url}/delta-sharing/shares/{share}/all-tables",
                     params={"maxResults": 1}, timeout=10,
                     headers={"Authorization": f"Bearer {r.json()['profile']['bearerToken']}"})  # fmt: skip
    assert len(page.json()["items"]) == 1 and page.json()["nextPageToken"]
