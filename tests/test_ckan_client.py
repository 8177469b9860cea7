"""Interop with the real CKAN client: ckanapi's RemoteCKAN and the `ckanapi` CLI against
`nsdx serve` running under uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from catalogue.auth import Accounts
from catalogue.registry import Catalogue
from catalogue.search import drop_indexes
from tests.conftest import NSDX, create_pg_database, drop_pg_database, pg_url, run_cli
from tests.fixtures.procs import stop_process

CKANAPI = str(Path(sys.executable).parent / "ckanapi")
pytestmark = pytest.mark.xdist_group("ckan_server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    token: str
    database_url: str
    proc: subprocess.Popen

    def stop(self) -> None:
        stop_process(self.proc)


def start_server(home: Path, database_url: str, *, org: bool = True, worker: bool = True) -> Server:
    """`nsdx serve` on a free port with a sysadmin token; stopped through its handle."""
    acc = Accounts(Catalogue(database_url))
    acc.create_user("admin", sysadmin=True)
    token, _ = acc.create_token("admin")
    if org:
        acc.create_org("bureau", title="南沙区交通运输局")
    port = free_port()
    env = {
        **os.environ,
        "NSDX_HOME": str(home),
        "NSDX_DATABASE_URL": database_url,
        "NSDX_PII_KEY": "test-pii-key",
        "NSDX_DATASETS": str(home / "datasets.yaml"),
    }
    env.pop("NSDX_STORAGE_URL", None)
    log = open(home.parent / f"server-{port}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [NSDX, "serve", "--port", str(port), "--log-level", "warning"]
        + ([] if worker else ["--no-worker"]),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a loaded machine starts slowly
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nsdx serve exited {proc.returncode}: see {log.name}")
        try:
            if httpx.get(f"{url}/api/3/action/status_show", timeout=1).status_code == 200:
                return Server(url, token, database_url, proc)
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("nsdx serve did not answer within 120 s")


@pytest.fixture
def server(tmp_path, database_url):
    srv = start_server(tmp_path / "home", database_url)
    yield srv
    srv.stop()
    drop_indexes()


@pytest.fixture
def second_server(tmp_path, database_url):
    """Another deployment on the same kind of database (its own database)."""
    if database_url.startswith("postgresql"):
        name = create_pg_database()
        url = pg_url(name)
    else:
        name, url = None, f"sqlite:///{tmp_path / 'second.db'}"
    (tmp_path / "home2").mkdir()
    srv = start_server(tmp_path / "home2", url, org=False)  # organisations come with the load
    yield srv
    srv.stop()
    if name:
        from catalogue.db import dispose_all

        dispose_all()
        drop_pg_database(name)


def ckanapi_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    # ckanapi starts its worker processes as `ckanapi` from PATH
    env = {**os.environ, "PATH": f"{Path(CKANAPI).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run([CKANAPI, *args], capture_output=True, text=True, timeout=120, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"ckanapi {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


DATASETS = [
    {
        "name": "nansha-bus-gps",
        "title": "南沙公交车辆GPS轨迹",
        "owner_org": "bureau",
        "tags": [{"name": "公交"}, {"name": "gps"}],
        "extras": [{"key": "domain", "value": "transport"},
                   {"key": "title_en", "value": "Nansha bus GPS positions"}],
        "resources": [{"name": "sample", "url": "https://example.org/bus.csv", "format": "CSV",
                       "description": "一天的样本"}],
    },
    {
        "name": "guangzhou-metro-ridership",
        "title": "广州地铁南沙段客流",
        "notes": "Metro ridership, line 4",
        "owner_org": "bureau",
        "license_id": "ODbL-1.0",
        "tags": [{"name": "地铁"}],
        "extras": [{"key": "domain", "value": "transport"}, {"key": "price_cny", "value": "99.5"},
                   {"key": "access", "value": "restricted"}],
    },
]  # fmt: skip


def test_remoteckan(server):
    from ckanapi import NotAuthorized, NotFound, RemoteCKAN, SearchQueryError, ValidationError

    ua = "nsdx-tests/1.0"
    with RemoteCKAN(server.url, apikey=server.token, user_agent=ua) as ckan:
        assert ckan.action.status_show()["ckan_version"].startswith("2.")
        for d in DATASETS:
            ckan.action.package_create(**d)
        pkg = ckan.action.package_show(id="nansha-bus-gps")
        assert pkg["title"] == "南沙公交车辆GPS轨迹"
        r = ckan.action.package_search(q="公交", **{"facet.field": '["tags"]'})
        assert [p["name"] for p in r["results"]] == ["nansha-bus-gps"]
        assert r["search_facets"]["tags"]["items"][0]["count"] == 1
        assert ckan.action.package_search(q="地铁")["count"] == 1
        assert ckan.action.package_search(fq="price_cny:[50 TO 100]")["count"] == 1
        res = ckan.action.resource_patch(id=pkg["resources"][0]["id"], name="renamed")
        assert res["name"] == "renamed"
        with pytest.raises(NotFound):
            ckan.action.package_show(id="missing")
        with pytest.raises(ValidationError) as e:
            ckan.action.package_create(name="nansha-bus-gps", owner_org="bureau")
        assert e.value.error_dict["name"] == ["That URL is already in use."]
        with pytest.raises(SearchQueryError):
            ckan.action.package_search(q="tags:(unclosed")
    with RemoteCKAN(server.url, user_agent=ua) as anon:
        with pytest.raises(NotAuthorized):
            anon.action.package_create(name="x", owner_org="bureau")
        assert anon.action.package_list() == ["guangzhou-metro-ridership", "nansha-bus-gps"]
    with RemoteCKAN(server.url, user_agent=ua, get_only=True) as get:
        assert get.action.package_show(id="guangzhou-metro-ridership")["license_id"] == "ODbL-1.0"


def test_ckanapi_cli_action_search_dump_load_round_trip(server, second_server, tmp_path):
    for d in DATASETS:
        ckanapi_cli("action", "package_create", "-r", server.url, "-a", server.token,
                    "-I", input_file(tmp_path, d))  # fmt: skip
    shown = json.loads(
        ckanapi_cli("action", "package_show", "id=nansha-bus-gps", "-r", server.url).stdout
    )
    assert shown["organization"]["title"] == "南沙区交通运输局"
    found = ckanapi_cli("search", "datasets", "q=地铁", "-r", server.url).stdout.splitlines()
    assert [json.loads(x)["name"] for x in found] == ["guangzhou-metro-ridership"]
    dump1 = tmp_path / "dump1.jsonl"
    ckanapi_cli("dump", "datasets", "--all", "-O", str(dump1), "-r", server.url, "-p", "1")
    ckanapi_cli("load", "datasets", "-I", str(dump1), "-r", second_server.url,
                "-a", second_server.token, "-p", "1")  # fmt: skip
    dump2 = tmp_path / "dump2.jsonl"
    ckanapi_cli("dump", "datasets", "--all", "-O", str(dump2), "-r", second_server.url, "-p", "1")
    one = sorted((json.loads(x) for x in dump1.read_text().splitlines() if x), key=_name)
    two = sorted((json.loads(x) for x in dump2.read_text().splitlines() if x), key=_name)
    assert len(one) == 2
    assert one == two  # identical, ids and timestamps included
    # loading again updates in place (package_update), still identical
    ckanapi_cli("load", "datasets", "-I", str(dump1), "-r", second_server.url,
                "-a", second_server.token, "-p", "1")  # fmt: skip
    again = json.loads(
        ckanapi_cli("action", "package_show", "id=nansha-bus-gps", "-r", second_server.url).stdout
    )
    assert {k: v for k, v in again.items() if k != "metadata_modified"} == {
        k: v for k, v in one[1].items() if k != "metadata_modified"
    }


def input_file(tmp_path: Path, d: dict) -> str:
    p = tmp_path / f"{d['name']}.json"
    p.write_text(json.dumps(d, ensure_ascii=False), encoding="utf-8")
    return str(p)


def _name(d: dict) -> str:
    return d["name"]


BUS_CSV = (
    "ts,route_id,speed_kmh\n2024-03-01 08:00:00,N4,31.5\n2024-03-01 08:00:30,N4,28.0\n"
    "2024-03-01 08:01:00,N8,40.25\n"
)


def wait_job(ckan, job: dict, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while job["status"] not in ("finished", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = ckan.action.nsdx_job_show(id=job["id"])
    return job


def test_upload_runs_the_ingest_pipeline_as_a_background_job(server, tmp_path):
    """resource_create with a multipart upload publishes the file as the dataset's next
    version through publish_dataset (the function behind `nsdx ingest`)."""
    from ckanapi import RemoteCKAN

    src = tmp_path / "bus.csv"
    src.write_text(BUS_CSV, encoding="utf-8")
    with RemoteCKAN(server.url, apikey=server.token, user_agent="nsdx-tests/1.0") as ckan:
        ckan.action.package_create(name="bus-upload", title="南沙公交上传", owner_org="bureau",
                                   extras=[{"key": "domain", "value": "transport"}])  # fmt: skip
        with src.open("rb") as f:
            pending = ckan.action.resource_create(package_id="bus-upload", upload=f, format="CSV")
        assert pending["state"] == "pending" and pending["url_type"] == "upload"
        job = wait_job(ckan, pending["nsdx_job"])
        assert job["status"] == "finished", job
        assert job["result"]["status"] == "published"
        pkg = ckan.action.package_show(id="bus-upload")
        assert [r["format"] for r in pkg["resources"]] == ["Parquet"]
        assert pkg["resources"][0]["nsdx_row_count"] == 3
        ex = {e["key"]: e["value"] for e in pkg["extras"]}
        assert ex["current_version"] == "1" and ex["row_count"] == "3"
        found = ckan.action.package_search(fq="res_format:Parquet")
        assert [p["name"] for p in found["results"]] == ["bus-upload"]


def test_nsdx_worker_runs_queued_uploads(tmp_path, postgres_url, nsdx_env):
    """On PostgreSQL an upload is queued (procrastinate); `nsdx worker` runs it."""
    from ckanapi import RemoteCKAN

    srv = start_server(tmp_path / "home", postgres_url, worker=False)
    try:
        src = tmp_path / "bus.csv"
        src.write_text(BUS_CSV, encoding="utf-8")
        with RemoteCKAN(srv.url, apikey=srv.token, user_agent="nsdx-tests/1.0") as ckan:
            ckan.action.package_create(name="queued", title="排队", owner_org="bureau")
            with src.open("rb") as f:
                job = ckan.action.resource_create(package_id="queued", upload=f)["nsdx_job"]
            time.sleep(1)
            assert ckan.action.nsdx_job_show(id=job["id"])["status"] == "queued"
            env = {**nsdx_env, "NSDX_HOME": str(tmp_path / "home"),
                   "NSDX_DATABASE_URL": postgres_url}  # fmt: skip
            run_cli("worker", "--once", env=env)
            job = ckan.action.nsdx_job_show(id=job["id"])
            assert job["status"] == "finished", job
            assert ckan.action.package_show(id="queued")["resources"][0]["format"] == "Parquet"
    finally:
        srv.stop()
