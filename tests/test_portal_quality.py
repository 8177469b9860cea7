"""Schema, personal-data markings and checks on the dataset page, and the full validation
report served as a page: the publishers see the failing values masked as publishing masks
them and cut short; everyone else the published copy with no values. Raw personal data
from the report files on disk never reaches a page."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from nsdx.web.app import create_app
from tests.test_ckan_api import make_nsdx
from validation.pii import mask_value

HTML = {"accept": "text/html"}
PASSWORD = "correct horse battery"
ORG = "nansha-transport-bureau"
LONG = "长" * 300
YAML = """
datasets:
  - id: nansha-taxi-fares
    title: 南沙出租车计费
    title_en: Nansha taxi fares
    domain: transport
    organization: nansha-transport-bureau
    licence: CC-BY-4.0
    source: {path: fares.csv, format: csv}
    schema:
      - {name: plate, type: string, pii: plate}
      - {name: driver_phone, type: string, pii: phone}
      - {name: note, type: string, pii: free_text}
      - {name: fare, type: float}
    expectations:
      - {column: plate, regex: "^粤A"}
      - {column: driver_phone, regex: "^139"}
      - {column: note, in_set: [ok]}
      - {column: fare, between: [0, 100]}
    on_invalid: warn
  - id: nansha-taxi-trips
    title: 南沙出租车行程
    domain: transport
    organization: nansha-transport-bureau
    access: restricted
    licence: CC-BY-4.0
    source: {path: trips.csv, format: csv}
    expectations:
      - {column: fare, mean: {between: [0, 100]}}
"""
RAW = ("粤B23456", "13812345678", "13712345678")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("portal-quality")
    (tmp / "datasets.yaml").write_text(YAML, encoding="utf-8")
    (tmp / "fares.csv").write_text(
        "plate,driver_phone,note,fare\n"
        "粤A12345,13912345678,ok,20.5\n"
        "粤B23456,13812345678,司机电话13712345678,150.0\n"
        f"粤AD12345,13900001111,{LONG},30\n",
        encoding="utf-8",
    )
    (tmp / "trips.csv").write_text("trip,fare\nT1,23.5\nT2,41.0\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NSDX_PII_KEY", "test-pii-key")
        nx = make_nsdx(tmp, f"sqlite:///{tmp / 'nsdx.db'}")
        acc = Accounts(nx.catalogue)
        acc.create_org(ORG, title="南沙区交通运输局")
        for name in ("alice", "bob", "carol"):
            acc.create_user(name)
            set_password(acc, name, PASSWORD)
        acc.add_member(ORG, "alice", "editor")
        acc.add_member(ORG, "carol", "member")  # reads the data; publishes nothing
        assert [r.version for r in nx.ingest(["nansha-taxi-fares", "nansha-taxi-trips"])] == [1, 1]
        with TestClient(create_app(nx, warm=False, worker=False)) as c:
            c.headers.update(HTML)
            c.nx = nx
            yield c
    drop_indexes()


def login(c, name) -> None:
    c.cookies.clear()
    tok = re.search(r'name="csrftoken" value="([^"]+)"', c.get("/user/login").text).group(1)
    r = c.post("/user/login", data={"csrftoken": tok, "name": name, "password": PASSWORD})
    assert r.status_code == 200


def test_the_report_files_on_disk_hold_raw_values(site):
    files = list((site.nx.reports_dir / "nansha-taxi-fares").glob("*.json"))
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    assert all(v in text for v in RAW)  # what the pages must never serve


def test_dataset_page_shows_schema_pii_and_checks_with_results(site):
    site.cookies.clear()
    html = site.get("/dataset/nansha-taxi-fares").text
    rows = dict(re.findall(r"<tr><td><code>(\w+)</code></td>(.*?)</tr>", html, re.S))
    assert "车牌号" in rows["plate"] and "已脱敏：替换为带密钥的标记" in rows["plate"]
    assert "电话号码" in rows["driver_phone"]
    assert "fare between [0, 100]: <strong>未通过</strong> (1 行)" in rows["fare"]
    assert "否" in rows["fare"]  # not personal data
    assert "未通过" in rows["plate"] and "1 行" in rows["plate"]
    assert 'href="/dataset/nansha-taxi-fares/quality"' in html
    assert not any(v in html for v in RAW)


def test_publishers_see_failing_values_masked_as_published_and_cut_short(site):
    login(site, "alice")
    r = site.get("/dataset/nansha-taxi-fares/quality")
    assert r.status_code == 200 and 'id="report-source"' in r.text
    assert "已按发布数据的方式脱敏" in r.text
    assert not any(v in r.text for v in RAW)
    key = site.nx.masking_key()
    assert mask_value("粤B23456", "plate", key) in r.text  # the token the published data has
    assert mask_value("13812345678", "phone", key) in r.text
    assert mask_value("13712345678", "phone", key) in r.text  # found inside free text
    assert "长" * 199 + "…" in r.text and "长" * 200 not in r.text  # cut to 200 characters


@pytest.mark.parametrize("who", [None, "bob"])
def test_everyone_else_sees_checks_and_counts_but_no_values(site, who):
    if who:
        login(site, who)
    else:
        site.cookies.clear()
    r = site.get("/dataset/nansha-taxi-fares/quality")
    assert r.status_code == 200
    assert "失败的值只向数据集的发布者显示" in r.text
    assert r.text.count('class="failed"') == 4 and "pii_" not in r.text
    assert not any(v in r.text for v in RAW) and "长长长" not in r.text
    assert site.get("/dataset/nansha-taxi-fares/quality?v=7").status_code == 404
    assert site.get("/dataset/no-such/quality").status_code == 404


def test_the_cores_refusal_of_a_preview_is_shown_in_the_visitors_language(site):
    site.cookies.clear()
    html = site.get("/dataset/nansha-taxi-trips").text
    assert "数据集“nansha-taxi-trips”（视图 transport.nansha_taxi_trips）为受限数据：只有“" in html
    assert "的成员和持有有效访问授权的机构可以读取；anonymous 没有授权" in html
    site.cookies.set("nsdx_lang", "en")
    html = site.get("/dataset/nansha-taxi-trips").text
    assert (
        "dataset &#39;nansha-taxi-trips&#39; (view transport.nansha_taxi_trips) is restricted: it"
        in html
    )
    site.cookies.delete("nsdx_lang")


MEAN = "32.25"  # the mean fare of the restricted trips: an aggregate of data few may read


@pytest.mark.parametrize(("who", "shown"), [(None, False), ("bob", False), ("carol", True),
                                            ("alice", True)])  # fmt: skip
def test_a_numeric_observed_value_is_shown_only_to_those_who_may_read_the_data(site, who, shown):
    """Review finding 13: anyone may see a restricted dataset's report, but its numeric
    observed values (here a mean) are the data's own: only its readers get them."""
    if who:
        login(site, who)
    else:
        site.cookies.clear()
    r = site.get("/dataset/nansha-taxi-trips/quality")
    assert r.status_code == 200 and "fare" in r.text
    assert (MEAN in r.text) is shown


def test_the_published_copy_of_a_report_keeps_numbers_only(site):
    """Review finding 13: the copy published in storage with a version holds no value read
    from the data but numbers: no text observed value, no exception message."""
    from catalogue.quality import published_reports
    from ingest.pipeline import _without_samples

    stored = published_reports(site.nx.catalogue, site.nx.store, "nansha-taxi-trips")
    (report,) = stored["tables"].values()
    assert [x["result"]["observed_value"] for x in report["results"]] == [float(MEAN)]
    raw = {"results": [
        {"success": False, "result": {"observed_value": "粤B23456", "element_count": 3,
                                      "details": {"value": "13812345678"},
                                      "partial_unexpected_list": ["13712345678"]},
         "exception_info": {"raised_exception": True,
                            "exception_message": "bad value 13812345678",
                            "exception_traceback": "Traceback ... 粤B23456"}},
        {"success": True, "result": {"observed_value": ["粤B23456", "x"]}},
        {"success": True, "result": {"observed_value": 7}},
    ]}  # fmt: skip
    out = _without_samples(raw)
    assert not any(v in json.dumps(out, ensure_ascii=False) for v in RAW)
    assert out["results"][0]["result"] == {"observed_value": None, "element_count": 3}
    assert out["results"][0]["exception_info"] == {"raised_exception": True}
    assert out["results"][1]["result"] == {"observed_value": None}
    assert out["results"][2]["result"] == {"observed_value": 7}
