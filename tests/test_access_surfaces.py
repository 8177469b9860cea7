"""The access table (catalogue.access.TABLE) driven through every surface of a real
deployment: eight datasets, one per row of the table, published by the real pipeline;
eight principals, one per column; the buyer's grants made by the real exchange (offer,
order, payment, grant, refund, an expired term); then the seller hides, drafts and deletes.

For each (role, dataset) the test asks every surface and asserts the answer the table
gives — the same visibility everywhere:

* see — package_show; package_search results, count and organisation facet;
  organization_list and organization_show counts; /catalog.jsonld; the dataset's JSON-LD
  and Croissant; the portal's dataset page, search page and organisation page (signed in);
  the exchange's list of open offers;
* read — the query API; the download route; and, for the buyer's grants, exchange
  deliveries and Delta Sharing (a profile is bound to a grant, not to a user).
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta

import pytest

from catalogue.access import TABLE, TABLE_ROLES
from catalogue.signin import set_password, sign_in
from nsdx.core import Nsdx
from nsdx.settings import Settings
from tests.conftest import create_pg_database, drop_pg_database, pg_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from nsdx.web import create_app
from nsdx.web.session import COOKIE

SELLER, OTHER, BUYER = "seller", "rival", "firm"
STATES = list(TABLE)
GRANTED = ("private", "draft", "deleted", "bought", "refunded", "expired")  # the buyer's orders
PASSWORD = "correct horse battery staple 7"


def ds(state: str) -> str:
    return f"ds-{state}"


def _datasets_yaml() -> str:
    rows = []
    for st in STATES:
        access = "open" if st == "open" else "restricted"
        price = "" if st == "open" else ", price_cny: 100"
        rows.append(
            f"  - {{id: {ds(st)}, title: 数据{st}, domain: test, organization: {SELLER},\n"
            f"     licence: CC-BY-4.0, access: {access}{price}, "
            f"source: {{path: data.csv, format: csv}}}}"
        )
    return "datasets:\n" + "\n".join(rows) + "\n"


def _trade(nx: Nsdx) -> dict[str, str]:
    """The buyer's orders (dataset state -> order id), each granted; then refunded/expired."""
    from exchange import credit_code, trade
    from exchange.actors import Actor

    ex = nx.exchange
    for i, org in enumerate((SELLER, BUYER, OTHER)):
        trade.register_enterprise(
            ex, Actor.for_org(org), org, credit_code_=credit_code.make("440115", f"MA5{i}ACC1"),
            legal_name=org, in_nansha=True,
        )  # fmt: skip
    seller, buyer = Actor.for_org(SELLER), Actor.for_org(BUYER, "member")
    orders = {}
    from tests.registered import register

    for st in GRANTED:
        register(ex, ds(st), SELLER)  # no registration, no trade
        offer = trade.create_offer(ex, seller, ds(st), price="100")
        o = trade.place_order(ex, buyer, offer["id"], buyer=BUYER)
        trade.confirm_payment(ex, seller, o["id"])
        if st == "expired":
            start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
            trade.grant_access(ex, seller, o["id"], days=1, starts=start)
        else:
            trade.grant_access(ex, seller, o["id"], days=30)
        if st == "refunded":
            trade.refund(ex, seller, o["id"], reason="test")
        orders[st] = o["id"]
    return orders


class World:
    def __init__(self, nx: Nsdx, client: TestClient, tokens: dict, cookies: dict, orders: dict):
        self.nx, self.client, self.tokens, self.cookies, self.orders = (
            nx, client, tokens, cookies, orders,
        )  # fmt: skip

    def get(self, role: str, path: str, **kw):
        token = self.tokens[role]
        headers = {"Authorization": token} if token else {}
        return self.client.get(path, headers=headers, **kw)

    def page(self, role: str, path: str):
        self.client.cookies.clear()
        if self.cookies[role]:
            self.client.cookies.set(COOKIE, self.cookies[role])
        try:
            return self.client.get(path)
        finally:
            self.client.cookies.clear()

    def action(self, role: str, name: str, **params) -> tuple[int, dict]:
        r = self.get(role, f"/api/3/action/{name}", params=params)
        return r.status_code, r.json()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request, tmp_path_factory, pg_available):
    root = tmp_path_factory.mktemp("access")
    (root / "data.csv").write_text("k,v\na,1\nb,2\n", encoding="utf-8")
    (root / "datasets.yaml").write_text(_datasets_yaml(), encoding="utf-8")
    pg = None
    if request.param == "postgres":
        if not pg_available:
            pytest.skip("PostgreSQL not reachable (NSDX_TEST_PG)")
        pg = create_pg_database()
        url = pg_url(pg)
    else:
        url = f"sqlite:///{root / 'nsdx.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("NSDX_PII_KEY", "test-pii-key")
    home = root / "home"
    nx = Nsdx(Settings(home=home, database_url=url, storage_url=f"file://{home / 'objects'}",
                       datasets_path=root / "datasets.yaml"))  # fmt: skip
    try:
        assert {r.status for r in nx.ingest(all_=True)} == {"published"}
        acc = nx.accounts
        for org in (OTHER, BUYER):
            acc.create_org(org)
        users = {
            "member": dict(org=SELLER, role="member"),
            "editor": dict(org=SELLER, role="editor"),
            "admin": dict(org=SELLER, role="admin"),
            "other_org": dict(org=OTHER, role="admin"),
            "auditor": dict(auditor=True),
            "sysadmin": dict(sysadmin=True),
            "buyer": dict(org=BUYER, role="member"),
        }
        tokens, cookies = {"anonymous": None}, {"anonymous": None}
        for role, how in users.items():
            org, r = how.pop("org", None), how.pop("role", None)
            acc.create_user(role, **how)
            if org:
                acc.add_member(org, role, r)
            tokens[role] = acc.create_token(role)[0]
            set_password(acc, role, PASSWORD)
            cookies[role] = sign_in(acc, role, PASSWORD).secret
        orders = _trade(nx)
        packages, system = nx.packages, acc.principal("sysadmin")
        packages.patch(system, {"id": ds("private"), "private": True})
        packages.patch(system, {"id": ds("draft"), "state": "draft"})
        packages.delete(system, ds("deleted"))
        with TestClient(create_app(nx, warm=False, worker=False)) as client:
            yield World(nx, client, tokens, cookies, orders)
    finally:
        mp.undo()
        if pg:
            from catalogue.db import dispose_all

            dispose_all()
            drop_pg_database(pg)


def sees(role: str, state: str) -> bool:
    return TABLE[state][role] in ("see", "read")


def reads(role: str, state: str) -> bool:
    return TABLE[state][role] == "read"


ROLES = list(TABLE_ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_metadata_surfaces(world, role):
    seen = {st for st in STATES if sees(role, st)}
    seen_active = seen - {"draft", "deleted"}
    # package_show, the dataset's JSON-LD and Croissant, the portal's dataset page
    for st in STATES:
        want = sees(role, st)
        status, body = world.action(role, "package_show", id=ds(st))
        assert (status == 200) is want, (role, st, status, body)
        if not want:
            assert status == (404 if st == "deleted" else 403), (role, st, status)
        for path in (f"/dataset/{ds(st)}.jsonld", f"/dataset/{ds(st)}/croissant.json"):
            r = world.get(role, path)
            assert (r.status_code == 200) is want, (role, st, path, r.status_code)
        r = world.page(role, f"/dataset/{ds(st)}")
        assert (r.status_code == 200) is want, (role, st, "page", r.status_code)
    # package_search with everything asked for: results, count, organisation facet
    status, body = world.action(
        role, "package_search", include_private="true", include_drafts="true",
        include_deleted="true", rows=100, **{"facet.field": '["organization"]'},
    )  # fmt: skip
    assert status == 200, body
    res = body["result"]
    assert {p["name"] for p in res["results"]} == {ds(st) for st in seen}, role
    assert res["count"] == len(seen)
    assert res["facets"]["organization"].get(SELLER, 0) == len(seen)
    # what is listed by default: active datasets, private ones with include_private
    res = world.action(role, "package_search", include_private="true", rows=100)[1]["result"]
    assert {p["name"] for p in res["results"]} == {ds(st) for st in seen_active}, role
    # organisation counts: the active datasets the caller sees
    status, body = world.action(role, "organization_list", all_fields="true")
    counts = {o["name"]: o["package_count"] for o in body["result"]}
    assert counts[SELLER] == len(seen_active), role
    assert world.action(role, "organization_show", id=SELLER)[1]["result"]["package_count"] == len(
        seen_active
    )
    # DCAT catalogue: what the caller sees, private included
    r = world.get(role, "/catalog.jsonld")
    listed = set(re.findall(r"/dataset/(ds-[a-z]+)\b", r.text))
    assert listed == {ds(st) for st in seen_active}, role
    # the portal's search and organisation pages (signed in): drafts shown to who sees them
    for path in ("/", f"/organization/{SELLER}"):
        r = world.page(role, path)
        assert r.status_code == 200, (role, path)
        shown = set(re.findall(r'href="/dataset/(ds-[a-z]+)"', r.text))
        assert shown == {ds(st) for st in seen - {"deleted"}}, (role, path)


@pytest.mark.parametrize("role", ROLES)
def test_exchange_offers_follow_the_rule(world, role):
    """Open offers are a public catalogue of what the caller may see: an offer of a dataset
    made private, a draft or deleted since is listed only for those who still see it
    (auditors read every exchange record)."""
    r = world.get(role, "/api/exchange/offers")
    assert r.status_code == 200, r.text
    listed = {o["dataset"] for o in r.json()}
    offered = {ds(st) for st in GRANTED}
    want = offered if role == "auditor" else {ds(st) for st in GRANTED if sees(role, st)}
    assert listed == want, role


@pytest.mark.parametrize("role", ROLES)
def test_data_surfaces(world, role):
    for st in STATES:
        want = reads(role, st)
        view = f"test.ds_{st}"
        r = world.client.post(
            "/api/query",
            json={"sql": f"SELECT count(*) AS n FROM {view}"},
            headers={"Authorization": world.tokens[role]} if world.tokens[role] else {},
        )
        assert (r.status_code == 200) is want, (role, st, r.status_code, r.text[:200])
        if want:
            assert r.json()["rows"] == [[2]]
        r = world.get(role, f"/dataset/{ds(st)}/v1/{ds(st)}.parquet")
        assert (r.status_code == 200) is want, (role, st, "download", r.status_code)
        if not want:
            assert r.status_code in (401, 403, 404), (role, st, r.status_code)


@pytest.mark.parametrize("state", GRANTED)
def test_buyer_deliveries_and_delta_sharing(world, state):
    """The buyer's own grant, in hand: a delivery and a Delta Sharing listing work exactly
    when the table says the buyer reads the dataset."""
    from exchange import sharing, trade
    from exchange.actors import Actor
    from validation.errors import NsdxError

    want = reads("buyer", state)
    ex, order = world.nx.exchange, world.orders[state]
    try:
        d = trade.deliver(ex, Actor.for_org(BUYER, "member"), order)
        delivered = bool(d["delivery"]["files"])
    except NsdxError:
        delivered = False
    assert delivered is want, state
    with ex.catalogue.Session() as s:
        from exchange.models import Grant

        g = s.query(Grant).filter(Grant.order_id == order).order_by(Grant.created.desc()).first()
    token = sharing.make_token(ex, g.id, datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1))
    r = world.client.get(
        f"/delta-sharing/shares/order-{order}/all-tables",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (r.status_code == 200) is want, (state, r.status_code, r.text[:200])
    if want:
        assert [t["name"] for t in r.json()["items"]] == [ds(state)]


def test_offers_of_hidden_datasets_cannot_be_ordered(world):
    """An open offer of a dataset the buying organisation may no longer see is not found."""
    from exchange import trade
    from exchange.actors import Actor
    from exchange.errors import OfferNotFound

    ex = world.nx.exchange
    offer_of = {o["dataset"]: o["id"] for o in trade.list_offers(ex, Actor.auditor_())}
    for st in ("private", "draft", "deleted"):
        with pytest.raises(OfferNotFound):
            trade.place_order(ex, Actor.for_org(OTHER), offer_of[ds(st)], buyer=OTHER)
    # the buyer, whose grant for the private dataset is live, still sees it and may renew
    o = trade.place_order(ex, Actor.for_org(BUYER, "member"), offer_of[ds("private")], buyer=BUYER)
    assert o["status"] == "placed"
