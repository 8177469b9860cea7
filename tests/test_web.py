"""The web portal and the open-data renderings (DCAT-AP, schema.org), through the real
app, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_ckan_api import BUS, deployment  # noqa: F401 - shared fixture


@pytest.fixture
def site(deployment):  # noqa: F811
    deployment.ok("package_create", BUS)
    deployment.ok(
        "package_create",
        {"name": "metro", "title": "广州地铁南沙段客流", "owner_org": "bureau",
         "license_id": "ODbL-1.0", "tags": [{"name": "地铁"}]},
    )  # fmt: skip
    deployment.ok("package_create", {"name": "secret", "title": "内部地铁数据",
                                     "owner_org": "bureau", "private": True})  # fmt: skip
    return deployment


def test_search_page(site):
    r = site.client.get("/", params={"q": "地铁"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "广州地铁南沙段客流" in r.text and "内部地铁数据" not in r.text
    assert "找到 1 个数据集" in r.text  # Chinese first, English one click away
    site.client.cookies.set("nsdx_lang", "en")
    assert "1 dataset found" in site.client.get("/", params={"q": "地铁"}).text
    site.client.cookies.clear()
    r = site.client.get("/", params={"tags": "公交"})
    assert "南沙公交车辆GPS轨迹" in r.text and "广州地铁" not in r.text
    assert "南沙区交通运输局" in r.text  # the organisation facet shows titles
    r = site.client.get("/", params={"q": "tags:(oops"})
    assert r.status_code == 200 and "Search Query is invalid" in r.text


def test_dataset_page_has_schema_org_markup(site):
    r = site.client.get("/dataset/nansha-bus-gps")
    assert r.status_code == 200
    assert "Nansha bus GPS positions" in r.text and "https://example.org/bus.csv" in r.text
    m = re.search(r'<script type="application/ld\+json">(.*?)</script>', r.text, re.S)
    ld = json.loads(m.group(1))
    assert ld["@context"] == "https://schema.org/" and ld["@type"] == "Dataset"
    assert ld["name"] == "南沙公交车辆GPS轨迹"
    assert ld["alternateName"] == "Nansha bus GPS positions"
    assert ld["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert ld["creator"]["name"] == "南沙区交通运输局"
    assert ld["distribution"][0]["contentUrl"] == "https://example.org/bus.csv"
    assert site.client.get("/dataset/secret").status_code == 404
    assert site.client.get("/dataset/nope").status_code == 404
    assert site.client.get("/static/nsdx.css").status_code == 200


def test_dcat_catalog(site):
    r = site.client.get("/catalog.jsonld")
    assert r.status_code == 200 and r.headers["content-type"] == "application/ld+json"
    cat = r.json()
    assert cat["@type"] == "dcat:Catalog"
    assert cat["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    names = sorted(d["@id"].rsplit("/", 1)[1] for d in cat["dcat:dataset"])
    assert names == ["metro", "nansha-bus-gps"]
    bus = next(d for d in cat["dcat:dataset"] if d["@id"].endswith("nansha-bus-gps"))
    assert {"@value": "Nansha bus GPS positions", "@language": "en"} in bus["dct:title"]
    assert bus["dcat:keyword"] == ["gps", "公交"]
    assert bus["dcat:theme"]["@id"].endswith("/data-theme/TRAN")
    assert bus["dct:accessRights"]["@id"].endswith("/PUBLIC")
    dist = bus["dcat:distribution"][0]
    assert dist["@type"] == "dcat:Distribution"
    assert dist["dcat:mediaType"]["@id"] == "https://www.iana.org/assignments/media-types/text/csv"


def test_dcat_dataset(site):
    d = site.client.get("/dataset/metro.jsonld").json()
    assert d["@type"] == "dcat:Dataset" and d["@context"]["dct"] == "http://purl.org/dc/terms/"
    assert d["dct:license"]["@id"] == "https://opendatacommons.org/licenses/odbl/1-0/"
    assert site.client.get("/dataset/secret.jsonld").status_code == 403
    r = site.client.get("/dataset/secret.jsonld", headers={"Authorization": site.admin_token})
    assert r.status_code == 200
    assert site.client.get("/dataset/nope.jsonld").status_code == 404


DATASETS_YAML = """
datasets:
  - id: bus-gps
    title: 南沙公交车辆GPS轨迹
    title_en: Nansha bus GPS positions
    domain: transport
    organization: bureau
    source: {path: bus.csv, format: csv}
"""


def test_croissant_of_a_published_dataset(deployment, tmp_path):  # noqa: F811
    """A dataset published by the real pipeline, described for ML users (Croissant)."""
    (tmp_path / "bus.csv").write_text(
        "ts,route_id,speed_kmh\n2024-03-01 08:00:00,N4,31.5\n2024-03-01 08:00:30,N8,28.0\n",
        encoding="utf-8",
    )
    (tmp_path / "datasets.yaml").write_text(DATASETS_YAML, encoding="utf-8")
    [result] = deployment.nx.ingest(["bus-gps"])
    assert result.status == "published"
    c = deployment.client.get("/dataset/bus-gps/croissant.json").json()
    assert c["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert c["@type"] == "sc:Dataset" and c["version"] == "1"
    [fo] = c["distribution"]
    assert fo["encodingFormat"] == "application/x-parquet" and len(fo["sha256"]) == 64
    assert fo["contentUrl"].endswith(".parquet")
    [rs] = c["recordSet"]
    types = {f["name"]: f["dataType"] for f in rs["field"]}
    assert types["speed_kmh"] == "sc:Float" and types["route_id"] == "sc:Text"
    assert types["ts"] == "sc:DateTime"
    # the page shows the published table's schema; search finds it as Parquet
    page = deployment.client.get("/dataset/bus-gps").text
    assert "speed_kmh" in page and "v1" in page
    r = deployment.ok("package_search", {"fq": "res_format:Parquet", "q": "公交"}, token=None)
    assert [p["name"] for p in r["results"]] == ["bus-gps"]


@pytest.mark.parametrize(
    ("mode", "says"),
    [("threads", "NSDX_JOBS='threads' is not a job mode"), ("queue", "PostgreSQL")],
)
def test_a_wrong_job_mode_stops_the_server_at_start(tmp_path, monkeypatch, mode, says):
    """Not at its first upload, with a job left queued forever."""
    from catalogue.errors import CatalogueError
    from nsdx.web import create_app
    from tests.test_ckan_api import make_nsdx

    monkeypatch.setenv("NSDX_JOBS", mode)
    with pytest.raises(CatalogueError, match=says) as e:
        create_app(make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'nsdx.db'}"), warm=False)
    assert "NSDX_JOBS=thread" in e.value.hint or "or leave it unset" in e.value.hint
