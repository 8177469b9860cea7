"""Every trade step refused on the portal says why in the visitor's language (issue 12,
item 2 and "Bad input"): creating and withdrawing an offer, placing an order, confirming the
payment, granting, refunding, recording cross-border evidence and downloading the Delta
Sharing profile. The exchange's core raises its errors as messages with a message id and
parameters (validation.messages.Msg, with the words of its vocabulary — states, routes,
rules, evidence kinds, regions, roles — as validation.messages.Term); the portal renders
them through the catalogue, the JSON API keeps the English text.

Each refusal is caused for real through the portal's forms (TestClient, real SQLite, the
real trade core); the page must show the Chinese sentence, not its English message id,
and the error paragraph must hold no English sentence at all."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.models import Dataset, Organization, Version
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from exchange import credit_code, trade
from exchange.actors import Actor
from exchange.crossborder import Region, Transfer, decide, load_policy
from exchange.crossborder.policy import DEFAULT_POLICY
from nsdx.web import i18n
from nsdx.web.app import create_app
from tests.registered import register
from tests.test_ckan_api import make_nsdx
from tests.test_portal_edit import PASSWORD, login

HTML = {"accept": "text/html"}
SELLER, HK, GZ = "bureau", "hk-firm", "gz-firm"


@pytest.fixture
def site(tmp_path, nsdx_env):
    nx = make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'nsdx.db'}")
    ex = nx.exchange
    acc = Accounts(nx.catalogue)
    for org in (SELLER, HK, GZ):
        acc.create_org(org, title=org)
    users = (("sam", {}), ("bo", {}), ("lo", {}), ("op", {"sysadmin": True}),
             ("aud", {"auditor": True}))  # fmt: skip
    for name, kw in users:
        acc.create_user(name, **kw)
        set_password(acc, name, PASSWORD)
    acc.add_member(SELLER, "sam", "editor")
    acc.add_member(HK, "bo", "member")
    acc.add_member(GZ, "lo", "member")
    with nx.catalogue.Session.begin() as s:
        org = s.query(Organization).filter_by(name=SELLER).one()
        for name in ("rides", "taxis"):  # taxis: in no scenario, never registered
            ds = Dataset(name=name, domain="transport", access="restricted", organization=org,
                         extras={}, current_version=1, grade="general", has_pi=True,
                         price_fen=100_000)  # fmt: skip
            s.add(ds)
            s.flush()
            s.add(Version(dataset_id=ds.id, number=1, prefix=f"bureau/{name}/v1",
                          storage_url="file://", fingerprint=name, manifest={}, validation={},
                          individuals=150_000))  # fmt: skip
    op = Actor.operator()
    trade.register_enterprise(ex, Actor.for_org(SELLER), SELLER, legal_name=SELLER,
                              credit_code_=credit_code.make("440115", "MA5ATKT1"))  # fmt: skip
    trade.register_enterprise(ex, op, HK, legal_name=HK, region="hong-kong",
                              credit_code_=credit_code.make("440115", "MA50XKT1"))  # fmt: skip
    trade.register_enterprise(ex, op, GZ, legal_name=GZ,
                              credit_code_=credit_code.make("440106", "MA59XKT2"))  # fmt: skip
    registered = register(ex, "rides", SELLER)
    with TestClient(create_app(nx, warm=False, worker=False)) as c:
        c.headers.update(HTML)
        c.nx, c.registration = nx, registered["id"]
        yield c
    drop_indexes()


ENGLISH_SENTENCE = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]{2,}){2,}")


def error_of(page: str, element: str) -> str:
    """The text of the page's error paragraph ``id=element``."""
    m = re.search(rf'id="{element}"[^>]*>(.*?)</p>', page, re.S)
    assert m, f"no #{element} on the page"
    return html.unescape(re.sub(r"<[^>]+>", " ", m.group(1)))


def refused(r, element: str, chinese: str, english: str, status: int) -> str:
    """The step was refused with ``status``, the page says ``chinese``, never ``english``
    (the message id), and its error paragraph holds no English sentence once the names and
    commands it quotes (data, not language: 'taxis', `nsdx ...`) are left out."""
    assert r.status_code == status, (r.status_code, error_of(r.text, element))
    text = error_of(r.text, element)
    assert chinese in text, text
    assert english not in html.unescape(r.text)
    assert not ENGLISH_SENTENCE.search(re.sub(r"`[^`]*`|'[^']*'", "", text)), text
    return text


def offer(tok, **kw) -> dict:
    return {"csrftoken": tok, "dataset": "rides", "price": "1000.00", **kw}


def test_every_trade_step_refused_in_chinese_then_in_english(site):
    ex = site.nx.exchange
    sell = "/exchange/offers"
    # -- creating an offer ------------------------------------------------------------------
    tok = login(site, "sam")
    r = site.post(sell, data=offer(tok, dataset="taxis"))
    refused(r, "offer-error", "数据集 'taxis' 不能发布报价：没有应用场景使用它，且尚未登记——"
            "无场景不登记、无登记不交易", "cannot be offered", 409)  # fmt: skip
    r = site.post(sell, data=offer(tok, term_start="2026-02-30"))
    refused(r, "offer-error", "期限开始日期：'2026-02-30' 不是有效日期", "is not a date", 422)
    r = site.post(sell, data=offer(tok, price="5000000000"))
    refused(r, "offer-error", "价格：¥5,000,000,000.00 超过交易所允许的最高金额 "
            "¥1,000,000,000.00", "is above the exchange's maximum", 422)  # fmt: skip
    r = site.post(sell, data=offer(tok, price="12.345"))
    refused(r, "offer-error", "价格：'12.345' 含有不足一分的金额（最多两位小数）",
            "has a fraction of a fen", 422)  # fmt: skip
    assert 'value="12.345"' in r.text  # the form is kept
    tok = login(site, "bo")  # a buyer cannot sell the bureau's data
    assert site.get("/dataset/rides").status_code == 200
    r = site.post(sell, data=offer(tok))
    refused(r, "offer-error", "bo 不能为数据集 'rides' 发布报价：只有卖方机构 'bureau' 可以",
            "only the seller organisation", 403)  # fmt: skip
    # -- withdrawing an offer ---------------------------------------------------------------
    local = trade.create_offer(ex, Actor.for_org(SELLER), "rides")["id"]  # not cross-border
    gone = trade.create_offer(ex, Actor.for_org(SELLER), "rides")["id"]
    trade.withdraw_offer(ex, Actor.for_org(SELLER), gone)
    tok = login(site, "sam")
    r = site.post(f"/exchange/offers/{gone}/withdraw", data={"csrftoken": tok, "dataset": "rides"})
    refused(r, "offer-error", f"报价 {gone} 当前状态为“已撤回”", "is already withdrawn", 409)
    # -- placing an order -------------------------------------------------------------------
    order = {"csrftoken": tok, "dataset": "rides", "buyer": SELLER}
    r = site.post("/exchange/orders", data={**order, "offer": local})
    refused(r, "order-error", "“bureau”不能购买自己的报价", "cannot buy its own offer", 403)
    tok = login(site, "bo")
    order = {"csrftoken": tok, "dataset": "rides", "buyer": HK}
    r = site.post("/exchange/orders", data={**order, "offer": gone})
    refused(r, "order-error", f"报价 {gone} 的状态为“已撤回”", "is withdrawn", 409)
    r = site.post("/exchange/orders", data={**order, "offer": local, "contract_no": "HK-1"})
    refused(r, "order-error", "拒绝跨境销售（报价未允许出境）：该报价不允许跨境销售，而买方位于香港",
                   "the offer is not made for cross-border sale", 403)  # fmt: skip
    assert 'value="HK-1"' in r.text  # the form is kept
    # -- the seller's steps on an order that is only placed ---------------------------------
    xb = trade.create_offer(ex, Actor.for_org(SELLER), "rides", cross_border=True)["id"]
    hk = trade.place_order(ex, Actor.for_org(HK, "member"), xb, buyer=HK)["id"]
    gz = trade.place_order(ex, Actor.for_org(GZ, "member"), local, buyer=GZ)["id"]
    r = site.post(f"/my/orders/{hk}/payment", data={"csrftoken": tok})  # bo is the buyer
    refused(r, "order-error", "bo 不能确认此订单的付款：只有卖方机构 'bureau' 可以",
            "cannot confirm payment of this order", 403)  # fmt: skip
    assert "请以 'bureau' 的管理员或编辑身份操作" in html.unescape(r.text)
    tok = login(site, "sam")
    step = f"/my/orders/{gz}"
    r = site.post(f"{step}/grant", data={"csrftoken": tok})
    refused(r, "order-error", f"订单 {gz} 的状态为“已下单”；付款后方可授予访问权限",
            "access is granted after payment", 409)  # fmt: skip
    assert "请先确认付款" in r.text
    r = site.post(f"{step}/refund", data={"csrftoken": tok, "reason": "x"})
    refused(r, "order-error", f"订单 {gz} 的状态为“已下单”；只有已付款的订单可以退款",
            "only paid orders are refunded", 409)  # fmt: skip
    r = site.post(f"{step}/payment", data={"csrftoken": tok, "paid_on": "2099-01-01"})
    refused(r, "order-error", "付款日期 2099-01-01 是未来的日期（今天是", "is in the future", 422)
    r = site.post(f"{step}/payment", data={"csrftoken": tok, "amount": "1.00"})
    refused(r, "order-error", "付款金额 ¥1.00 与订单金额 ¥1,000.00 不符",
            "does not match the order amount", 422)  # fmt: skip
    assert "一笔付款结清一个订单" in r.text
    r = site.post(f"{step}/evidence", data={"csrftoken": tok, "kind": "pia",
                                           "evidence_ref": "PIA-2025-NS-0007"})  # fmt: skip
    refused(r, "order-error", f"订单 {gz} 无需办理出境手续（不是出境订单）",
            "needs no cross-border procedure", 409)  # fmt: skip
    # a second tab confirms the payment; the first tab's stale form is refused as such
    assert site.post(f"{step}/payment", data={"csrftoken": tok}).status_code == 200
    r = site.post(f"{step}/payment", data={"csrftoken": tok})
    refused(
        r, "order-error", f"订单 {gz} 的状态为“已付款”，不在等待付款", "not awaiting payment", 409
    )
    # -- cross-border: the grant waits for the evidence, in the policy's form ---------------
    step = f"/my/orders/{hk}"
    trade.confirm_payment(ex, Actor.for_org(SELLER), hk)
    r = site.post(f"{step}/grant", data={"csrftoken": tok})
    refused(r, "order-error", f"订单 {hk} 须经大湾区标准合同（大湾区（内地、香港）标准合同）："
            "登记个人信息保护影响评估（PIA）之前不能授予访问权限",
            "access cannot be granted until", 409)  # fmt: skip
    r = site.post(f"{step}/evidence", data={"csrftoken": tok, "kind": "pia",
                                           "evidence_ref": "PIA 7"})  # fmt: skip
    refused(r, "order-error", "编号：'PIA 7' 不是有效的个人信息保护影响评估（PIA）",
            "is not a pia reference", 422)  # fmt: skip
    r = site.post(f"{step}/evidence", data={"csrftoken": tok, "kind": "gba_filing",
                                           "evidence_ref": "GBA-SCC-2025-000045"})  # fmt: skip
    refused(r, "order-error", "材料类型：大湾区标准合同备案编号由主管机关或认证机构出具，"
            "由交易所运营方（不属于任何一方的系统管理员或审核人）登记，不由交易双方登记："
            "sam 不是交易所运营方", "is issued by an authority", 403)  # fmt: skip
    ok = {"csrftoken": tok, "kind": "pia", "evidence_ref": "PIA-2025-NS-0007"}
    assert site.post(f"{step}/evidence", data=ok).status_code == 200
    r = site.post(f"{step}/evidence", data=ok)  # the same form sent again
    refused(r, "order-error", f"订单 {hk} 已登记个人信息保护影响评估（PIA）（PIA-2025-NS-0007）",
            "already has its pia reference", 409)  # fmt: skip
    # -- refunded: the buyer's profile is refused, saying why -------------------------------
    assert site.post(f"{step}/grant", data={"csrftoken": tok}).status_code == 200
    assert site.post(f"{step}/refund", data={"csrftoken": tok}).status_code == 200
    tok = login(site, "bo")
    r = site.post(f"{step}/profile", data={"csrftoken": tok})
    refused(r, "order-error", f"订单 {hk} 的状态为“已退款”；Delta Sharing 需要有效的访问授权",
            "an access grant", 409)  # fmt: skip
    # -- the official's page of the year's refusals, from the ledger ------------------------
    login(site, "aud")
    r = site.get(f"/audit/cross-border?year={ex.today().year}")
    page = html.unescape(r.text)
    assert r.status_code == 200
    assert "该报价不允许跨境销售，而买方位于香港" in page
    assert (
        "大湾区标准合同（大湾区（内地、香港）标准合同）：须先登记个人信息保护影响评估（PIA），方可授权"
        in page
    )
    assert "the offer is not made for cross-border sale" not in page
    assert "reference before the grant" not in page
    # -- English one click away: the same refusals in English ------------------------------
    tok = login(site, "bo")
    site.cookies.set("nsdx_lang", "en")
    r = site.post(f"{step}/profile", data={"csrftoken": tok})
    assert f"order {hk} is refunded; Delta Sharing needs an access grant" in r.text
    r = site.post("/exchange/orders", data={**order, "csrftoken": tok, "offer": local})
    assert ("cross-border sale refused (offer_not_cross_border): the offer is not made for "
            "cross-border sale and the buyer is in hong-kong") in html.unescape(r.text)  # fmt: skip
    assert "拒绝跨境销售" not in r.text


def test_an_objection_refused_says_why_in_chinese(site):
    """The public register's one form: an objection outside the public notice (a form left
    open in a tab while the notice ended), or without a reason, is refused in Chinese — on
    the page, though the form is no longer offered; a registration that does not exist
    too."""
    rid = site.registration
    tok = login(site, "bo")
    page = f"/registration/{rid}"
    r = site.post(f"{page}/objection", data={"csrftoken": tok, "reason": "数据来源存疑"})
    assert r.status_code == 409
    assert f"登记 {rid} 的状态为“已登记”：异议须在公示期内提出" in r.text
    assert "objections are lodged during its public notice" not in r.text
    r = site.post(f"{page}/objection", data={"csrftoken": tok, "reason": " "})
    assert r.status_code == 422 and "提出异议须写明理由（--reason）" in r.text
    assert "an objection needs a reason" not in r.text
    r = site.get("/registration/NO-SUCH-CODE")
    assert r.status_code == 404 and "未找到登记 'NO-SUCH-CODE'" in html.unescape(r.text)
    assert "not found" not in r.text


def test_the_json_api_keeps_the_english_text(site):
    """The same core errors through the JSON API: the English message, as before."""
    ex = site.nx.exchange
    local = trade.create_offer(ex, Actor.for_org(SELLER), "rides")["id"]
    tok, _ = Accounts(site.nx.catalogue).create_token("bo")
    r = site.post("/api/exchange/orders", json={"offer": local, "buyer": HK},
                  headers={"authorization": f"Bearer {tok}", "accept": "application/json"})  # fmt: skip
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["error"] == "CrossBorderRefused"
    assert err["message"] == ("cross-border sale refused (offer_not_cross_border): the offer is "
                              "not made for cross-border sale and the buyer is in hong-kong")  # fmt: skip
    assert err["hint"].startswith("core data and offers not made for cross-border sale")


# -- the reasons of cross-border decisions, with their counts, thresholds and regions --------
P = load_policy(DEFAULT_POLICY)
SHENZHEN, NANSHA = Region("mainland", "440305"), Region("mainland", "440115")


def pi(n: int, **kw) -> Transfer:
    base = {"seller": SHENZHEN, "buyer": Region("abroad"), "has_pi": True, "individuals": n,
            "domain": "transport"}  # fmt: skip
    return Transfer(**{**base, **kw})


@pytest.mark.parametrize(
    ("t", "rule", "english", "chinese"),
    [
        (pi(99_999), "pi_below_threshold",
         "99,999 individuals this year, fewer than 100,000 (non-sensitive)",
         "本年度累计涉及 99,999 人，少于 100,000 人（非敏感个人信息）"),
        (pi(100_000), "pi_contract_threshold",
         "100,000 individuals this year, from 100,000 to under 1,000,000: a filed standard "
         "contract or a certification",
         "本年度累计涉及 100,000 人，在 100,000 人以上、不满 1,000,000 人：须备案标准合同或通过"
         "个人信息保护认证"),
        (pi(1_000_000), "pi_assessment_threshold",
         "1,000,000 individuals this year, 1,000,000 or more",
         "本年度累计涉及 1,000,000 人，达到或超过 1,000,000 人"),
        (pi(1, sensitive_pi=True), "sensitive_pi",
         "sensitive PI of 1 individuals this year, fewer than 10,000: a filed standard contract "
         "or a certification",
         "本年度累计涉及 1 人的敏感个人信息，不满 10,000 人：须备案标准合同或通过个人信息保护认证"),
        (pi(10_000, sensitive_pi=True), "sensitive_pi_assessment_threshold",
         "sensitive PI of 10,000 individuals this year, 10,000 or more",
         "本年度累计涉及 10,000 人的敏感个人信息，达到或超过 10,000 人"),
        (pi(200_000, buyer=Region("hong-kong")), "gba_hong_kong",
         "both parties in the Greater Bay Area (mainland 广东省深圳市 (440305) → hong-kong): the "
         "GBA standard contract, after a PI impact assessment",
         "双方均在粤港澳大湾区（中国内地 广东省深圳市（440305） → 香港）：经个人信息保护影响评估后，"
         "适用大湾区标准合同"),
        (pi(5, buyer=Region("macao"), offer_cross_border=False), "offer_not_cross_border",
         "the offer is not made for cross-border sale and the buyer is in macao",
         "该报价不允许跨境销售，而买方位于澳门"),
        (pi(5, seller=NANSHA, domain="education", category="x"), "ftz_outside_negative_list",
         "exporter in the free-trade zone; education/x is not on its negative list",
         "出口方位于自由贸易试验区；教育/x 不在其负面清单内"),
    ],
)  # fmt: skip
def test_cross_border_reasons_with_their_figures_in_chinese(t, rule, english, chinese):
    """The decision's reason is the English text wherever a string is expected (the ledger,
    the CLI, JSON); the portal shows it in Chinese with the same figures and regions."""
    d = decide(t, P)
    assert d.rule == rule
    assert d.detail == english
    assert i18n.core(d.detail) == chinese  # the portal's language: Chinese by default
    token = i18n.set_current("en")
    try:
        assert i18n.core(d.detail) == english
    finally:
        i18n.reset(token)


def test_the_error_page_says_a_core_refusal_in_the_visitors_language(site):
    """A refusal no page catches reaches the one error renderer (nsdx.web.errors): the
    page dialect says the message and its hint through the catalogue, the JSON dialect keeps
    the English text. (The route is added here: every portal page catches the trade's
    refusals to keep its form, so none lets one through.)"""
    from exchange.errors import InvalidState
    from validation.messages import Msg, Term

    def refuse():
        raise InvalidState(
            Msg("order %(order)s is %(status)s; access is granted after payment", order="o-1",
                status=Term("placed", "order")),
            hint=Msg("confirm payment first: `nsdx exchange pay %(order)s`", order="o-1"),
        )  # fmt: skip

    site.app.add_api_route("/test-only/refusal", refuse)
    r = site.get("/test-only/refusal")
    assert r.status_code == 409
    assert "订单 o-1 的状态为“已下单”；付款后方可授予访问权限" in r.text
    assert "请先确认付款：`nsdx exchange pay o-1`" in html.unescape(r.text)
    assert "access is granted after payment" not in r.text
    site.cookies.set("nsdx_lang", "en")
    r = site.get("/test-only/refusal")
    assert "order o-1 is placed; access is granted after payment" in r.text
    site.app.add_api_route("/api/test-only/refusal", refuse)  # the JSON dialect
    r = site.get("/api/test-only/refusal", headers={"accept": "application/json"})
    assert r.json()["error"] == {
        "error": "InvalidState",
        "message": "order o-1 is placed; access is granted after payment",
        "hint": "confirm payment first: `nsdx exchange pay o-1`",
        "transient": False,
    }
