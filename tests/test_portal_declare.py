"""The "columns and checks" section of the providers' dataset forms (no browser; the
Chromium journey is in tests/test_portal_browser.py): a provider declares columns (type,
description, personal data, how it is published, sensitive) and checks (expectations) when
creating or editing a dataset; they are checked by the same functions as datasets.yaml and
the Action API (catalogue.declared), refusals are marked per row in the visitor's language
with the form kept and nothing saved, only the dataset's editors may change them, a stale
tab is refused, and the next upload is published with them (masked, checked, reported)."""

from __future__ import annotations

import re
import time
from html import unescape

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from nsdx.web.app import create_app
from tests.test_ckan_api import make_nsdx

HTML = {"accept": "text/html"}
JSON = {"accept": "application/json"}
PASSWORD = "correct horse battery"
ORG = "nansha-transport-bureau"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("portal-declare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NSDX_PII_KEY", "test-pii-key")
        nx = make_nsdx(tmp, f"sqlite:///{tmp / 'nsdx.db'}")
        acc = Accounts(nx.catalogue)
        acc.create_org(ORG, title="南沙区交通运输局")
        acc.create_org("other-org", title="别的机构")
        for name in ("alice", "mallory"):
            acc.create_user(name)
            set_password(acc, name, PASSWORD)
        acc.add_member(ORG, "alice", "editor")
        acc.add_member("other-org", "mallory", "admin")
        with TestClient(create_app(nx, warm=False, worker=False)) as c:
            c.headers.update(HTML)
            c.nx = nx
            c.alice_token = acc.create_token("alice")[0]
            yield c
    drop_indexes()


def login(c, name) -> str:
    c.cookies.clear()
    tok = re.search(r'name="csrftoken" value="([^"]+)"', c.get("/user/login").text).group(1)
    r = c.post("/user/login", data={"csrftoken": tok, "name": name, "password": PASSWORD})
    assert r.status_code == 200
    return tok


def show(c, name) -> dict | None:
    r = c.get(
        f"/api/3/action/package_show?id={name}",
        headers={**JSON, "authorization": c.alice_token},
    )
    return r.json()["result"] if r.status_code == 200 else None


BASE = {"title": "南沙网约车订单", "owner_org": ORG, "license_id": "CC-BY-4.0",
        "access": "open", "domain": "transport"}  # fmt: skip


def rows(cols: list[dict], exps: list[dict]) -> dict[str, str]:
    """The section's fields as the form posts them."""
    out = {"col_rows": str(len(cols)), "exp_rows": str(len(exps))}
    for i, c in enumerate(cols):
        out.update({f"col-{i}-{k}": str(v) for k, v in c.items()})
    for i, x in enumerate(exps):
        out.update({f"exp-{i}-{k}": str(v) for k, v in x.items()})
    return out


COLS = [
    {"name": "order_id", "type": "string", "description": "订单号"},
    {"name": "phone", "type": "string", "description": "乘客手机号", "pii": "phone",
     "pii_treatment": "hmac", "sensitive": "1"},
    {"name": "fare", "type": "float", "description": "车费"},
    {"name": "", "type": "", "description": "", "pii": "", "pii_treatment": "hmac"},  # blank
]  # fmt: skip
EXPS = [
    {"kind": "not_null", "column": "order_id"},
    {"kind": "between", "column": "fare", "min": "5", "max": "1000", "mostly": "0.99",
     "description": "一般车费"},
    {"kind": "in_set", "column": "order_id", "value": "A1, A2, A3"},
    {"kind": "row_count", "min": "1", "max": ""},
    {"kind": "json", "value": '{"gx": "expect_column_stdev_to_be_between", "column": "fare", '
     '"max_value": 500}'},
    {"kind": "", "column": ""},  # blank
]  # fmt: skip
DECLARED = {
    "schema": [
        {"name": "order_id", "type": "string", "description": "订单号"},
        {"name": "phone", "type": "string", "pii": "phone", "description": "乘客手机号",
         "pii_treatment": "hmac", "sensitive": True},
        {"name": "fare", "type": "float", "description": "车费"},
    ],
    "expectations": [
        {"column": "order_id", "not_null": True},
        {"column": "fare", "between": [5, 1000], "mostly": 0.99, "description": "一般车费"},
        {"column": "order_id", "in_set": ["A1", "A2", "A3"]},
        {"row_count": {"between": [1, None]}},
        {"gx": "expect_column_stdev_to_be_between", "column": "fare", "max_value": 500},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def rides(site) -> str:
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-rides", **BASE, **rows(COLS, EXPS)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[-2000:]
    return "nansha-rides"


def test_create_with_columns_and_checks_keeps_them_as_datasets_yaml_writes_them(site, rides):
    pkg = show(site, rides)
    assert pkg["nsdx"]["declared"] == DECLARED
    assert "nsdx_declared" not in {e["key"] for e in pkg["extras"]}  # not a CKAN extra


def test_the_edit_page_shows_the_declaration_as_rows(site, rides):
    login(site, "alice")
    html = site.get(f"/dataset/{rides}/edit").text
    assert 'name="col_rows" value="6"' in html  # three declared, three empty
    assert 'id="col-1-name" name="col-1-name" value="phone"' in html
    assert re.search(r'<option value="phone" selected>是：电话号码</option>', html)
    assert re.search(r'id="col-1-sensitive" name="col-1-sensitive" value="1" checked', html)
    assert 'id="exp-1-min" name="exp-1-min" value="5"' in html
    assert 'id="exp-2-value" name="exp-2-value" value="A1, A2, A3"' in html
    assert re.search(r'<option value="json" selected>', html)  # the gx entry, as JSON
    assert html.count('class="decl-row') == 6 + 8


def _edit(site, tok, name, cols, exps, **extra):
    html = site.get(f"/dataset/{name}/edit").text
    modified = re.search(r'name="modified" value="([^"]*)"', html).group(1)
    title = re.search(r'id="ed-title" name="title" type="text" value="([^"]*)"', html).group(1)
    data = {"csrftoken": tok, "modified": modified, "title": title, "license_id": "CC-BY-4.0",
            "domain": "transport", **rows(cols, exps), **extra}  # fmt: skip
    return site.post(f"/dataset/{name}/edit", data=data, follow_redirects=False)


BAD_ROWS = [  # (columns, checks, the refused input's id, Chinese message, English message)
    ([{"name": "x", "type": "text"}], [], "col-0-type", "列 'x' 的类型 'text' 不是以下之一",
     "type 'text' of column 'x' is not one of"),
    ([{"name": "x", "pii": "passport"}], [], "col-0-pii", "个人信息类别 'passport' 不是以下之一",
     "pii 'passport' is not one of"),
    ([{"name": "p", "pii": "phone", "pii_treatment": "keep"}], [], "col-0-pii_treatment",
     "开放数据不能原样发布个人信息：p", "open data cannot publish personal data unmasked"),
    ([{"name": "p", "pii": "phone", "pii_treatment": "reveal"}], [], "col-0-pii_treatment",
     "发布方式 'reveal' 不是以下之一", "pii_treatment 'reveal' is not one of"),
    ([{"name": "p", "sensitive": "1"}], [], "col-0-sensitive", "只有声明为个人信息的列",
     "Only a column declared as personal data"),
    ([{"name": "a"}, {"name": "a"}], [], "col-1-name", "列 a 被声明了两次", "Column a is declared twice"),
    ([{"name": "", "description": "无名"}], [], "col-0-name", "每个列声明至少须有名称",
     "each schema entry needs at least name:"),
    ([{"name": "d", "description": "长" * 2001}], [], "col-0-description",
     "description：须为不超过 2000 个字符的文本", "description: must be text of at most 2000"),
    ([], [{"kind": "between", "column": "fare", "min": "9", "max": "1"}], "exp-0-kind",
     "最小值 9 大于最大值 1", "min 9 is greater than max 1"),
    ([], [{"kind": "between", "column": "fare"}], "exp-0-kind", "[null, null] 什么也不检查",
     "[null, null] checks nothing"),
    ([], [{"kind": "not_null"}], "exp-0-kind", "“not_null”须指定列", "'not_null' needs 'column: <name>'"),
    ([], [{"kind": "row_count", "min": "1.5"}], "exp-0-kind", "行数的上下限须为不小于 0 的整数",
     "row_count bounds must be whole numbers >= 0"),
    ([], [{"kind": "regex", "column": "a", "value": "(["}], "exp-0-kind", "不是有效的正则表达式",
     "not a valid regular expression"),
    ([], [{"kind": "in_set", "column": "a", "value": " , "}], "exp-0-kind", "“in_set”须为非空列表",
     "'in_set' must be a non-empty list"),
    ([], [{"kind": "not_null", "column": "a", "mostly": "2"}], "exp-0-mostly",
     "通过比例（mostly）须为大于 0、不大于 1 的数", "mostly must be a number in (0, 1]"),
    ([], [{"kind": "row_count", "min": "1", "mostly": "0.5"}], "exp-0-mostly",
     "“row_count”不能设置通过比例", "mostly does not apply to 'row_count'"),
    ([], [{"kind": "freshness", "column": "t", "value": "-3"}], "exp-0-kind",
     "“freshness”须为 {max_age_days: N}", "'freshness' must be {max_age_days: N}"),
    ([], [{"kind": "json", "value": '{"betwen": [1, 2], "column": "a"}'}], "exp-0-kind",
     "未知的检查项 'betwen'", "unknown expectation key 'betwen'"),
    ([], [{"kind": "json", "value": "not json"}], "exp-0-value", "请填写一个 JSON 对象",
     "Write one JSON object"),
    ([], [{"kind": "json", "value": "[" * 100_000}], "exp-0-value", "请填写一个 JSON 对象",
     "Write one JSON object"),
]  # fmt: skip


@pytest.mark.parametrize(("cols", "exps", "field", "zh", "en"), BAD_ROWS)
def test_each_refused_entry_is_marked_in_both_languages_and_nothing_is_saved(
    site, rides, cols, exps, field, zh, en
):
    tok = login(site, "alice")
    before = show(site, rides)
    r = _edit(site, tok, rides, cols, exps)
    assert r.status_code == 422
    assert "未保存：请检查标出的字段。" in r.text
    err = re.search(rf'<span class="field-error" id="{field}-err">([^<]*)</span>', r.text)
    assert err and zh in unescape(err.group(1)), r.text[-3000:]
    assert re.search(
        rf'id="{field}"[^>]*aria-invalid="true" aria-describedby="{field}-err"', r.text
    )
    for i, c in enumerate(cols):  # the form is kept as it was sent
        if c.get("name"):
            assert f'id="col-{i}-name" name="col-{i}-name" value="{c["name"]}"' in r.text
    after = show(site, rides)
    assert after["nsdx"]["declared"] == before["nsdx"]["declared"] == DECLARED
    assert after["metadata_modified"] == before["metadata_modified"]
    site.cookies.set("nsdx_lang", "en")
    r = _edit(site, tok, rides, cols, exps)
    site.cookies.delete("nsdx_lang")
    assert r.status_code == 422
    assert en in unescape(r.text)


def test_the_api_refuses_the_same_entries_with_the_same_messages(site, rides):
    """One rule: the Action API's package_patch and datasets.yaml's checks say the same."""
    r = site.post(
        "/api/3/action/package_patch",
        json={"id": rides, "schema": [{"name": "p", "pii": "phone", "pii_treatment": "keep"}],
              "expectations": [{"column": "fare", "between": [9, 1]}]},
        headers={**JSON, "authorization": site.alice_token},
    )  # fmt: skip
    assert r.status_code == 409  # CKAN's Validation Error
    err = r.json()["error"]
    assert err["schema"] == [{"pii_treatment": [
        "open data cannot publish personal data unmasked: pii_treatment: keep on p"]}]  # fmt: skip
    assert err["expectations"] == [{"between": ["'between': min 9 is greater than max 1"]}]
    from ingest.errors import ConfigError
    from ingest.spec import parse_specs

    yaml = """datasets:
  - {id: x-data, title: X, domain: transport, organization: nansha-transport-bureau,
     source: {path: x.csv, format: csv}, schema: [{name: p, type: text}]}
"""
    with pytest.raises(ConfigError, match="type 'text' of column 'p' is not one of"):
        parse_specs(yaml)


def test_saving_replaces_the_declaration_and_a_stale_tab_is_refused(site):
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-stale", **BASE,
              **rows([{"name": "a", "type": "integer"}], [])},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    first = site.get("/dataset/nansha-stale/edit").text  # tab 1 opens the form
    old = re.search(r'name="modified" value="([^"]*)"', first).group(1)
    r = _edit(site, tok, "nansha-stale", [{"name": "a", "type": "float", "description": "新"}],
              [{"kind": "unique", "column": "a"}])  # fmt: skip
    assert r.status_code == 303  # tab 2 saves
    saved = show(site, "nansha-stale")["nsdx"]["declared"]
    assert saved == {"schema": [{"name": "a", "type": "float", "description": "新"}],
                     "expectations": [{"column": "a", "unique": True}]}  # fmt: skip
    r = site.post(
        "/dataset/nansha-stale/edit",
        data={"csrftoken": tok, "modified": old, "title": "南沙网约车订单",
              "license_id": "CC-BY-4.0", "domain": "transport",
              **rows([{"name": "a", "type": "string"}], [])},
    )  # fmt: skip
    assert r.status_code == 409  # tab 1's stale form: refused, its rows kept
    assert "数据集在您打开此表单后已被修改" in r.text or "已被修改" in r.text
    assert re.search(r'id="col-0-type" name="col-0-type"><option value="">[^<]*</option>'
                     r'<option value="string" selected>', r.text)  # fmt: skip
    assert show(site, "nsdx-stale" if False else "nansha-stale")["nsdx"]["declared"] == saved


def test_more_rows_adds_empty_rows_and_saves_nothing(site, rides):
    tok = login(site, "alice")
    before = show(site, rides)["metadata_modified"]
    r = _edit(site, tok, rides, [{"name": "kept-name"}], [], more="1")
    assert r.status_code == 200
    assert 'name="col_rows" value="6"' in r.text  # the row sent and five new ones
    assert 'value="kept-name"' in r.text
    assert show(site, rides)["metadata_modified"] == before
    r = site.post("/my/datasets/new", data={"csrftoken": tok, "name": "nansha-more", **BASE,
                                            **rows([{"name": "z"}], []), "more": "1"})  # fmt: skip
    assert r.status_code == 200 and 'value="z"' in r.text and show(site, "nansha-more") is None


def test_a_refused_create_keeps_the_rows_and_creates_nothing(site):
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-refused", **BASE,
              **rows([{"name": "p", "pii": "phone", "pii_treatment": "keep"}],
                     [{"kind": "between", "column": "p", "min": "3", "max": "1"}])},
    )  # fmt: skip
    assert r.status_code == 422
    assert 'id="col-0-pii_treatment-err">开放数据不能原样发布个人信息' in r.text
    assert 'id="exp-0-kind-err">“between”：最小值 3 大于最大值 1' in r.text
    assert 'id="nd-title" name="title" type="text" value="南沙网约车订单"' in r.text
    assert show(site, "nansha-refused") is None
    # restricted data may keep a personal column as it is
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-refused", **BASE, "access": "restricted",
              **rows([{"name": "p", "pii": "phone", "pii_treatment": "keep"}], [])},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    assert show(site, "nansha-refused")["nsdx"]["declared"]["schema"][0]["pii_treatment"] == "keep"


def test_only_the_datasets_editors_may_change_it(site, rides):
    tok = login(site, "mallory")  # an admin of another organisation
    assert site.get(f"/dataset/{rides}/edit").status_code == 403
    r = site.post(f"/dataset/{rides}/edit", data={"csrftoken": tok, "title": "x",
                                                  **rows([{"name": "a"}], [])})  # fmt: skip
    assert r.status_code == 403
    assert show(site, rides)["nsdx"]["declared"] == DECLARED
    site.cookies.clear()  # signed out: sent to sign in
    r = site.get(f"/dataset/{rides}/edit", follow_redirects=False)
    assert r.status_code in (302, 303) and "/user/login" in r.headers["location"]


def test_a_form_without_its_csrf_token_is_refused(site, rides):
    tok = login(site, "alice")
    html = site.get(f"/dataset/{rides}/edit").text
    modified = re.search(r'name="modified" value="([^"]*)"', html).group(1)
    data = {"modified": modified, "title": "x", **rows([{"name": "a"}], [])}
    r = site.post(f"/dataset/{rides}/edit", data=data)
    assert r.status_code == 403
    r = site.post(f"/dataset/{rides}/edit", data={"csrftoken": tok[:-2] + "xx", **data})
    assert r.status_code == 403
    assert show(site, rides)["nsdx"]["declared"] == DECLARED


def test_the_next_upload_is_masked_and_checked_as_declared(site):
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-calls", **BASE,
              **rows([{"name": "phone", "type": "string", "pii": "phone", "pii_treatment": "hmac"},
                      {"name": "minutes", "type": "integer"}],
                     [{"kind": "between", "column": "minutes", "min": "0", "max": "60",
                       "description": "一小时内"}])},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    csv = "phone,minutes\n13800138000,5\n13912345678,12\n"
    r = site.post(
        "/dataset/nansha-calls/upload",
        data={"csrftoken": tok},
        files={"upload": ("calls.csv", csv.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 303
    job_id = r.headers["location"].rsplit("/", 1)[1]
    acc = Accounts(site.nx.catalogue)
    deadline = time.monotonic() + 600
    while True:
        job = site.nx.jobs.show(job_id, acc.principal("alice"))
        if job["status"] in ("finished", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["status"] == "finished", job
    assert job["result"]["status"] == "published"
    pkg = show(site, "nansha-calls")
    schema = {c["name"]: c for c in pkg["resources"][0]["nsdx_schema"]}
    assert schema["phone"]["pii"] == "phone"
    page = site.get("/dataset/nansha-calls").text
    assert "13800138000" not in page and "13912345678" not in page  # masked as published
    report = unescape(site.get("/dataset/nansha-calls/quality").text)
    assert "minutes between [0, 60]" in report  # the declared check ran and is reported
    assert "13800138000" not in report
    from validation.pii import mask_value

    key = site.nx.pii_key()[0]
    assert mask_value("13800138000", "phone", key) in page  # the preview shows its token
    assert pkg["nsdx"]["classification"]["has_pi"] is True


def _wait_job(site, job_id: str) -> dict:
    acc = Accounts(site.nx.catalogue)
    deadline = time.monotonic() + 600
    while True:
        job = site.nx.jobs.show(job_id, acc.principal("alice"))
        if job["status"] in ("finished", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_a_check_on_a_column_the_file_lacks_fails_the_upload_saying_which(site):
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-typo", **BASE,
              **rows([], [{"kind": "not_null", "column": "minutse"}])},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    r = site.post(
        "/dataset/nansha-typo/upload",
        data={"csrftoken": tok},
        files={"upload": ("t.csv", b"minutes\n5\n", "text/csv")},
        follow_redirects=False,
    )
    job_id = r.headers["location"].rsplit("/", 1)[1]
    job = _wait_job(site, job_id)
    assert job["status"] == "failed" and "minutse" in job["error"]
    page = site.get(f"/my/jobs/{job_id}").text
    assert "minutse" in page and show(site, "nansha-typo")["nsdx"]["versions"] == []


def test_datasets_yaml_declaration_is_kept_for_portal_uploads(site):
    """`nsdx ingest` keeps datasets.yaml's columns and checks with the dataset: its edit
    form shows them and an upload through the portal is masked and checked the same way."""
    from catalogue.jobs import spec_for_upload
    from ingest.spec import parse_specs

    spec = parse_specs("""datasets:
  - id: nansha-yaml-calls
    title: 热线
    domain: society
    organization: nansha-transport-bureau
    source: {path: x.csv, format: csv}
    schema:
      - {name: caller, type: string, pii: phone, unit: none, description: 来电}
    expectations:
      - {column: caller, not_null: true}
      - {column: day, min: {between: [2026-03-01, null]}}
""")[0]  # fmt: skip
    cat = site.nx.catalogue
    with cat.Session.begin() as s:
        cat.upsert_from_spec(s, spec)
    declared = show(site, "nansha-yaml-calls")["nsdx"]["declared"]
    assert declared["schema"] == [{"name": "caller", "type": "string", "pii": "phone",
                                   "unit": "none", "description": "来电",
                                   "pii_treatment": "hmac"}]  # fmt: skip
    assert declared["expectations"][1] == {
        "column": "day",
        "min": {"between": ["2026-03-01", None]},
    }
    up = spec_for_upload(cat, "nansha-yaml-calls", "/nonexistent/x.csv", "csv")
    assert [(f.name, f.pii, f.pii_treatment, f.unit) for f in up.schema] == [
        ("caller", "phone", "hmac", "none")
    ]
    assert up.expectations[0] == {"column": "caller", "not_null": True}
    assert up.from_catalogue
    login(site, "alice")
    html = site.get("/dataset/nansha-yaml-calls/edit").text
    assert 'id="col-0-name" name="col-0-name" value="caller"' in html
    assert 'name="col-0-unit" value="none"' in html  # kept through the form


def test_an_update_that_names_neither_keeps_the_declaration(site):
    """A title fix through the API (patch, or update with a package dict without them)
    never unmasks a column: the kept declaration stays."""
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-keep", **BASE,
              **rows([{"name": "p", "pii": "phone"}], [{"kind": "unique", "column": "p"}])},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    want = show(site, "nansha-keep")["nsdx"]["declared"]
    auth = {**JSON, "authorization": site.alice_token}
    r = site.post("/api/3/action/package_patch", json={"id": "nansha-keep", "title": "改名"},
                  headers=auth)  # fmt: skip
    assert r.status_code == 200, r.text
    r = site.post("/api/3/action/package_update", headers=auth,
                  json={"id": "nansha-keep", "name": "nansha-keep", "title": "再改", "owner_org": ORG})  # fmt: skip
    assert r.status_code == 200, r.text
    got = show(site, "nansha-keep")
    assert got["title"] == "再改" and got["nsdx"]["declared"] == want
