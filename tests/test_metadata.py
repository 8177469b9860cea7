"""The metadata nsdx publishes, checked with the real tools of each ecosystem, on every dataset
of the repository's datasets.yaml (generated samples and the real files, published by the
real pipeline) plus datasets made through the CKAN API:

- DCAT-AP 3.0.1 and 2.1.1: pyshacl with the official SHACL shapes (tests/vectors/dcat-ap),
  JSON-LD and Turtle, the catalogue and each dataset — zero violations;
- schema.org ``Dataset`` on every dataset page: Google Dataset Search's requirements.
"""

from __future__ import annotations

import json
import re
import warnings

import pytest

from tests.conftest import ROOT
from tests.test_e2e import write_datasets_yaml

with warnings.catch_warnings():  # starlette's note about httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SHAPES = ROOT / "tests" / "vectors" / "dcat-ap"
ROWS = 20_000
LINKED = {  # a dataset made through the CKAN API: no notes, a link resource, a custom licence
    "name": "linked-timetable",
    "title": "南沙轮渡时刻表",
    "owner_org": "nansha-transport-bureau",
    "license_id": "Nansha-ferry-terms",
    "license_url": "https://example.org/ferry-terms",
    "maintainer": "南沙轮渡数据组",
    "maintainer_email": "ferry-data@example.org",
    "resources": [{"name": "timetable", "url": "https://example.org/ferry.csv", "format": "CSV"}],
}


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """Every dataset of datasets.yaml published, plus one made through the CKAN API."""
    from catalogue.auth import SYSTEM, Accounts
    from catalogue.editing import Packages
    from catalogue.search import drop_indexes
    from nsdx.core import Nsdx
    from nsdx.samples import generate
    from nsdx.settings import Settings
    from nsdx.web import create_app

    tmp = tmp_path_factory.mktemp("portal")
    samples = tmp / "samples"
    generate(samples, rows=ROWS)
    write_datasets_yaml(tmp / "datasets.yaml", samples)
    home = tmp / "home"
    nx = Nsdx(
        Settings(
            home=home,
            database_url=f"sqlite:///{tmp / 'nsdx.db'}",
            storage_url=f"file://{home / 'objects'}",
            datasets_path=tmp / "datasets.yaml",
        )
    )
    results = nx.ingest(all_=True)
    assert {r.status for r in results} <= {"published", "published_with_warnings"}
    Packages(nx.catalogue).create(SYSTEM, LINKED)
    Accounts(nx.catalogue).create_user("admin", sysadmin=True)
    with TestClient(create_app(nx, warm=False, worker=False)) as client:
        client.nx = nx
        client.names = sorted([r.dataset_id for r in results] + [LINKED["name"]])
        yield client
    drop_indexes()


# -- DCAT-AP ------------------------------------------------------------------------------
def _shapes(version: str):
    from rdflib import Graph

    g = Graph()
    names = ["shapes.ttl", "range.ttl"] + (["dcat-ap-SHACL.ttl"] if version == "3.0.1" else [])
    for name in names:
        g.parse(SHAPES / version / name, format="turtle")
    return g


def _violations(data, version: str) -> list[str]:
    from pyshacl import validate
    from rdflib import Namespace

    sh = Namespace("http://www.w3.org/ns/shacl#")
    _, report, _text = validate(data, shacl_graph=_shapes(version), inference="none",
                                advanced=True, allow_warnings=True)  # fmt: skip
    out = []
    for r in report.subjects(sh.resultSeverity, sh.Violation):
        focus = report.value(r, sh.focusNode)
        path = report.value(r, sh.resultPath)
        msg = report.value(r, sh.resultMessage)
        out.append(f"{focus} {path}: {msg}")
    return sorted(set(out))


def _graph(client, path: str, fmt: str, profile: str):
    from rdflib import Graph

    r = client.get(path.replace(".jsonld", f".{fmt}"), params={"profile": profile})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(
        "application/ld+json" if fmt == "jsonld" else "text/turtle"
    )
    g = Graph()
    g.parse(data=r.text, format="json-ld" if fmt == "jsonld" else "turtle")
    return g


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonld", "ttl"])
@pytest.mark.parametrize(("version", "profile"), [("3.0.1", "dcat-ap-3"), ("2.1.1", "dcat-ap-2")])
def test_dcat_ap_conforms(portal, fmt, version, profile):
    """The catalogue, and every dataset on its own, against the official shapes."""
    catalog = _graph(portal, "/catalog.jsonld", fmt, profile)
    found = _violations(catalog, version)
    assert not found, "\n".join(found)
    datasets = None
    for name in portal.names:
        g = _graph(portal, f"/dataset/{name}.jsonld", fmt, profile)
        datasets = g if datasets is None else datasets + g
    found = _violations(datasets, version)
    assert not found, "\n".join(found)


def test_dcat_ap_content(portal):
    """What harvesters read: IRIs from the EU vocabularies, both languages, coverage from
    the data, licences as URLs on datasets and distributions, checksums, contact points."""
    from rdflib import Literal, Namespace, URIRef

    dcat = Namespace("http://www.w3.org/ns/dcat#")
    dct = Namespace("http://purl.org/dc/terms/")
    spdx = Namespace("http://spdx.org/rdf/terms#")
    vcard = Namespace("http://www.w3.org/2006/vcard/ns#")
    rdfs = Namespace("http://www.w3.org/2000/01/rdf-schema#")
    g = _graph(portal, "/catalog.jsonld", "ttl", "dcat-ap-3")
    datasets = list(g.subjects(predicate=dcat.distribution, unique=True))
    assert len(set(g.objects(None, dcat.dataset))) == len(portal.names)

    def one(s, p):
        return g.value(s, p)

    site = "http://testserver"
    bus = URIRef(f"{site}/dataset/nansha-bus-gps")
    assert Literal("南沙公交车辆GPS轨迹", lang="zh") in set(g.objects(bus, dct.title))
    assert Literal("Nansha bus GPS positions", lang="en") in set(g.objects(bus, dct.title))
    langs = {o.language for o in g.objects(bus, dct.description)}
    assert langs == {"zh", "en"}
    assert one(bus, dcat.theme) == URIRef(
        "http://publications.europa.eu/resource/authority/data-theme/TRAN"
    )
    # coverage computed from the published data: the sample week, inside Nansha
    period = one(bus, dct.temporal)
    start, end = str(one(period, dcat.startDate)), str(one(period, dcat.endDate))
    assert "2026-03-02" <= start[:10] <= end[:10] <= "2026-03-07", (start, end)
    wkt = str(one(one(bus, dct.spatial), dcat.bbox))
    nums = [float(x) for x in re.findall(r"-?\d+\.?\d*", wkt)]
    assert all(113.30 <= x <= 113.70 for x in nums[0::2]), wkt
    assert all(22.55 <= y <= 22.95 for y in nums[1::2]), wkt
    # declared when the data has no coordinates
    hk = URIRef(f"{site}/dataset/hk-mtr-fares")
    assert "113.83 22.15" in str(one(one(hk, dct.spatial), dcat.bbox))
    for ds in datasets:
        assert one(ds, dcat.contactPoint) is not None, ds
        assert {o.language for o in g.objects(ds, dct.description)} == {"zh", "en"}, ds
        lic = one(ds, dct.license)
        for dist in g.objects(ds, dcat.distribution):
            # the same IRI; or for a licence without one, the same title
            dlic = one(dist, dct.license)
            assert dlic == lic or str(one(dlic, rdfs.label)) == str(one(lic, rdfs.label))
            fmt, mt = one(dist, dct["format"]), one(dist, dcat.mediaType)
            assert isinstance(mt, URIRef) and str(mt).startswith(
                "https://www.iana.org/assignments/media-types/"
            ), (ds, mt)
            assert isinstance(fmt, URIRef) and "/file-type/" in str(fmt), (ds, fmt)
    # licences are URLs: SPDX/Creative Commons, or the publisher's own
    assert one(bus, dct.license) == URIRef("https://creativecommons.org/licenses/by/4.0/")
    assert one(URIRef(f"{site}/dataset/nyc-311-animal-complaints"), dct.license) == URIRef(
        "https://spdx.org/licenses/MIT.html"
    )
    assert one(hk, dct.license) == URIRef("https://data.gov.hk/en/terms-and-conditions")
    linked = URIRef(f"{site}/dataset/linked-timetable")
    assert one(linked, dct.license) == URIRef("https://example.org/ferry-terms")
    # a published table's checksum is the manifest's SHA-256 of the file served
    [dist] = g.objects(bus, dcat.distribution)
    ck = one(dist, spdx.checksum)
    pkg = portal.get("/api/3/action/package_show", params={"id": "nansha-bus-gps"}).json()
    [res] = pkg["result"]["resources"]
    assert str(one(ck, spdx.checksumValue)) == res["nsdx_files"][0]["sha256"]
    # the contact point declared for the organisation
    cp = one(URIRef(f"{site}/dataset/nansha-hotline-cases"), dcat.contactPoint)
    assert one(cp, vcard.hasTelephone) == URIRef("tel:12345")
    assert str(one(cp, vcard.fn)).startswith("南沙区12345政务服务便民热线")
    cp = one(linked, dcat.contactPoint)
    assert str(one(cp, vcard.fn)).startswith("广州市南沙区交通运输局")


# -- schema.org / Google Dataset Search ---------------------------------------------------
def _page_jsonld(client, name: str) -> dict:
    r = client.get(f"/dataset/{name}")
    assert r.status_code == 200
    m = re.search(r'<script type="application/ld\+json">(.*?)</script>', r.text, re.S)
    return json.loads(m.group(1))


def test_schema_org_meets_google_dataset_requirements(portal):
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for name in portal.names:
        ld = _page_jsonld(portal, name)
        assert ld["@type"] == "Dataset" and ld["name"]
        d = ld["description"]
        assert 50 <= len(d) <= 5000, (name, len(d))
        assert cjk.search(d) and re.search(r"[A-Za-z]{4,} [A-Za-z]{2,}", d), (name, d)
        assert ld["includedInDataCatalog"]["@type"] == "DataCatalog"
        lic = ld["license"]
        assert isinstance(lic, str) and lic.startswith("https://") or lic["@type"] == "CreativeWork"
        assert "spatialCoverage" in ld or name == "linked-timetable", name
    bus = _page_jsonld(portal, "nansha-bus-gps")
    start, end = bus["temporalCoverage"].split("/")
    assert "2026-03-02" <= start[:10] <= end[:10] <= "2026-03-07"
    s, w, n, e = (float(x) for x in bus["spatialCoverage"]["geo"]["box"].split())
    assert 22.55 <= s <= n <= 22.95 and 113.30 <= w <= e <= 113.70
    assert bus["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert {v["name"] for v in bus["variableMeasured"]} >= {"ts", "lon", "lat"}
    # restricted data: not free, and no download link on the page
    ride = _page_jsonld(portal, "nansha-ride-hailing-orders")
    assert ride["isAccessibleForFree"] is False
    assert "distribution" not in ride


def test_dcat_ap_unknown_profile_is_refused(portal):
    r = portal.get("/catalog.jsonld", params={"profile": "dcat-ap-9"})
    assert r.status_code in (400, 422)
    assert "dcat-ap-3" in r.text


def test_blank_trailing_rows_lower_the_quality_score(portal):
    """The HK lines file ends with 3 empty rows: its score is below 100 and says why."""
    pkg = portal.get("/api/3/action/package_show", params={"id": "hk-mtr-lines-and-stations"})
    nsdx = pkg.json()["result"]["nsdx"]
    assert nsdx["validation"]["empty_rows"] == 3
    assert nsdx["quality_score"] < 100
