"""The trade flow on both databases: roles, states, receipts, deliveries, the CLI."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange import credit_code, trade
from exchange.actors import Actor
from exchange.errors import InvalidCreditCode, InvalidRequest, InvalidState, NotAllowed
from exchange.ledger.keys import open_checkpoint
from exchange.ledger.merkle import verify_inclusion
from tests.conftest import run_cli
from tests.registered import register

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
        s.add(Resource(version_id=v.id, dataset_id=ds.id, name="ds1",
                       files=[{"key": key, "path": "data/part-0.parquet"}],
                       table_schema=[], extras={}))  # fmt: skip
    ex = Exchange(cat, store, home=home, pii_key=b"k", signer=load_signer(home, {}))
    for i, org in enumerate((SELLER, BUYER, OTHER)):
        trade.register_enterprise(
            ex, Actor.for_org(org), org, credit_code_=credit_code.make("440115", f"MA5{i}TKT1"),
            legal_name=org, in_nansha=True,
        )  # fmt: skip
    register(ex, "ds1", SELLER)  # no registration, no trade (exchange.registration)
    register(ex, "ds2", OTHER)
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
    assert len(offers) == 7  # 5 + 2 cross-border (ride-hailing to Hong Kong, core data)
    v = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)
    # 44 trade steps, 10 of the cross-border sample (nothing ingested here, so no version
    # of the ride-hailing orders was assessed and the Hong Kong order is not granted), 6
    # products registered (applied, reviewed, issued: 3 entries each)
    assert v["ok"] and v["entries"] == 44 + 10 + 6 * 3
    p = json.loads(run_cli("audit", "proof", "--index", "3", "--json", env=env).stdout)
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


# -- integrity: amounts and dates (issue: a ¥0.01 payment on a ¥280,000 offer; back- and
# future-dated payments and refunds moved trades between reward years) -----------------


def _paid_order(ex, *, amount=None):
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    o = trade.create_offer(ex, seller, "ds1", price="280000")
    od = trade.place_order(ex, buyer, o["id"], buyer=BUYER, amount=amount)
    return seller, buyer, od


def test_a_payment_never_takes_the_buyers_figure_on_trust(world):
    ex = world
    seller, _, od = _paid_order(ex, amount="0.01")
    assert od["amount_cny"] == "0.01"
    # the seller's clerk confirms "the payment" without a figure: refused, with the figures
    with pytest.raises(InvalidRequest) as e:
        trade.confirm_payment(ex, seller, od["id"])
    assert e.value.status == 422
    assert "is for ¥0.01, not the offer price ¥280,000.00" in e.value.message
    assert "--amount 0.01" in e.value.hint
    with pytest.raises(InvalidRequest, match="does not match the order amount ¥0.01"):
        trade.confirm_payment(ex, seller, od["id"], amount="280000")
    # stated explicitly, a negotiated contract value is confirmed (and recorded as such)
    r = trade.confirm_payment(ex, seller, od["id"], amount="0.01")
    assert r["status"] == "paid"
    placed = [e for e in ex.ledger.events(ex.ledger.head_size()) if e["type"] == "order.placed"]
    assert placed[-1]["negotiated"] is True and placed[-1]["price_fen"] == 28_000_000


def test_payment_must_match_the_order(world):
    ex = world
    seller, _, od = _paid_order(ex)
    for wrong in ("279999.99", "280000.01", "1"):
        with pytest.raises(InvalidRequest, match="does not match the order amount ¥280,000.00"):
            trade.confirm_payment(ex, seller, od["id"], amount=wrong)
    assert trade.confirm_payment(ex, seller, od["id"], amount="¥280,000.00")["status"] == "paid"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("NaN", "is not a finite amount"),
        ("Infinity", "is not a finite amount"),
        ("-Infinity", "is not a finite amount"),
        ("1e400", "more than the largest amount"),
        ("-5", "is negative"),
        ("0.001", "fraction of a fen"),
        ("abc", "is not an amount in CNY"),
        ("1" * 5000, "is not an amount in CNY"),
        (2.5, "not floats"),
        ("0", "below the minimum ¥0.01"),
        ("1000000000.01", "above the exchange's maximum ¥1,000,000,000.00"),
    ],
)
def test_hostile_amounts_are_refused_with_422(world, bad, why):
    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    with pytest.raises(InvalidRequest, match=why) as e:
        trade.create_offer(ex, seller, "ds1", price=bad)
    assert e.value.status == 422
    o = trade.create_offer(ex, seller, "ds1", price="100")
    with pytest.raises(InvalidRequest, match=why):
        trade.place_order(ex, buyer, o["id"], buyer=BUYER, amount=bad)


def test_dates_are_the_servers_clock_or_within_the_window(world):
    from datetime import date, timedelta

    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    today = date(2026, 6, 15)
    on = ex.on_day(today)
    o = trade.create_offer(ex.on_day(date(2026, 6, 1)), seller, "ds1", price="100")
    for when, why in ((today + timedelta(days=1), "is in the future"),
                      (today - timedelta(days=8), "is too far back"),
                      ("2026-13-01", "is not a date"), ("x" * 500, "is not a date")):  # fmt: skip
        with pytest.raises(InvalidRequest, match=why) as e:
            trade.place_order(on, buyer, o["id"], buyer=BUYER, on=when)
        assert e.value.status == 422
    od = trade.place_order(on, buyer, o["id"], buyer=BUYER, on=today - timedelta(days=3))
    assert od["ordered_on"] == "2026-06-12"
    with pytest.raises(InvalidRequest, match="before the step it follows"):  # before the order
        trade.confirm_payment(on, seller, od["id"], paid_on="2026-06-11")
    with pytest.raises(InvalidRequest, match="is in the future"):
        trade.confirm_payment(on, seller, od["id"], paid_on="2026-06-16")
    r = trade.confirm_payment(on, seller, od["id"])  # no date: today, the server's clock
    assert r["paid_on"] == "2026-06-15"
    with pytest.raises(InvalidRequest, match="before the step it follows"):
        trade.refund(on, seller, od["id"], refunded_on="2026-06-14")
    later = ex.on_day(date(2026, 7, 30))
    with pytest.raises(InvalidRequest, match="too far back"):  # back-dated by six weeks
        trade.refund(later, seller, od["id"], refunded_on="2026-06-16")
    assert trade.refund(later, seller, od["id"])["status"] == "refunded"
    refund = ex.ledger.events(ex.ledger.head_size())[-1]
    assert refund["type"] == "refund.issued" and refund["refunded_on"] == "2026-07-30"


def test_backdating_never_crosses_into_last_year(world):
    """On 3 January a payment cannot be dated 30 December: the reward year follows it."""
    from datetime import date

    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    on = ex.on_day(date(2027, 1, 3))
    o = trade.create_offer(ex.on_day(date(2026, 12, 1)), seller, "ds1", price="100")
    od = trade.place_order(on, buyer, o["id"], buyer=BUYER)
    with pytest.raises(InvalidRequest, match="within this year"):
        trade.confirm_payment(on, seller, od["id"], paid_on="2026-12-30")


@pytest.mark.parametrize(
    ("call", "why"),
    [
        (lambda ex, s, b, o: trade.create_offer(ex, s, "ds1", price="1", version=2**63),
         "version: 9223372036854775808 is outside 1..2147483647"),
        (lambda ex, s, b, o: trade.create_offer(ex, s, "ds1", price="1", access_days=10**9),
         "access_days: 1000000000 is outside 1..3650"),
        (lambda ex, s, b, o: trade.create_offer(ex, s, "ds1", price="1", term_end="9999-12-31"),
         "longer than 3660 days"),
        (lambda ex, s, b, o: trade.create_offer(ex, s, "ds1", price="1", term_start="9999-12-31"),
         "the term cannot start on 9999-12-31"),
        (lambda ex, s, b, o: trade.grant_access(ex, s, o, days=1e9),
         "days: 1000000000 is outside 1..3650"),
        (lambda ex, s, b, o: trade.grant_access(ex, s, o, days="abc"),
         "days: 'abc' is not a whole number"),
        (lambda ex, s, b, o: trade.grant_access(ex, s, o, days=float("nan")),
         "days: 'nan' is not a whole number"),
        (lambda ex, s, b, o: trade.grant_access(ex, s, o, days=True),
         "days: 'True' is not a whole number"),
    ],
)  # fmt: skip
def test_every_number_is_bounded(world, call, why):
    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    o = trade.create_offer(ex, seller, "ds1", price="100")
    od = trade.place_order(ex, buyer, o["id"], buyer=BUYER)
    trade.confirm_payment(ex, seller, od["id"])
    with pytest.raises(InvalidRequest) as e:
        call(ex, seller, buyer, od["id"])
    assert why in e.value.message and e.value.status == 422


def test_delivery_urls_and_profiles_are_bounded(world):
    from exchange import sharing

    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    o = trade.create_offer(ex, seller, "ds1", price="100")
    od = trade.place_order(ex, buyer, o["id"], buyer=BUYER)
    trade.confirm_payment(ex, seller, od["id"])
    trade.grant_access(ex, seller, od["id"])
    with pytest.raises(InvalidRequest, match="expires_seconds: 99999999999 is outside"):
        trade.deliver(ex, buyer, od["id"], expires_seconds=99_999_999_999)
    for days in (1e9, float("inf"), float("nan"), "abc", 0, -1):
        with pytest.raises(InvalidRequest, match="days: .* is not a number in"):
            sharing.issue_profile(ex, buyer, od["id"], endpoint="https://x.example/", days=days)


# -- one delivery record for every channel ------------------------------------------------

DELIVERY_FIELDS = {"actor", "order", "grant", "delivery", "buyer", "dataset", "version", "keys",
                   "channel", "delivered_at", "url_expires"}  # fmt: skip


def test_every_channel_records_a_delivery_the_same_way(world):
    """Presigned URLs, a Delta Sharing profile and query, and an HTTP download all go through
    exchange.deliveries: the same event fields, the same order state, a row with its
    channel (the three copies disagreed: no channel for presigned URLs, status set always
    or only from 'granted')."""
    from sqlalchemy import select, update

    from catalogue.models import Resource
    from exchange import deliveries, sharing
    from exchange.models import Delivery, Grant, Order

    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    o = trade.create_offer(ex, seller, "ds1", price="100")
    od = trade.place_order(ex, buyer, o["id"], buyer=BUYER)
    trade.confirm_payment(ex, seller, od["id"])
    trade.grant_access(ex, seller, od["id"])
    p = sharing.issue_profile(ex, buyer, od["id"], endpoint="https://x.example/")
    with ex.catalogue.Session.begin() as s:
        s.execute(update(Resource).values(table_schema=[{"name": "a", "type": "int64"}]))
    token = p["profile"]["bearerToken"]
    share = f"order-{od['id']}"
    ans = sharing.query_table(ex, token, share, "transport", "ds1", {},
                              file_url=lambda k, sec: f"https://x.example/{k}")  # fmt: skip
    assert ans.version == 1
    sharing.query_table(ex, token, share, "transport", "ds1", {},
                        file_url=lambda k, sec: f"https://x.example/{k}")  # fmt: skip
    d = trade.deliver(ex, buyer, od["id"], expires_seconds=60)  # always recorded
    assert d["status"] == "delivered"
    with ex.catalogue.Session() as s:
        gid = s.scalar(select(Grant.id).where(Grant.order_id == od["id"]))
    idx = deliveries.record_delivery_once(
        ex, grant_id=gid, version=1, keys=["bureau/ds1/v1/data/other.parquet"],
        expires=datetime.now(UTC).replace(tzinfo=None), channel="download", actor="bo",
    )  # fmt: skip
    assert isinstance(idx, int)
    again = deliveries.record_delivery_once(
        ex, grant_id=gid, version=1, keys=["bureau/ds1/v1/data/other.parquet"],
        expires=datetime.now(UTC).replace(tzinfo=None), channel="download", actor="bo",
    )  # fmt: skip
    assert again is None  # the same files again: nothing new to record
    events = [e for e in ex.ledger.events(ex.ledger.head_size()) if e["type"] == "delivery.made"]
    assert [(e["channel"], e.get("what")) for e in events] == [
        ("delta-sharing", "profile"), ("delta-sharing", "query"), ("presigned-url", None),
        ("download", None)]  # fmt: skip
    for e in events:
        assert DELIVERY_FIELDS <= set(e), e
        assert (e["buyer"], e["dataset"], e["version"], e["order"]) == (BUYER, "ds1", 1, od["id"])
    assert events[1]["keys"] == events[2]["keys"] == ["bureau/ds1/v1/data/part-0.parquet"]
    assert events[0]["keys"] == []
    with ex.catalogue.Session() as s:
        rows = s.scalars(select(Delivery).order_by(Delivery.created, Delivery.ledger_index)).all()
        assert sorted(r.channel for r in rows) == sorted(e["channel"] for e in events)
        assert all(r.ledger_index is not None for r in rows)
    with pytest.raises(InvalidRequest, match="delivery channel 'carrier-pigeon'"):
        with ex.ledger.transaction() as s:
            g = s.get(Grant, gid)
            deliveries.record_delivery(
                ex, s, grant=g, order=s.get(Order, g.order_id),
                version=1, keys=[], expires=g.expires, channel="carrier-pigeon", actor="x",
            )  # fmt: skip


def test_list_orders_costs_a_fixed_number_of_queries(world):
    """Two queries per order before (payment, grant — plus names and dataset): the count of
    statements no longer grows with the number of orders."""
    from sqlalchemy import event

    ex = world
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    o = trade.create_offer(ex, seller, "ds1", price="100")

    def statements() -> int:
        n = [0]

        def count(*_a, **_k):
            n[0] += 1

        event.listen(ex.engine, "before_cursor_execute", count)
        try:
            rows = trade.list_orders(ex, buyer)
        finally:
            event.remove(ex.engine, "before_cursor_execute", count)
        return n[0], rows

    def buy():
        od = trade.place_order(ex, buyer, o["id"], buyer=BUYER)
        trade.confirm_payment(ex, seller, od["id"])
        trade.grant_access(ex, seller, od["id"])

    buy()
    one, rows = statements()
    assert len(rows) == 1 and rows[0]["paid_on"] and rows[0]["grant_expires"]
    for _ in range(6):
        buy()
    seven, rows = statements()
    assert len(rows) == 7 and all(r["paid_on"] and r["grant_expires"] for r in rows)
    assert seven == one <= 6
