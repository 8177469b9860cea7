"""The CKAN Action API contract that CKAN's own clients rely on (compared with CKAN's
logic/action/get.py): autocomplete, users with CKAN's privacy rule, tags, groups, resource
search, the computed package fields, and 400 "Search Query Error" where CKAN gives it."""

from __future__ import annotations

import pyarrow as pa

from tests.test_ckan_api import BUS, deployment, extras  # noqa: F401 - shared fixture
from validation.report import ValidationReport, empty_rows


def _site(d):
    d.ok("package_create", BUS)
    d.ok(
        "package_create",
        {"name": "metro-flow", "title": "广州地铁南沙段客流", "owner_org": "bureau",
         "license_id": "ODbL-1.0", "tags": [{"name": "地铁"}],
         "maintainer": "客流数据组", "maintainer_email": "flow@example.org",
         "author_email": "author@example.org",
         "resources": [{"name": "flow", "url": "https://example.org/flow.csv", "format": "CSV",
                        "hash": "sha256:" + "ab" * 32}]},
    )  # fmt: skip
    d.ok("package_create", {"name": "secret-bus", "title": "内部公交数据",
                            "owner_org": "bureau", "private": True,
                            "tags": [{"name": "内部"}]})  # fmt: skip
    return d


def test_package_show_has_ckans_computed_fields(deployment):  # noqa: F811
    d = _site(deployment)
    pkg = d.ok("package_show", {"id": "metro-flow"}, token=None)
    assert pkg["license_title"] == "Open Data Commons Open Database License"
    assert pkg["license_url"] == "https://opendatacommons.org/licenses/odbl/1-0/"
    assert pkg["isopen"] is True
    assert pkg["maintainer"] == "客流数据组" and pkg["maintainer_email"] == "flow@example.org"
    assert pkg["author_email"] == "author@example.org"
    assert pkg["groups"] == []
    [r] = pkg["resources"]
    assert r["mimetype"] == "text/csv" and r["hash"] == "sha256:" + "ab" * 32
    assert r["url_type"] is None and r["metadata_modified"]
    # none of CKAN's top-level fields leak into extras
    assert not {"maintainer", "license_url", "author_email"} & set(extras(pkg))
    # without a maintainer, the organisation answers; an unknown licence is not open
    d.ok("package_patch", {"id": "metro-flow", "license_id": "my-terms"})
    pkg = d.ok("package_show", {"id": "metro-flow"}, token=None)
    assert pkg["isopen"] is False and pkg["license_title"] == "my-terms"
    bus = d.ok("package_show", {"id": "nansha-bus-gps"}, token=None)
    assert bus["maintainer"] == "南沙区交通运输局"


def test_package_autocomplete(deployment):  # noqa: F811
    d = _site(deployment)
    got = d.ok("package_autocomplete", {"q": "bus"}, method="GET", token=None)
    assert got == [
        {
            "name": "nansha-bus-gps",
            "title": "南沙公交车辆GPS轨迹",
            "match_field": "name",
            "match_displayed": "nansha-bus-gps",
        }
    ]  # fmt: skip  -- the private secret-bus is not offered
    got = d.ok("package_autocomplete", {"q": "地铁"}, method="GET", token=None)
    assert [(g["name"], g["match_field"]) for g in got] == [("metro-flow", "title")]
    assert d.ok("package_autocomplete", {"q": "%"}, method="GET", token=None) == []
    assert len(d.ok("package_autocomplete", {"q": "-", "limit": 1}, method="GET")) == 1


def test_user_list_and_show_respect_privacy(deployment):  # noqa: F811
    d = _site(deployment)
    d.accounts.create_user("alice", email="alice@example.org", fullname="Alice")
    bob = d.user("bob", email="bob@example.org")
    status, body = d.call("user_list", token=None, method="GET")
    assert status == 403 and body["error"]["__type"] == "Authorization Error"
    assert d.call("user_show", {"id": "alice"}, token=None, method="GET")[0] == 403
    # a signed-in user sees names, not other people's e-mail addresses
    users = d.ok("user_list", token=bob, method="GET")
    assert {u["name"] for u in users} >= {"admin", "alice", "bob"}
    assert all("email" not in u for u in users if u["name"] != "bob")
    assert next(u for u in users if u["name"] == "bob")["email"] == "bob@example.org"
    assert "email" not in d.ok("user_show", {"id": "alice"}, token=bob, method="GET")
    # a sysadmin sees them; nobody sees a password hash or a token
    alice = d.ok("user_show", {"id": "alice"}, method="GET")
    assert alice["email"] == "alice@example.org" and alice["display_name"] == "Alice"
    assert not {"password", "password_hash", "apikey"} & set(alice)
    assert d.ok("user_list", {"all_fields": "false", "q": "ali"}, method="GET") == ["alice"]
    status, body = d.call("user_list", {"order_by": "password"}, method="GET")
    assert status == 409


def test_tag_show_group_show(deployment):  # noqa: F811
    d = _site(deployment)
    tag = d.ok("tag_show", {"id": "公交", "include_datasets": "true"}, token=None, method="GET")
    assert tag["name"] == "公交" and [p["name"] for p in tag["packages"]] == ["nansha-bus-gps"]
    # a tag only a private dataset has: not found for outsiders, shown to members
    assert d.call("tag_show", {"id": "内部"}, token=None, method="GET")[0] == 404
    assert d.ok("tag_show", {"id": "内部"}, method="GET")["name"] == "内部"
    status, body = d.call("group_show", {"id": "bureau"}, token=None, method="GET")
    assert status == 404 and body["error"]["__type"] == "Not Found Error"


def test_resource_search(deployment):  # noqa: F811
    d = _site(deployment)
    r = d.ok("resource_search", {"query": "format:csv"}, token=None, method="GET")
    assert r["count"] == 2 and {x["name"] for x in r["results"]} == {"sample", "flow"}
    r = d.ok("resource_search", {"query": ["format:csv", "url:flow"]}, token=None)
    assert [x["name"] for x in r["results"]] == ["flow"]
    r = d.ok("resource_search", {"query": "hash:sha256:" + "ab" * 32}, token=None)
    assert r["count"] == 1
    r = d.ok("resource_search", {"query": "format:csv", "order_by": "name", "limit": 1})
    assert r["count"] == 2 and [x["name"] for x in r["results"]] == ["flow"]
    status, body = d.call("resource_search", {"query": "colour:red"}, token=None)
    assert status == 409 and "not recognised" in str(body["error"])


def test_search_query_errors_as_ckan(deployment):  # noqa: F811
    d = _site(deployment)
    status, body = d.call("package_search", {"q": "bus", "sort": "nonsense desc"}, token=None)
    assert status == 400 and body["error"]["__type"] == "Search Query Error"
    assert "nonsense" in body["error"]["message"]
    status, body = d.call("package_search", {"q": "bus", "rowz": "5"}, token=None, method="GET")
    assert status == 400 and body["error"]["__type"] == "Search Query Error"
    assert "rowz" in body["error"]["message"]
    # CKAN's other parameters and sorting on an extra still work
    ok = d.ok("package_search", {"q": "*:*", "sort": "extras_domain asc, name desc",
                                 "defType": "edismax", "include_private": "true"})  # fmt: skip
    assert ok["count"] == 3


def test_organization_list_q(deployment):  # noqa: F811
    d = _site(deployment)
    d.accounts.create_org("metro-company", title="广州地铁集团")
    assert d.ok("organization_list", {"q": "地铁"}, token=None, method="GET") == ["metro-company"]
    assert d.ok("organization_list", {"q": "BUREAU"}, token=None, method="GET") == ["bureau"]


def test_licence_list_is_the_register(deployment):  # noqa: F811
    lics = {x["id"]: x for x in deployment.ok("license_list", token=None, method="GET")}
    assert lics["MIT"]["url"] == "https://spdx.org/licenses/MIT.html"
    assert lics["other-closed"]["od_conformance"] == "not reviewed"
    # no document elsewhere: its page on this portal, which holds the terms
    page = lics["nsdx-exchange-commercial"]["url"]
    assert page.endswith("/licence/nsdx-exchange-commercial") and page.startswith("http")
    r = deployment.client.get(page)
    assert r.status_code == 200 and "访问授权" in r.text


def test_empty_rows_are_not_quality_data():
    """A table whose rows are all empty is not scored 100 (nothing failed, nothing held)."""
    blank = pa.table({"a": pa.array([None, None, None], pa.int64()), "b": ["", None, ""]})
    assert empty_rows(blank) == 3
    assert ValidationReport("x", [], row_count=3, empty_rows=3).score == 0.0
    half = pa.table({"a": pa.array([1, None], pa.int64()), "b": ["x", ""]})
    assert empty_rows(half) == 1
    assert ValidationReport("x", [], row_count=4, empty_rows=1).score == 75.0
    assert ValidationReport("x", [], row_count=4).score == 100.0


def test_a_link_without_a_format_gets_its_file_names(deployment):  # noqa: F811
    """CKAN guesses an empty format from the link (``if_empty_guess_format``); without it,
    `ckanapi dump datasets --datapackages` stopped with KeyError 'format' on such a link (found
    against `nsdx serve`). The real ckanapi code that names the downloaded files runs here."""
    from ckanapi.datapackage import dataset_to_datapackage, resource_filename

    d = _site(deployment)
    links = [
        {"name": "ferry", "url": "https://example.org/data/ferry.csv?v=2"},
        {"name": "stops", "url": "https://example.org/stops.GEOJSON"},
        {"name": "page", "url": "https://example.org/timetable"},  # nothing to guess from
        {"name": "said", "url": "https://example.org/x.csv", "format": "XLSX"},  # as given
    ]
    d.ok("package_patch", {"id": "metro-flow", "resources": links})
    pkg = d.ok("package_show", {"id": "metro-flow"}, token=None)
    assert [r["format"] for r in pkg["resources"]] == ["CSV", "GEOJSON", "", "XLSX"]
    assert pkg["resources"][0]["mimetype"] == "text/csv"
    named = {**pkg, "resources": [r for r in pkg["resources"] if r["format"]]}
    dp = dataset_to_datapackage(named)
    assert [resource_filename(r) for r in dp["resources"]] == [
        "ferry.csv", "stops.geojson", "said.xlsx",
    ]  # fmt: skip
    # an update that clears the format of a link keeps it cleared
    patched = [{**r, "format": ""} if r["name"] == "ferry" else r for r in pkg["resources"]]
    d.ok("package_patch", {"id": "metro-flow", "resources": patched})
    pkg = d.ok("package_show", {"id": "metro-flow"}, token=None)
    assert pkg["resources"][0]["format"] == ""
