"""The portal's cross-border evidence form (issue 16, review finding 4): on an order's page
the seller records its PI impact assessment and the exchange operator the authorities'
numbers, through the same core as the CLI and the API; CSRF-protected, Chinese first."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.models import Dataset, Organization, Version
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from exchange import credit_code, trade
from exchange.actors import Actor
from nsdx.web.app import create_app
from tests.registered import register
from tests.test_ckan_api import make_nsdx
from tests.test_portal_edit import PASSWORD, login

HTML = {"accept": "text/html"}
SELLER, BUYER = "bureau", "hk-firm"


@pytest.fixture
def site(tmp_path, nsdx_env):
    nx = make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'nsdx.db'}")
    ex = nx.exchange
    acc = Accounts(nx.catalogue)
    for org in (SELLER, BUYER):
        acc.create_org(org, title=org)
    for name, kw in (("sam", {}), ("bo", {}), ("op", {"sysadmin": True})):
        acc.create_user(name, **kw)
        set_password(acc, name, PASSWORD)
    acc.add_member(SELLER, "sam", "editor")
    acc.add_member(BUYER, "bo", "member")
    with nx.catalogue.Session.begin() as s:
        org = s.query(Organization).filter_by(name=SELLER).one()
        ds = Dataset(name="rides", domain="transport", access="restricted", organization=org,
                     extras={}, current_version=1, grade="general", has_pi=True,
                     price_fen=100_000)  # fmt: skip
        s.add(ds)
        s.flush()
        s.add(Version(dataset_id=ds.id, number=1, prefix="bureau/rides/v1",
                      storage_url="file://", fingerprint="r1", manifest={}, validation={},
                      individuals=150_000))  # fmt: skip
    trade.register_enterprise(ex, Actor.for_org(SELLER), SELLER, legal_name=SELLER,
                              credit_code_=credit_code.make("440115", "MA5ATKT1"))  # fmt: skip
    trade.register_enterprise(ex, Actor.operator(), BUYER, legal_name=BUYER, region="hong-kong",
                              credit_code_=credit_code.make("440115", "MA50XKT1"))  # fmt: skip
    register(ex, "rides", SELLER)
    offer = trade.create_offer(ex, Actor.for_org(SELLER), "rides", cross_border=True)["id"]
    order = trade.place_order(ex, Actor.for_org(BUYER, "member"), offer, buyer=BUYER)
    assert order["cross_border"]["route"] == "gba_standard_contract"
    with TestClient(create_app(nx, warm=False, worker=False)) as c:
        c.headers.update(HTML)
        c.nx, c.order = nx, order["id"]
        yield c
    drop_indexes()


def kinds(html: str) -> list[str]:
    form = re.search(r'<form[^>]*id="evidence-form".*?</form>', html, re.S)
    return re.findall(r'<option value="(\w+)"', form.group(0)) if form else []


def test_seller_records_its_pia_and_the_operator_the_filing_number(site):
    page, ev = f"/my/orders/{site.order}", f"/my/orders/{site.order}/evidence"
    tok = login(site, "sam")
    r = site.get(page)
    assert "出境证明材料" in r.text and "个人信息保护影响评估（PIA）" in r.text
    assert kinds(r.text) == ["pia"]  # the filing number is not the seller's to record
    data = {"kind": "pia", "evidence_ref": "PIA-2025-NS-0007"}
    assert site.post(ev, data=data, follow_redirects=False).status_code == 403  # no CSRF token
    r = site.post(ev, data={"csrftoken": tok, "kind": "gba_filing",
                            "evidence_ref": "GBA-SCC-2025-000045"})  # fmt: skip
    assert r.status_code == 403 and 'id="order-error"' in r.text
    r = site.post(ev, data={"csrftoken": tok, "kind": "pia", "evidence_ref": "PIA 7"})
    assert r.status_code == 422 and "PIA-2025-NS-0007" in r.text  # the policy's example
    r = site.post(ev, data={"csrftoken": tok, **data}, follow_redirects=False)
    assert r.status_code == 303
    r = site.get(page)
    assert "pia: PIA-2025-NS-0007" in r.text and kinds(r.text) == []
    login(site, "bo")  # the buyer records nothing
    assert kinds(site.get(page).text) == []
    tok = login(site, "op")
    site.cookies.set("nsdx_lang", "en")
    r = site.get(page)
    assert "Record the evidence" in r.text and kinds(r.text) == ["gba_filing"]
    r = site.post(ev, data={"csrftoken": tok, "kind": "gba_filing",
                            "evidence_ref": "GBA-SCC-2025-000045"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    xb = trade.get_order(site.nx.exchange, Actor.auditor_(), site.order)["cross_border"]
    assert xb["evidence"] == {"pia": "PIA-2025-NS-0007", "gba_filing": "GBA-SCC-2025-000045"}
    entries = site.nx.exchange.ledger.events(site.nx.exchange.ledger.head_size())
    actors = [e["actor"] for e in entries if e["type"] == "crossborder.evidence"]
    assert actors == ["sam", "op"]


def test_a_reviewer_finds_the_order_on_my_work_and_records_the_number(site):
    """A reviewer of the exchange (no sysadmin, no organisation) finds the cross-border
    orders on "my work", opens one, and records the authority's number: before, the order
    page answered 404 to a reviewer, who could record the number only through the CLI."""
    acc = Accounts(site.nx.catalogue)
    acc.create_user("rita", reviewer=True)
    set_password(acc, "rita", PASSWORD)
    tok = login(site, "rita")
    my = site.get("/my").text
    assert "待审核的出境订单" in my and f'href="/my/orders/{site.order}"' in my
    r = site.get(f"/my/orders/{site.order}")
    assert r.status_code == 200 and kinds(r.text) == ["gba_filing"]
    r = site.post(f"/my/orders/{site.order}/evidence", follow_redirects=False,
                  data={"csrftoken": tok, "kind": "gba_filing",
                        "evidence_ref": "GBA-SCC-2025-000046"})  # fmt: skip
    assert r.status_code == 303
    xb = trade.get_order(site.nx.exchange, Actor.auditor_(), site.order)["cross_border"]
    assert xb["evidence"]["gba_filing"] == "GBA-SCC-2025-000046"
    login(site, "bo")  # a buyer's member sees no review section
    assert "待审核的出境订单" not in site.get("/my").text
