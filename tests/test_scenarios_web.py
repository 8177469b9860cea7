"""Scenarios and registrations on every surface but the CLI: the CKAN API (scenarios as
groups, checked with the real ckanapi client against `nsdx serve`), the search facet, the
portal's pages in both languages, the public registration page and its certificate files
(no account needed), and the JSON API's refusals."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from catalogue.search import drop_indexes
from exchange.demo import run_demo
from nsdx import verify_receipt as vr
from nsdx.web.app import create_app
from tests.test_ckan_api import make_nsdx
from tests.test_registration import _verifier

HTML = {"accept": "text/html"}
# the demo's data products, and its core-data product offered cross-border
PRODUCTS = {"zhixing-congestion-forecast", "haiyun-port-logistics-index", "lingang-demand-heatmap",
            "haiyun-port-operations-core"}  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenarios-web")
    nx = make_nsdx(tmp, f"sqlite:///{tmp / 'nsdx.db'}")
    run_demo(nx.exchange)  # firms, products, three scenarios, five registrations, trades
    with TestClient(create_app(nx, warm=False, worker=False)) as c:
        c.nx, c.tmp = nx, tmp
        yield c
    drop_indexes()


def _codes(site) -> dict[str, str]:
    regs = site.get("/api/exchange/registrations").json()
    return {r["dataset"]: r["code"] for r in regs}


def test_ckan_groups_are_the_scenarios(site):
    api = "/api/3/action/"
    names = site.get(api + "group_list").json()["result"]
    assert {"nansha-travel-demand", "nansha-low-altitude-safety",
            "nansha-port-city-ai-products"} <= set(names)  # fmt: skip
    full = site.get(api + "group_list", params={"all_fields": "true"}).json()["result"]
    g = next(x for x in full if x["name"] == "nansha-port-city-ai-products")
    assert g["package_count"] == 4 and g["type"] == "group" and not g["is_organization"]
    extras = {e["key"]: e["value"] for e in g["extras"]}
    assert extras["sector"] == "logistics" and extras["title_en"]
    shown = site.get(api + "group_show", params={"id": "nansha-travel-demand",
                     "include_datasets": "true"}).json()["result"]  # fmt: skip
    assert [p["name"] for p in shown["packages"]] == ["nansha-ride-hailing-orders"]
    pkg = site.get(api + "package_show", params={"id": "nansha-ride-hailing-orders"}).json()
    assert [x["name"] for x in pkg["result"]["groups"]] == ["nansha-travel-demand"]
    found = site.get(
        api + "package_search",
        params={"fq": "groups:nansha-port-city-ai-products", "facet.field": '["groups"]'},
    ).json()
    assert {p["name"] for p in found["result"]["results"]} == PRODUCTS
    assert found["result"]["facets"]["groups"] == {"nansha-port-city-ai-products": 4}
    missing = site.get(api + "group_show", params={"id": "no-such-scenario"})
    assert missing.status_code == 404 and missing.json()["error"]["__type"] == "Not Found Error"


def test_ckanapi_client_sees_the_scenarios(tmp_path, nsdx_env):
    """The real ckanapi client against `nsdx serve` (a subprocess on a free port)."""
    import ckanapi

    from tests.test_ckan_client import start_server

    url = f"sqlite:///{tmp_path / 'nsdx.db'}"
    home = tmp_path / "home"
    nx = make_nsdx(tmp_path, url)
    run_demo(nx.exchange)
    server = start_server(home, url, org=False)
    try:
        ck = ckanapi.RemoteCKAN(server.url)
        assert "nansha-low-altitude-safety" in ck.action.group_list()
        g = ck.action.group_show(id="nansha-low-altitude-safety", include_datasets=True)
        assert [p["name"] for p in g["packages"]] == ["nansha-drone-flight-logs"]
        assert g["nsdx"]["sector"] == "low-altitude" and g["title"] == "南沙低空飞行安全监测"
        r = ck.action.package_search(fq="groups:nansha-low-altitude-safety")
        assert r["count"] == 1
        with pytest.raises(ckanapi.NotFound):
            ck.action.group_show(id="nope")
    finally:
        server.stop()
        drop_indexes()


def test_portal_scenario_pages_in_both_languages(site):
    r = site.get("/scenarios", headers=HTML)
    assert r.status_code == 200 and "应用场景" in r.text and "南沙出行需求预测" in r.text
    page = site.get("/scenario/nansha-port-city-ai-products", headers=HTML).text
    assert all(f'href="/dataset/{p}"' in page for p in PRODUCTS)
    assert "NSDR-" in page  # its registered products
    site.get("/lang/en?next=/scenarios")
    try:
        en = site.get("/scenarios", headers=HTML).text
        assert "Application scenarios" in en and "Travel-demand forecasting in Nansha" in en
        assert "应用场景库" not in en
    finally:
        site.get("/lang/zh_CN?next=/")
    assert site.get("/scenario/nope", headers=HTML).status_code == 404


def test_search_facet_and_dataset_page_used_by(site):
    home = site.get("/", headers=HTML).text
    assert "应用场景" in home and "南沙港城智能数据产品" in home  # the facet, by title
    r = site.get("/?groups=nansha-port-city-ai-products", headers=HTML).text
    assert "4 个数据集" in r
    codes = _codes(site)
    page = site.get("/dataset/nansha-ride-hailing-orders", headers=HTML).text
    assert 'href="/scenario/nansha-travel-demand"' in page
    code = codes["nansha-ride-hailing-orders"]
    assert f'href="/registration/{code}"' in page


def test_anyone_checks_a_certificate_without_an_account(site):
    code = _codes(site)["nansha-drone-flight-logs"]
    r = site.get(f"/registration/{code}", headers=HTML)
    assert r.status_code == 200 and code in r.text and "已登记" in r.text
    reg = site.get(f"/api/exchange/registrations/{code}").json()
    rid = reg["id"]
    proof = site.get(f"/registration/{rid}/proof.json").json()
    entry = site.get(f"/registration/{rid}/entry.json").content
    _verifier()(proof, entry)  # the independent verifier of docs/ledger.md
    assert json.loads(entry)["code"] == code and proof["index"] == reg["ledger_index"]
    # the same file is a receipt: verify_receipt.py checks it with the checkpoint's signature
    assert proof["entry"] == json.loads(entry)
    key = site.get("/api/audit/pubkey").text.strip()
    assert key == site.nx.exchange.signer.verifier_key
    assert vr.verify_receipt(proof, None, log_key=key)["index"] == reg["ledger_index"]
    forged = {**proof, "entry": {**proof["entry"], "holder": "someone-else"}}
    with pytest.raises(vr.Failed, match="entry was altered"):
        vr.verify_receipt(forged, None, log_key=key)
    pdf = site.get(f"/registration/{code}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    html = site.get(f"/registration/{code}/certificate.html").text
    assert f"http://testserver/registration/{code}" in html and "<svg" in html
    assert site.get("/registration/NSDR-1999-000001", headers=HTML).status_code == 404
    assert code in site.get("/registrations", headers=HTML).text


def test_json_api_refuses_anonymous_steps(site):
    r = site.post("/api/exchange/registrations", json={"dataset": "lingang-demand-heatmap",
                  "scenario": "nansha-port-city-ai-products", "compliance_statement": "x",
                  "legality_pledge": "y"})  # fmt: skip
    assert r.status_code == 403 and r.json()["error"]["error"] == "NotAllowed"
    listed = site.get("/api/scenarios").json()
    assert {s["name"] for s in listed} >= {"nansha-travel-demand"}
    assert "lodged_by" not in json.dumps(site.get("/api/exchange/registrations").json())


def test_a_signed_in_visitor_objects_from_the_portal(site):
    """During the public notice the registration page has an objection form (signed in,
    CSRF-checked); the objection is the same ledger event as through the CLI and API."""
    from catalogue.auth import Accounts
    from catalogue.models import Dataset
    from catalogue.scenarios import ScenarioSpec, save_scenarios
    from catalogue.signin import set_password
    from exchange import registration as reg
    from exchange.actors import Actor
    from tests.test_portal_pages import PASSWORD, login

    ex = site.nx.exchange
    with ex.catalogue.Session.begin() as s:
        org = ex.catalogue.ensure_organization(s, "nansha-transport-bureau")
        s.add(Dataset(name="ns-signal-plans", title="信号配时方案", domain="transport",
                      access="restricted", organization=org, extras={}))  # fmt: skip
    save_scenarios(ex.catalogue, [ScenarioSpec(name="ns-objection-test", title="异议测试",
                   title_en="Objection test", sector="other", proposer="p",
                   datasets=[("ns-signal-plans", None)])])  # fmt: skip
    a = reg.apply(ex, Actor.for_org("nansha-transport-bureau"), "ns-signal-plans",
                  scenario="ns-objection-test", compliance_statement="c", legality_pledge="p")  # fmt: skip
    reg.review(ex, Actor(name="rev", reviewer=True), a["id"], approve=True)
    page = site.get(f"/registration/{a['id']}", headers=HTML).text
    assert "公示中" in page and "登录后可提出异议" in page
    acc = Accounts(site.nx.catalogue)
    acc.create_user("citizen")
    set_password(acc, "citizen", PASSWORD)
    tok = login(site, "citizen")
    try:
        empty = site.post(f"/registration/{a['id']}/objection",
                          data={"csrftoken": tok, "reason": " "}, headers=HTML)  # fmt: skip
        assert empty.status_code == 422 and "提出异议须写明理由" in empty.text
        assert (
            "an objection needs a reason" not in empty.text
        )  # the Chinese page says it in Chinese
        r = site.post(f"/registration/{a['id']}/objection", headers=HTML,
                      data={"csrftoken": tok, "reason": "该数据含未授权采集的信息"},
                      follow_redirects=False)  # fmt: skip
        assert r.status_code == 303
        after = site.get(f"/registration/{a['id']}", headers=HTML).text
        assert "有异议" in after and "该数据含未授权采集的信息" in after
        shown = reg.show(ex, a["id"], actor=Actor.operator(), full=True)
        assert shown["objections"][0]["lodged_by"] == "citizen" and shown["status"] == "objected"
        entry = ex.ledger.entry(ex.ledger.head_size() - 1)["payload"]
        assert entry["type"] == "registration.objection" and entry["actor"] == "citizen"
    finally:
        site.post("/user/logout", data={"csrftoken": tok}, headers=HTML)


def test_hidden_datasets_registrations_answer_like_missing_ones(site):
    """Review finding 5: the register follows the catalogue's access rule. A private
    dataset's registration, and an application still awaiting review, are not on the
    anonymous register, its pages or a scenario's page; asking for them by dataset or id
    answers exactly as for ones that do not exist. The holder and the reviewers see them."""
    from catalogue.models import Dataset
    from catalogue.scenarios import ScenarioSpec, save_scenarios
    from exchange import registration as reg
    from exchange.actors import Actor

    ex = site.nx.exchange
    org = "nansha-transport-bureau"
    with ex.catalogue.Session.begin() as s:
        o = ex.catalogue.ensure_organization(s, org)
        s.add(
            Dataset(
                name="ns-hidden-plans",
                title="机密配时方案",
                domain="transport",
                access="restricted",
                private=True,
                organization=o,
                extras={},
            )
        )
        s.add(Dataset(name="ns-pending-plans", title="待审配时方案", domain="transport",
                      access="restricted", organization=o, extras={}))  # fmt: skip
    save_scenarios(ex.catalogue, [ScenarioSpec(name="ns-hidden-test", title="隐藏测试",
                   title_en="Hidden test", sector="other", proposer="p",
                   datasets=[("ns-hidden-plans", None), ("ns-pending-plans", None)])])  # fmt: skip
    holder, rev = Actor.for_org(org), Actor(name="rev", reviewer=True)
    hidden = reg.apply(ex, holder, "ns-hidden-plans", scenario="ns-hidden-test",
                       compliance_statement="秘密声明甲", legality_pledge="p")  # fmt: skip
    reg.review(ex, rev, hidden["id"], approve=True, note="秘密审核意见")
    pending = reg.apply(ex, holder, "ns-pending-plans", scenario="ns-hidden-test",
                        compliance_statement="待审声明乙", legality_pledge="p")  # fmt: skip
    secrets = ("机密配时方案", "秘密声明甲", "秘密审核意见", "待审配时方案", "待审声明乙",
               hidden["id"], pending["id"])  # fmt: skip
    for text in (site.get("/api/exchange/registrations").text,
                 site.get("/registrations", headers=HTML).text,
                 site.get("/scenario/ns-hidden-test", headers=HTML).text,
                 site.get("/api/exchange/registrations",
                          params={"scenario": "ns-hidden-test"}).text):  # fmt: skip
        assert not [x for x in secrets if x in text]
    # hidden and missing: the same answer, the name aside
    name = "ns-hidden-plans"
    r = site.get("/api/exchange/registrations", params={"dataset": name})
    m = site.get("/api/exchange/registrations", params={"dataset": name + "-nope"})
    assert (r.status_code, m.status_code) == (404, 404)
    assert r.text.replace(name, "X") == m.text.replace(name + "-nope", "X")
    r = site.get("/api/exchange/registrations", params={"dataset": "ns-pending-plans"})
    assert r.status_code == 200 and r.json() == []  # a public dataset; its application is not
    for rid in (hidden["id"], pending["id"]):
        r = site.get(f"/api/exchange/registrations/{rid}")
        m = site.get("/api/exchange/registrations/" + "f" * len(rid))
        assert (r.status_code, m.status_code) == (404, 404)
        assert r.text.replace(rid, "X") == m.text.replace("f" * len(rid), "X")
        assert site.get(f"/registration/{rid}", headers=HTML).status_code == 404
    # the holder sees both; another organisation only what its notice made public, here none
    for who, n in ((holder, 2), (rev, 2), (Actor.for_org("rival"), 0), (Actor("anonymous"), 0)):
        regs = reg.list_registrations(ex, actor=who, scenario="ns-hidden-test")
        assert len(regs) == n, who
    with ex.catalogue.Session.begin() as s:  # made public: its notice is on the register
        s.query(Dataset).filter(Dataset.name == "ns-hidden-plans").update({"private": False})
    shown = site.get("/api/exchange/registrations", params={"scenario": "ns-hidden-test"}).json()
    assert [r["id"] for r in shown] == [hidden["id"]]


def test_a_scenarios_datasets_follow_the_callers_token(site):
    """The JSON API judges its caller by the API token, the pages by the session: a member
    of the owning organisation sees the private dataset in the scenario through
    /api/scenarios with their token (before, the API judged the session cookie, so a token
    holder was treated as anonymous); without a token, or with an outsider's, it is left out."""
    from catalogue.auth import Accounts
    from catalogue.models import Dataset
    from catalogue.scenarios import ScenarioSpec, save_scenarios

    ex = site.nx.exchange
    org = "nansha-transport-bureau"
    with ex.catalogue.Session.begin() as s:
        o = ex.catalogue.ensure_organization(s, org)
        s.add(Dataset(name="ns-token-plans", title="令牌可见方案", domain="transport",
                      access="restricted", private=True, organization=o, extras={}))  # fmt: skip
    save_scenarios(ex.catalogue, [ScenarioSpec(name="ns-token-test", title="令牌测试",
                   title_en="Token test", sector="other", proposer="p",
                   datasets=[("ns-token-plans", None)])])  # fmt: skip
    acc = Accounts(site.nx.catalogue)
    for user in ("bureau-clerk", "outsider"):
        acc.create_user(user)
    acc.add_member(org, "bureau-clerk", "editor")
    member, _ = acc.create_token("bureau-clerk")
    outsider, _ = acc.create_token("outsider")

    def names(token: str | None, path: str) -> list[str]:
        headers = {"authorization": token} if token else {}
        r = site.get(path, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        one = (
            body
            if isinstance(body, dict)
            else next(x for x in body if x["name"] == "ns-token-test")
        )
        return [d["name"] for d in one["datasets"]]

    for path in ("/api/scenarios/ns-token-test", "/api/scenarios"):
        assert names(member, path) == ["ns-token-plans"]
        assert names(None, path) == []
        assert names(outsider, path) == []
