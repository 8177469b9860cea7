"""The trade flow on both databases: roles, states, receipts, deliveries, the CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from exchange import credit_code, trade
from exchange.actors import Actor
from exchange.errors import InvalidCreditCode, InvalidState, NotAllowed
from exchange.ledger.keys import open_checkpoint
from exchange.ledger.merkle import verify_inclusion
from tests.conftest import run_cli

SELLER, BUYER, OTHER = "bureau", "firm", "rival"


def make_world(url: str, home: Path):
    """A catalogue with two sellers' datasets (one published with a file), three
    enterprises with profiles, and an Exchange over them."""
    from catalogue.models import Dataset, Resource, Version
    from catalogue.registry import Catalogue
    from exchange.context import Exchange
    from exchange.ledger.keys import load_signer
    from ingest.storage import open_store

    cat = Catalogue(url)
    store = open_store(f"file://{home / 'objects'}")
    key = "bureau/ds1/v1/data/part-0.parquet"
    store.put_bytes(key, b"PAR1 demo")
    with cat.Session.begin() as s:
        org = cat.ensure_organization(s, SELLER)
        cat.ensure_organization(s, BUYER)
        rival = cat.ensure_organization(s, OTHER)
        ds = Dataset(name="ds1", domain="transport", access="restricted", organization=org,
                     extras={}, current_version=1)  # fmt: skip
        s.add(ds)
        s.add(Dataset(name="ds2", domain="urban-management", access="restricted",
                      organization=rival, extras={}))  # fmt: skip
        s.flush()
        v = Version(dataset_id=ds.id, number=1, prefix="bureau/ds1/v1", storage_url="file://",
                    fingerprint="f", manifest={}, validation={})  # fmt: skip
        s.add(v)
        s.flush()
        s.add(Resource(version_id=v.id, dataset_id=ds.id, name="ds1", files=[{"key": key}],
                       table_schema=[], extras={}))  # fmt: skip
    ex = Exchange(cat, store, home=home, pii_key=b"k", signer=load_signer(home, {}))
    for i, org in enumerate((SELLER, BUYER, OTHER)):
        trade.register_enterprise(
            ex, Actor.for_org(org), org, credit_code_=credit_code.make("440115", f"MA5{i}TKT1"),
            legal_name=org, in_nansha=True,
        )  # fmt: skip
    return ex


@pytest.fixture
def world(database_url, tmp_path):
    return make_world(database_url, tmp_path)


def check_receipt(ex, r: dict) -> None:
    rc = r["receipt"]
    b = base64.b64decode
    cp = open_checkpoint(rc["checkpoint"], ex.signer.verifier_key)
    assert cp.size == rc["tree_size"] and cp.root == b(rc["root"])
    verify_inclusion(
        rc["index"], rc["tree_size"], b(rc["leaf_hash"]), [b(p) for p in rc["proof"]], cp.root
    )


def test_whole_flow_with_receipts(world):
    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    o = trade.create_offer(ex, seller, "ds1", price="120000.50", licence_terms="R&D only")
    check_receipt(ex, o)
    assert o["price_fen"] == 12000050 and o["version_mode"] == "latest-during-term"
    od = trade.place_order(ex, buyer, o["id"], buyer=BUYER)
    check_receipt(ex, od)
    with pytest.raises(InvalidState, match="access is granted after payment"):
        trade.grant_access(ex, seller, od["id"])
    check_receipt(ex, trade.confirm_payment(ex, seller, od["id"], reference="B1"))
    g = trade.grant_access(ex, seller, od["id"], days=30)
    assert g["status"] == "granted"
    d = trade.deliver(ex, buyer, od["id"], expires_seconds=600)
    check_receipt(ex, d)
    assert d["delivery"]["version"] == 1
    assert d["delivery"]["files"][0]["key"] == "bureau/ds1/v1/data/part-0.parquet"
    assert d["receipt"]["entry"]["type"] == "delivery.made"
    r = trade.refund(ex, seller, od["id"], reason="bad data")
    assert r["status"] == "refunded" and r["grant_revoked"] is True
    with pytest.raises(InvalidState):
        trade.deliver(ex, buyer, od["id"])
    kinds = [e["type"] for e in ex.ledger.events(ex.ledger.head_size())]
    assert kinds[-6:] == ["offer.created", "order.placed", "payment.confirmed",
                          "access.granted", "delivery.made", "refund.issued"]  # fmt: skip


def test_role_checks(world):
    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    with pytest.raises(NotAllowed, match="only the seller organisation 'bureau' may"):
        trade.create_offer(ex, Actor.for_org(OTHER), "ds1", price="1")
    with pytest.raises(NotAllowed):  # a member (AI firm role) cannot sell
        trade.create_offer(ex, Actor.for_org(SELLER, "member"), "ds1", price="1")
    o = trade.create_offer(ex, seller, "ds1", price="100")
    with pytest.raises(NotAllowed, match="only the buyer organisation 'rival' may"):
        trade.place_order(ex, buyer, o["id"], buyer=OTHER)
    with pytest.raises(NotAllowed, match="cannot buy its own offer"):
        trade.place_order(ex, seller, o["id"], buyer=SELLER)
    od = trade.place_order(ex, buyer, o["id"], buyer=BUYER)
    with pytest.raises(NotAllowed):  # the buyer cannot confirm its own payment
        trade.confirm_payment(ex, buyer, od["id"])
    with pytest.raises(NotAllowed, match="auditors read exchange records"):
        trade.confirm_payment(ex, Actor.auditor_(), od["id"])
    trade.confirm_payment(ex, seller, od["id"])
    trade.grant_access(ex, seller, od["id"])
    with pytest.raises(NotAllowed):  # another firm cannot take the buyer's delivery
        trade.deliver(ex, Actor.for_org(OTHER), od["id"])
    with pytest.raises(NotAllowed):
        trade.get_order(ex, Actor.for_org(OTHER), od["id"])
    assert [x["id"] for x in trade.list_orders(ex, Actor.auditor_())] == [od["id"]]
    assert trade.list_orders(ex, Actor.for_org(OTHER)) == []
    assert len(trade.list_orders(ex, buyer)) == 1


def test_credit_codes():
    assert credit_code.is_valid("91440300708461136T")
    assert credit_code.validate(" 91350100m000100y43 ") == "91350100M000100Y43"
    with pytest.raises(InvalidCreditCode, match="GB 32100-2015 gives '3'"):
        credit_code.validate("91350100M000100Y44")
    with pytest.raises(InvalidCreditCode, match="17 characters"):
        credit_code.validate("91350100M000100Y4")
    with pytest.raises(InvalidCreditCode, match="are not allowed"):
        credit_code.validate("91350100M000100YI3")
    code = credit_code.make("440115", "MA59DL9U")
    assert credit_code.validate(code, strict_org_code=True) == code


def test_cli_flow_and_audit(nsdx_env, tmp_path):
    env = nsdx_env
    run_cli("exchange", "demo", env=env)
    again = run_cli("exchange", "demo", "--json", env=env)
    assert json.loads(again.stdout)["skipped"] is True
    offers = json.loads(run_cli("exchange", "offers", "--json", env=env).stdout)
    assert len(offers) == 5
    v = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)
    assert v["ok"] and v["entries"] == 44
    p = json.loads(run_cli("audit", "proof", "--index", "3", "--json", env=env).stdout)
    assert set(p) == {"index", "tree_size", "leaf_hash", "proof", "root", "checkpoint"}
    c = json.loads(
        run_cli("audit", "proof", "--from", "10", "--to", "40", "--json", env=env).stdout
    )
    assert {"size1", "size2", "root1", "root2", "proof"} <= set(c)
    key = run_cli("audit", "pubkey", env=env).stdout.strip()
    assert key.startswith("nsdx.nansha/exchange-ledger+")
    assert oct((Path(env["NSDX_HOME"]) / "ledger.key").stat().st_mode & 0o777) == "0o600"
    bad = run_cli("exchange", "offer", "ds-x", "--price", "1", "--as", "nobody", "--json",
                  env=env, check=False)  # fmt: skip
    # a missing dataset: the catalogue's one lookup, DatasetNotFound (404) on every surface
    assert bad.returncode == 1 and json.loads(bad.stderr)["error"]["error"] == "DatasetNotFound"
    out = tmp_path / "report"
    run_cli("audit", "report", "--year", str(_demo_year()), "--out", str(out), env=env)
    names = {p.name for p in out.iterdir()}
    y = _demo_year()
    assert {f"exchange-{y}.html", f"exchange-{y}.json", f"exchange-{y}-transactions.parquet",
            f"exchange-{y}-transactions.csv"} <= names  # fmt: skip
    assert "<svg" in (out / f"exchange-{y}.html").read_text(encoding="utf-8")


def _demo_year() -> int:
    from datetime import date

    return date.today().year - 1
