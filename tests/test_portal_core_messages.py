"""Messages that come from the domain core (reward exclusions, wash-trade flags) are shown
in Chinese on the Chinese portal and in English on the English one: the core gives each its
message id and parameters (validation.messages.Msg), the portal renders them through the
catalogue."""

from __future__ import annotations

from tests.test_portal_audit_cache import ready
from tests.test_portal_pages import login, site  # noqa: F401 - the fixture


def test_reward_exclusions_and_flags_in_chinese_then_english(site):  # noqa: F811
    login(site, "official")
    url = f"/audit/rewards?year={site.year}&only=excluded"
    zh = ready(site, url).text
    for text in (
        "未在本区注册",  # not_in_district
        "共同实际控制人：黄海峰",  # related_party:shared_controller
        "共同股东：黄海峰",  # related_party:shareholder_overlap
        "法定代表人相同：黄海峰",  # related_party:same_legal_representative
        "电话号码相同",  # related_party:same_phone
        "已退款 ¥280,000.00（账本条目",  # refunded
        "lingang-insight→nansha-zhixing-ai→nansha-haiyun-data→lingang-insight，19 天内，金额",
    ):
        assert text in zh, text
    for english in (
        "is not registered in the district",
        "shared controller(s)",
        "refunded (ledger",
    ):
        assert english not in zh
    site.cookies.set("nsdx_lang", "en")
    en = ready(site, url).text
    assert "baiyun-vision is not registered in the district" in en
    assert "shared controller(s): 黄海峰" in en and "¥280,000.00 refunded (ledger" in en
    assert "within 19 day(s), amounts ¥495,000.00, ¥500,000.00" in en


def test_a_refused_offer_says_why_in_chinese(site):  # noqa: F811
    from exchange.demo import RIDE

    tok = login(site, "alice")  # an editor of the bureau that sells the ride-hailing data
    data = {"csrftoken": tok, "dataset": RIDE[0], "price": "1200.00",
            "term_start": "2026-06-30", "term_end": "2026-06-01"}  # fmt: skip
    r = site.post("/exchange/offers", data=data)
    assert r.status_code == 422
    assert "期限的结束日期（2026-06-01）早于开始日期（2026-06-30）" in r.text
    site.cookies.set("nsdx_lang", "en")
    r = site.post("/exchange/offers", data=data)
    assert "the term ends (2026-06-01) before it starts (2026-06-30)" in r.text


def test_the_officials_pages_carry_no_english_status_words_in_chinese(site):  # noqa: F811
    """Found walking the portal in zh-CN: verification problems (their kind and message),
    a group-less enterprise's "(no group)", the regions of cross-border transfers and the
    decisions' reasons were English on the Chinese pages."""
    from sqlalchemy import text

    tok = login(site, "official")
    rewards = ready(site, f"/audit/rewards?year={site.year}").text
    assert "lingang-insight（无集团）" in rewards and "(no group)" not in rewards
    xb = site.get(f"/audit/cross-border?year={site.year}").text
    assert "中国内地 广东省广州市（440115）" in xb and "mainland " not in xb
    assert "(香港)" in xb and "(hong-kong)" not in xb
    assert "核心数据一律不得出境" in xb and "core data is never transferred" not in xb
    assert (
        "数据出境安全评估（个人信息人数未统计）：须先登记数据出境安全评估批准编号，方可授权" in xb
    )
    assert "reference before the grant" not in xb
    r = site.post("/audit/verify", data={"csrftoken": tok, "checkpoint": "not a checkpoint"})
    assert "签名无效 <code>signature</code>: 外部检查点：" in r.text
    assert "external checkpoint:" not in r.text
    with site.nx.exchange.ledger.engine.begin() as c:  # entry 5 edited, its leaf hash kept
        c.execute(text("UPDATE ledger_entries SET payload = replace(payload, "
                       "'\"actor\":\"', '\"actor\":\"x') WHERE idx = 5"))  # fmt: skip
    r = site.post("/audit/verify", data={"csrftoken": tok})
    assert "验证失败" in r.text and "叶哈希不符 <code>leaf_hash</code>" in r.text
    assert "条目 5：内容的哈希与存储的叶哈希不一致（已被编辑）" in r.text
    assert "does not hash to its stored leaf hash" not in r.text
    assert (
        "does not match its signed checkpoint" not in r.text
        and "默克尔树与其签名检查点不符" in r.text
    )
    site.cookies.set("nsdx_lang", "en")
    r = site.post("/audit/verify", data={"csrftoken": tok})
    assert "entry 5: its payload does not hash to its stored leaf hash (edited)" in r.text


def test_ledger_entry_kinds_are_named_in_chinese(site):  # noqa: F811
    login(site, "official")
    r = site.get("/audit/transactions?kind=order.placed")
    assert r.status_code == 200
    assert '<option value="order.placed" selected>下单 (order.placed)</option>' in r.text
    assert "<td>下单 <code>order.placed</code></td>" in r.text
    assert "确认付款 (payment.confirmed)" in r.text and "企业登记 (enterprise.registered)" in r.text
    site.cookies.set("nsdx_lang", "en")
    r = site.get("/audit/transactions?kind=order.placed")
    assert "<td><code>order.placed</code></td>" in r.text and "下单" not in r.text
