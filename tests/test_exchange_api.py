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
    assert set(p) == {"index", "tree_size", "leaf_hash", "proof", "root", "checkpoint"}
    assert c.get("/api/audit/pubkey").text.startswith("nsdx.nansha/exchange-ledger+")
    assert c.get("/api/audit/verify").status_code == 403
    v = c.get("/api/audit/verify", headers=h["aud"]).json()
    assert v["ok"] is True
    rep = c.get("/api/audit/rewards", params={"year": 2025}, headers=h["aud"]).json()
    assert "checkpoint" in rep
    assert c.get(f"/api/exchange/orders/{order}", headers=h["aud"]).json()["status"] == "delivered"
