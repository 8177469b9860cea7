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
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.test_e2e import write_datasets_yaml

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


class Portal(httpx.Client):
    """An httpx client on a running `nsdx serve`, with what the tests need to know."""

    url: str
    token: str
    names: list[str]
    home: Path
    database_url: str


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """Every dataset of datasets.yaml published, plus one made through the CKAN API, served
    by a real `nsdx serve` (so download URLs are real URLs)."""
    from catalogue.auth import SYSTEM
    from catalogue.editing import Packages
    from catalogue.search import drop_indexes
    from nsdx.core import Nsdx
    from nsdx.samples import generate
    from nsdx.settings import Settings
    from tests.test_ckan_client import start_server

    tmp = tmp_path_factory.mktemp("portal")
    samples = tmp / "samples"
    generate(samples, rows=ROWS)
    home = tmp / "home"
    home.mkdir()
    write_datasets_yaml(home / "datasets.yaml", samples)
    database_url = f"sqlite:///{tmp / 'nsdx.db'}"
    nx = Nsdx(
        Settings(
            home=home,
            database_url=database_url,
            storage_url=f"file://{home / 'objects'}",
            datasets_path=home / "datasets.yaml",
        )
    )
    results = nx.ingest(all_=True)
    assert {r.status for r in results} <= {"published", "published_with_warnings"}
    Packages(nx.catalogue).create(SYSTEM, LINKED)
    server = start_server(home, database_url, org=False)
    try:
        with Portal(base_url=server.url, timeout=60) as client:
            client.url, client.token = server.url, server.token
            client.names = sorted([r.dataset_id for r in results] + [LINKED["name"]])
            client.home, client.database_url = home, database_url
            yield client
    finally:
        server.stop()
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

    site = portal.url
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
    # restricted data: not free; its download URLs want a token or a signed URL
    ride = _page_jsonld(portal, "nansha-ride-hailing-orders")
    assert ride["isAccessibleForFree"] is False
    for d in ride["distribution"]:
        assert portal.get(d["contentUrl"]).status_code == 401


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


# -- Croissant ------------------------------------------------------------------------------
def _open(portal, name: str) -> bool:
    pkg = portal.get("/api/3/action/package_show", params={"id": name}).json()["result"]
    return {e["key"]: e["value"] for e in pkg["extras"]}.get("access") == "open"


@pytest.mark.slow
def test_croissant_validates_and_loads_from_the_served_urls(portal):
    """mlcroissant accepts every dataset's Croissant; the record sets of open data load
    through mlcroissant from the portal's download URLs, row for row."""
    import mlcroissant as mlc
    import pyarrow.parquet as pq

    loaded = 0
    for name in portal.names:
        doc = portal.get(f"/dataset/{name}/croissant.json").json()
        ds = mlc.Dataset(jsonld=doc)  # raises on validation errors
        assert not ds.metadata.ctx.issues.errors, (name, ds.metadata.ctx.issues.report())
        assert doc["@context"]["@language"] == "zh" and doc["inLanguage"] == ["zh", "en"]
        for rs in doc.get("recordSet", []):
            assert all(" " not in f["@id"] for f in rs["field"]), rs["@id"]
        if not _open(portal, name):
            # restricted: the files are described, their URLs need a token or signed URL
            for fo in doc["distribution"]:
                assert portal.get(fo["contentUrl"]).status_code == 401
            continue
        for rs in doc.get("recordSet", []):
            [fo] = [
                f
                for f in doc["distribution"]
                if f["@id"] == rs["field"][0]["source"]["fileObject"]["@id"]
            ]
            rows = list(ds.records(record_set=rs["@id"]))
            body = portal.get(fo["contentUrl"]).content
            want = pq.read_table(__import__("io").BytesIO(body))
            assert len(rows) == want.num_rows, (name, rs["@id"])
            if rows:
                first = {k.rsplit("/", 1)[-1]: v for k, v in rows[0].items()}
                assert len(first) == want.num_columns
            loaded += 1
    assert loaded >= 14  # every table of open data


def test_croissant_types_and_languages(portal):
    doc = portal.get("/dataset/montreal-bike-counts/croissant.json").json()
    types = {f["name"]: f["dataType"] for rs in doc["recordSet"] for f in rs["field"]}
    assert types["Date"] == "sc:Date"  # date32, not text
    nyc = portal.get("/dataset/nyc-311-animal-complaints/croissant.json").json()
    ids = [f["@id"] for rs in nyc["recordSet"] for f in rs["field"]]
    assert "nyc-311-animal-complaints/Created%20Date" in ids
    bus = portal.get("/dataset/nansha-bus-gps/croissant.json").json()
    assert bus["alternateName"] == ["南沙公交车辆GPS轨迹", "Nansha bus GPS positions"]


# -- Frictionless Data Package --------------------------------------------------------------
@pytest.mark.slow
def test_datapackage_validates_with_its_data(portal, tmp_path):
    """`frictionless validate` accepts each open dataset's datapackage.json, reading every
    table from the portal's download URLs; restricted ones are valid descriptors."""
    validated = 0
    for name in portal.names:
        r = portal.get(f"/dataset/{name}/datapackage.json")
        assert r.status_code == 200
        dp = r.json()
        if name == "linked-timetable":  # a link resource elsewhere: the descriptor only
            assert dp["resources"][0]["path"] == "https://example.org/ferry.csv"
            continue
        assert dp["profile"] == "tabular-data-package"
        path = tmp_path / f"{name}.json"
        path.write_text(r.text, encoding="utf-8")
        if not _open(portal, name):  # the data needs a token: the descriptor must be valid
            from frictionless import Package

            report = Package.validate_descriptor(dp)
            assert report.valid, (name, report.flatten(["type", "note"]))
            continue
        report = json.loads(run_frictionless("validate", str(path), "--json", check=False))
        errors = [e for t in report["tasks"] for e in t["errors"]]
        pkg = portal.get("/api/3/action/package_show", params={"id": name}).json()["result"]
        blank = (pkg["nsdx"]["validation"] or {}).get("empty_rows", 0)
        # the only finding allowed: the empty rows the quality score already counts
        assert [e["type"] for e in errors] == ["blank-row"] * blank, (
            name,
            json.dumps(errors, ensure_ascii=False)[:3000],
        )
        assert all(t["stats"]["rows"] > 0 for t in report["tasks"]), name
        validated += 1
    assert validated >= 11


def run_frictionless(*args: str, check: bool = True) -> str:
    import subprocess
    import sys

    exe = str(Path(sys.executable).parent / "frictionless")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"frictionless {' '.join(args)}: {proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        )
    return proc.stdout
