"""Editing a dataset's metadata in the portal (no browser; the Chromium journey is in
tests/test_portal_browser.py): the Action API's package_patch with the signed-in user, its
refusals shown per field in the visitor's language, the form kept, nothing half-saved."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from nsdx.web.app import create_app
from tests.test_ckan_api import make_nsdx

HTML = {"accept": "text/html"}
PASSWORD = "correct horse battery"
ORG = "nansha-transport-bureau"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("portal-edit")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NSDX_PII_KEY", "test-pii-key")
        nx = make_nsdx(tmp, f"sqlite:///{tmp / 'nsdx.db'}")
        acc = Accounts(nx.catalogue)
        acc.create_org(ORG, title="南沙区交通运输局")
        for name, kw in (("official", {"auditor": True}), ("alice", {})):
            acc.create_user(name, **kw)
            set_password(acc, name, PASSWORD)
        acc.add_member(ORG, "alice", "editor")
        with TestClient(create_app(nx, warm=False, worker=False)) as c:
            c.headers.update(HTML)
            c.nx = nx
            yield c
    drop_indexes()


def login(c, name) -> str:
    c.cookies.clear()
    tok = re.search(r'name="csrftoken" value="([^"]+)"', c.get("/user/login").text).group(1)
    r = c.post("/user/login", data={"csrftoken": tok, "name": name, "password": PASSWORD})
    assert r.status_code == 200
    return tok


def api_show(c, name) -> dict:
    tok = c.nx  # noqa: F841 - the API is read as the public sees it
    r = c.get(f"/api/3/action/package_show?id={name}", headers={"accept": "application/json"})
    assert r.status_code == 200
    return r.json()["result"]


def form_of(html: str) -> dict[str, str]:
    out = {}
    for m in re.finditer(r'<input id="ed-(\w+)" name="\w+" type="\w+" value="([^"]*)"', html):
        out[m.group(1)] = m.group(2)
    for m in re.finditer(r'<textarea id="ed-(\w+)"[^>]*>([^<]*)</textarea>', html):
        out[m.group(1)] = m.group(2)
    out["modified"] = re.search(r'name="modified" value="([^"]*)"', html).group(1)
    return out


@pytest.fixture(scope="module")
def ferry(site) -> str:
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-ferry", "title": "南沙渡轮", "owner_org": ORG,
              "license_id": "CC-BY-4.0", "access": "open", "domain": "transport",
              "tags": "渡轮, ferry"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    return "nansha-ferry"


def test_provider_edits_metadata_and_the_api_shows_it(site, ferry):
    tok = login(site, "alice")
    page = site.get(f"/dataset/{ferry}")
    assert 'id="edit-link"' in page.text  # an editor of the organisation sees the link
    r = site.get(f"/dataset/{ferry}/edit")
    assert r.status_code == 200
    f = form_of(r.text)
    assert f["title"] == "南沙渡轮" and f["tags"] == "ferry, 渡轮"
    f.update(
        title="南沙渡轮客流",
        title_en="Nansha ferry riders",
        notes="每日各码头客流。",
        notes_en="Daily riders per pier.",
        tags="渡轮, ferry, 客流",
        license_id="CC0-1.0",
        maintainer="客运科",
        maintainer_email="ferry@example.org",
    )
    r = site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, **f}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/dataset/{ferry}?edited=1"
    page = site.get(r.headers["location"]).text
    assert "南沙渡轮客流" in page and "Nansha ferry riders" in page and "已保存。" in page
    pkg = api_show(site, ferry)
    ex = {e["key"]: e["value"] for e in pkg["extras"]}
    assert pkg["title"] == "南沙渡轮客流" and pkg["notes"] == "每日各码头客流。"
    assert ex["title_en"] == "Nansha ferry riders" and ex["notes_en"] == "Daily riders per pier."
    assert sorted(t["name"] for t in pkg["tags"]) == ["ferry", "客流", "渡轮"]
    assert pkg["license_id"] == "CC0-1.0"
    assert (pkg["maintainer"], pkg["maintainer_email"]) == ("客运科", "ferry@example.org")
    assert ex["access"] == "open" and ex["domain"] == "transport"  # untouched fields kept


def test_bad_fields_are_marked_in_chinese_and_english_and_nothing_is_saved(site, ferry):
    tok = login(site, "alice")
    before = api_show(site, ferry)
    f = form_of(site.get(f"/dataset/{ferry}/edit").text)
    bad = {**f, "title": "改过的标题", "domain": "Bad Domain", "tags": "ok-tag, x"}
    r = site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, **bad})
    assert r.status_code == 422
    assert "未保存：请检查标出的字段。" in r.text
    assert 'id="ed-domain-err">必须是以“-”连接的小写单词' in r.text
    assert "标签“x”须为 2–100 个字符" in r.text
    assert form_of(r.text)["title"] == "改过的标题"  # the form is kept
    assert api_show(site, ferry)["title"] == before["title"]  # nothing half-saved
    site.cookies.set("nsdx_lang", "en")
    r = site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, **bad})
    assert r.status_code == 422 and "Must be lower-case words joined by &#39;-&#39;" in r.text
    assert "Tag &#39;x&#39; must be 2-100 characters" in r.text
    site.cookies.delete("nsdx_lang")


def test_an_editor_cannot_change_the_domain_the_cross_border_rules_key_on(site, ferry):
    """Review finding 3 (issue 16): the free-trade zone's negative list is kept per domain;
    renaming transport to transport-x would exempt the data. Only a sysadmin may."""
    tok = login(site, "alice")
    f = form_of(site.get(f"/dataset/{ferry}/edit").text)
    r = site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, **f, "domain": "transport-x"})
    assert r.status_code == 422
    assert 'id="ed-domain-err">只有系统管理员可以更改数据集的领域' in r.text
    assert {e["key"]: e["value"] for e in api_show(site, ferry)["extras"]}["domain"] == (
        "transport"
    )
    site.cookies.set("nsdx_lang", "en")
    r = site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, **f, "domain": "transport-x"})
    assert r.status_code == 422 and "Only a sysadmin can change a dataset&#39;s domain" in r.text
    site.cookies.delete("nsdx_lang")


def test_a_stale_form_is_refused_with_the_entries_kept(site, ferry):
    tok = login(site, "alice")
    f = form_of(site.get(f"/dataset/{ferry}/edit").text)
    first = {**f, "notes": "第一个标签页"}
    assert site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, **first}).status_code == 200
    second = {**f, "notes": "第二个标签页"}  # opened before the first tab saved
    r = site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, **second})
    assert r.status_code == 409 and "此表单打开后，数据集已被修改" in r.text
    assert form_of(r.text)["notes"] == "第二个标签页"
    assert api_show(site, ferry)["notes"] == "第一个标签页"


def test_only_the_organisations_editors_may_edit_and_forms_need_the_csrf_token(site, ferry):
    site.cookies.clear()
    assert site.get(f"/dataset/{ferry}/edit", follow_redirects=False).status_code == 303
    tok = login(site, "official")  # signed in, but not an editor of the organisation
    assert 'id="edit-link"' not in site.get(f"/dataset/{ferry}").text
    r = site.get(f"/dataset/{ferry}/edit")
    assert r.status_code == 403 and "您不能编辑此数据集" in r.text
    r = site.post(f"/dataset/{ferry}/edit", data={"csrftoken": tok, "title": "x"})
    assert r.status_code == 403
    assert site.get("/dataset/no-such-dataset/edit").status_code == 404
    tok = login(site, "alice")
    f = form_of(site.get(f"/dataset/{ferry}/edit").text)
    r = site.post(f"/dataset/{ferry}/edit", data={**f, "title": "无令牌"})  # no CSRF token
    assert r.status_code == 403
    assert api_show(site, ferry)["title"] != "无令牌"
