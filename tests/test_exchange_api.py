"""The exchange and audit HTTP endpoints through the real app, with real API tokens."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.test_exchange_trade import BUYER, SELLER, make_world


@pytest.fixture
def client(nsdx_env, tmp_path):
    from catalogue.auth import Accounts
    from nsdx.core import Nsdx
    from nsdx.web.app import create_app

    nx = Nsdx()
    ex = make_world(nx.settings.database_url, nx.settings.home)
    acc = Accounts(nx.catalogue)
    tokens = {}
    for user, org, role, auditor in (("sam", SELLER, "editor", False),
                                     ("bo", BUYER, "member", False), ("aud", None, None, True)):  # fmt: skip
        acc.create_user(user, auditor=auditor)
        if org:
            acc.add_member(org, user, role)
        tokens[user], _ = acc.create_token(user)
    nx.provide(exchange=ex)  # same signing key as the world
    app = create_app(nx, warm=False)
    with TestClient(app) as c:
        yield c, tokens


def test_trade_over_http(client):
    c, tok = client
    h = {u: {"Authorization": f"Bearer {t}"} for u, t in tok.items()}
    r = c.post(
        "/api/exchange/offers", json={"dataset": "ds1", "price_cny": "5000"}, headers=h["bo"]
    )
    assert r.status_code == 403 and r.json()["error"]["error"] == "NotAllowed"
    r = c.post(
        "/api/exchange/offers", json={"dataset": "ds1", "price_cny": "5000"}, headers=h["sam"]
    )
    assert r.status_code == 201, r.text
    offer = r.json()["id"]
    assert [o["id"] for o in c.get("/api/exchange/offers").json()] == [offer]
    r = c.post("/api/exchange/orders", json={"offer": offer, "buyer": BUYER}, headers=h["bo"])
    assert r.status_code == 201
    order = r.json()["id"]
    assert (
        c.post(f"/api/exchange/orders/{order}/grant", json={}, headers=h["sam"]).status_code == 409
    )
    assert (
        c.post(f"/api/exchange/orders/{order}/payment", json={}, headers=h["aud"]).status_code
        == 403
    )
    assert (
        c.post(
            f"/api/exchange/orders/{order}/payment", json={"reference": "x"}, headers=h["sam"]
        ).status_code
        == 200
    )
    assert (
        c.post(f"/api/exchange/orders/{order}/grant", json={}, headers=h["sam"]).status_code == 200
    )
    r = c.post(
        f"/api/exchange/orders/{order}/delivery", json={"expires_seconds": 60}, headers=h["bo"]
    )
    assert r.status_code == 200 and r.json()["delivery"]["files"]
    idx = r.json()["receipt"]["index"]
    p = c.get("/api/audit/proof/inclusion", params={"index": idx}).json()
    assert set(p) == {
        "index",
        "tree_size",
        "leaf_hash",
        "proof",
        "root",
        "checkpoint",
        "witnessed",
        "cosigners",
    }
    assert c.get("/api/audit/pubkey").text.startswith("nsdx.nansha/exchange-ledger+")
    assert c.get("/api/audit/verify").status_code == 403
    v = c.get("/api/audit/verify", headers=h["aud"]).json()
    assert v["ok"] is True
    rep = c.get("/api/audit/rewards", params={"year": 2025}, headers=h["aud"]).json()
    assert "checkpoint" in rep
    assert c.get(f"/api/exchange/orders/{order}", headers=h["aud"]).json()["status"] == "delivered"


def _setup_order(c, h) -> tuple[str, str]:
    r = c.post("/api/exchange/offers", json={"dataset": "ds1", "price_cny": "280000"},
               headers=h["sam"])  # fmt: skip
    assert r.status_code == 201, r.text
    offer = r.json()["id"]
    r = c.post("/api/exchange/orders", json={"offer": offer, "buyer": BUYER}, headers=h["bo"])
    assert r.status_code == 201, r.text
    return offer, r.json()["id"]


def test_hostile_numbers_get_a_clear_4xx(client):
    """The 5xx found by hand: amounts NaN/Infinity/1e400, offer version=2**63, grant
    days=1e9 and days="abc" — each a clear 4xx now, and nothing is recorded."""
    c, tok = client
    h = {u: {"Authorization": f"Bearer {t}"} for u, t in tok.items()}
    _, order = _setup_order(c, h)
    offers = "/api/exchange/offers"
    cases = [
        (offers, {"dataset": "ds1", "price_cny": "NaN"}, "sam", "not a finite amount"),
        (offers, {"dataset": "ds1", "price_cny": "Infinity"}, "sam", "not a finite amount"),
        (offers, {"dataset": "ds1", "price_cny": "1e400"}, "sam", "more than the largest"),
        (offers, {"dataset": "ds1", "price_cny": "-1"}, "sam", "is negative"),
        (offers, {"dataset": "ds1", "price_cny": "1", "version": 2**63}, "sam",
         "version: 9223372036854775808 is outside"),
        (offers, {"dataset": "ds1", "price_cny": "1", "access_days": 10**9}, "sam",
         "access_days: 1000000000 is outside"),
        ("/api/exchange/orders", {"offer": "x", "buyer": BUYER, "amount_cny": "NaN"}, "bo",
         "not a finite amount"),
        (f"/api/exchange/orders/{order}/payment", {"amount_cny": "Infinity"}, "sam",
         "not a finite amount"),
        (f"/api/exchange/orders/{order}/payment", {"amount_cny": "0.01"}, "sam",
         "does not match the order amount ¥280,000.00"),
        (f"/api/exchange/orders/{order}/payment", {"paid_on": "2999-01-01"}, "sam",
         "is in the future"),
        (f"/api/exchange/orders/{order}/refund", {"amount_cny": "1e400"}, "sam",
         "more than the largest"),
    ]  # fmt: skip
    for path, body, who, why in cases:
        r = c.post(path, json=body, headers=h[who])
        assert r.status_code == 422, (path, body, r.status_code, r.text)
        assert why in r.json()["error"]["message"], (body, r.text)
    assert c.post(f"/api/exchange/orders/{order}/payment", json={}, headers=h["sam"]).status_code == 200  # fmt: skip
    for body, why in (({"days": 1e9}, "days: 1000000000 is outside 1..3650"),
                      ({"days": 2**63}, "is outside 1..3650")):  # fmt: skip
        r = c.post(f"/api/exchange/orders/{order}/grant", json=body, headers=h["sam"])
        assert r.status_code == 422 and why in r.json()["error"]["message"], r.text
    # not numbers at all: refused by the request model before the exchange sees them
    for raw in (
        '{"days": "abc"}',
        '{"days": 1.5}',
        '{"days": [1]}',
        '{"days": NaN}',
        '{"days": Infinity}',
        '{"days": 1e400}',
        '{"days": -Infinity}',
    ):
        r = c.post(f"/api/exchange/orders/{order}/grant", content=raw,
                   headers={**h["sam"], "Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 422, (raw, r.text)
        assert r.json()["error"]["error"] == "InvalidRequest"
    # JSON's non-finite literals where an amount is expected (not a string): 422, not 500
    for raw in (
        '{"dataset": "ds1", "price_cny": NaN}',
        '{"dataset": "ds1", "price_cny": 1e400}',
        '{"dataset": "ds1", "price_cny": "1", "version": Infinity}',
    ):
        r = c.post("/api/exchange/offers", content=raw,
                   headers={**h["sam"], "Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 422, (raw, r.text)
    r = c.post(f"/api/exchange/orders/{order}/grant", json={"days": 30}, headers=h["sam"])
    assert r.status_code == 200
    r = c.post(f"/api/exchange/orders/{order}/delivery", json={"expires_seconds": 10**12},
               headers=h["bo"])  # fmt: skip
    assert r.status_code == 422 and "expires_seconds" in r.json()["error"]["message"]


def test_one_price_on_the_page_in_package_show_and_in_the_offer(client):
    """The list price was a float shown "¥2800.0" while the offer said ¥280,000.00: one
    figure now, stored in fen, the offer's default."""
    from sqlalchemy import update

    from catalogue.models import Dataset
    from nsdx.core import Nsdx

    c, tok = client
    h = {u: {"Authorization": f"Bearer {t}"} for u, t in tok.items()}
    with Nsdx().catalogue.Session.begin() as s:
        s.execute(update(Dataset).where(Dataset.name == "ds1").values(price_fen=28_000_000))
    shown = c.get("/api/3/action/package_show", params={"id": "ds1"}).json()["result"]
    extras = {e["key"]: e["value"] for e in shown["extras"]}
    assert extras["price_cny"] == "280000.00"
    page = c.get("/dataset/ds1")
    assert page.status_code == 200 and "¥280,000.00" in page.text and "2800.0<" not in page.text
    r = c.post("/api/exchange/offers", json={"dataset": "ds1", "price_cny": "280000"},
               headers=h["sam"])  # fmt: skip
    offer = r.json()
    assert (offer["price_cny"], offer["price_display"], offer["list_price_cny"]) == (
        "280000.00", "¥280,000.00", "280000.00")  # fmt: skip


def test_cli_refuses_hostile_numbers(client, nsdx_env):
    """The same refusals through `nsdx exchange` (the same core functions)."""
    import json

    from tests.conftest import run_cli

    c, tok = client
    h = {u: {"Authorization": f"Bearer {t}"} for u, t in tok.items()}
    _, order = _setup_order(c, h)
    cases = [
        (["exchange", "offer", "ds1", "--price", "NaN"], "not a finite amount"),
        (["exchange", "offer", "ds1", "--price", "1e400"], "more than the largest"),
        (["exchange", "offer", "ds1", "--price", "1", "--version", str(2**63)],
         "version: 9223372036854775808 is outside"),
        (["exchange", "pay", order, "--amount", "0.01"], "does not match the order amount"),
        (["exchange", "pay", order, "--paid-on", "2001-01-01"], "is too far back"),
    ]  # fmt: skip
    for args, why in cases:
        proc = run_cli(*args, "--as", SELLER, "--json", env=nsdx_env, check=False)
        assert proc.returncode == 1, (args, proc.stdout)
        err = json.loads(proc.stderr)["error"]
        assert err["error"] == "InvalidRequest" and why in err["message"], (args, err)
    run_cli("exchange", "pay", order, "--as", SELLER, env=nsdx_env)
    proc = run_cli("exchange", "grant", order, "--days", "1000000000", "--as", SELLER,
                   env=nsdx_env, check=False)  # fmt: skip
    assert proc.returncode == 1 and "days: 1000000000 is outside 1..3650" in proc.stderr
    proc = run_cli("exchange", "grant", order, "--days", "abc", "--as", SELLER, env=nsdx_env,
                   check=False)  # fmt: skip
    assert proc.returncode == 2 and "'abc' is not a valid integer" in proc.stderr


def test_cross_border_over_http_and_the_cli(client, nsdx_env):
    """A Hong Kong buyer over HTTP: the GBA route, the grant refused (409) until the PIA is
    recorded, a wrong reference refused naming the field, a refusal (403) for an offer not
    made for export; the audit over HTTP and from the CLI (one JSON document)."""
    import json
    from datetime import date

    from catalogue.models import Dataset, Version
    from exchange import credit_code, trade
    from exchange.actors import Actor
    from tests.conftest import run_cli

    c, tok = client
    h = {u: {"Authorization": f"Bearer {t}"} for u, t in tok.items()}
    from nsdx.core import Nsdx

    nx = Nsdx()
    with nx.catalogue.Session.begin() as s:
        ds = s.query(Dataset).filter_by(name="ds1").one()
        ds.has_pi = True
        s.query(Version).filter_by(dataset_id=ds.id).one().individuals = 150_000
    trade.register_enterprise(  # a region outside the mainland: the operator records it
        nx.exchange, Actor.operator(), BUYER,
        credit_code_=credit_code.make("440115", "MA51TKT1"), legal_name=BUYER, region="hong-kong",
    )  # fmt: skip
    r = c.post("/api/exchange/offers", json={"dataset": "ds1", "price_cny": "5000"},
               headers=h["sam"])  # fmt: skip
    r = c.post("/api/exchange/orders", json={"offer": r.json()["id"], "buyer": BUYER},
               headers=h["bo"])  # fmt: skip
    assert r.status_code == 403 and r.json()["error"]["error"] == "CrossBorderRefused"
    assert r.json()["error"]["rule"] == "offer_not_cross_border"
    r = c.post("/api/exchange/offers", json={"dataset": "ds1", "price_cny": "5000",
               "cross_border": True}, headers=h["sam"])  # fmt: skip
    r = c.post("/api/exchange/orders", json={"offer": r.json()["id"], "buyer": BUYER},
               headers=h["bo"])  # fmt: skip
    assert r.status_code == 201, r.text
    order, xb = r.json()["id"], r.json()["cross_border"]
    assert (xb["route"], xb["missing_evidence"]) == ("gba_standard_contract", ["pia"])
    c.post(f"/api/exchange/orders/{order}/payment", json={}, headers=h["sam"])
    r = c.post(f"/api/exchange/orders/{order}/grant", json={}, headers=h["sam"])
    assert r.status_code == 409 and r.json()["error"]["error"] == "CrossBorderBlocked"
    ev = f"/api/exchange/orders/{order}/evidence"
    r = c.post(ev, json={"kind": "pia", "reference": "PIA 1"}, headers=h["sam"])
    assert r.status_code == 422 and r.json()["error"]["field"] == "reference"
    r = c.post(ev, json={"kind": "secret", "reference": "x"}, headers=h["sam"])
    assert r.status_code == 422 and r.json()["error"]["field"] == "kind"
    assert c.post(ev, json={"kind": "pia", "reference": "PIA-2026-NS-1"},
                  headers=h["bo"]).status_code == 403  # fmt: skip
    r = c.post(ev, json={"kind": "pia", "reference": "PIA-2026-NS-1"}, headers=h["sam"])
    assert r.status_code == 201 and r.json()["receipt"]["entry"]["type"] == "crossborder.evidence"
    assert (
        c.post(f"/api/exchange/orders/{order}/grant", json={}, headers=h["sam"]).status_code == 200
    )
    year = date.today().year
    assert (
        c.get("/api/audit/cross-border", params={"year": year}, headers=h["bo"]).status_code == 403
    )
    rep = c.get("/api/audit/cross-border", params={"year": year}, headers=h["aud"]).json()
    (t,) = rep["transfers"]
    assert t["evidence"] == {"pia": "PIA-2026-NS-1"} and t["destination"] == BUYER
    assert [x["rule"] for x in rep["refusals"]] == ["offer_not_cross_border", "evidence_missing"]
    out = run_cli("audit", "cross-border", "--year", str(year), "--json", env=nsdx_env)
    assert json.loads(out.stdout) == rep
    bad = run_cli("exchange", "evidence", order, "--kind", "filing", "--ref", "nope",
                  "--as", SELLER, env=nsdx_env, check=False)  # fmt: skip
    assert bad.returncode == 1 and "reference" in bad.stderr and "SCC-2025-000123" in bad.stderr
