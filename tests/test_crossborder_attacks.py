"""The cross-border rules against the parties they bind (findings 1-4 of the attacker's-eye
review of issue 16): a seller cannot move itself out of the rules' reach by declaring where
it is, by a "latest" offer whose later versions nobody assessed, by renaming its dataset's
domain, or by recording its own authority's numbers."""

from __future__ import annotations

from datetime import date

import pytest

from catalogue.access import Principal
from catalogue.auth import InvalidInput
from catalogue.editing import Packages
from catalogue.models import Dataset, Organization, Version
from exchange import credit_code, trade
from exchange.actors import Actor
from exchange.errors import NotAllowed
from exchange.grants import holds_grant
from exchange.models import Grant
from tests.registered import register
from tests.test_crossborder_trade import OPERATOR, SELLER, Y, _order, _world

SELLER_CODE = credit_code.make("440115", "MA5ATKT1")  # as tests.test_crossborder_trade


def _register(ex, actor, org, code=SELLER_CODE, **kw):
    return trade.register_enterprise(ex, actor, org, credit_code_=code, legal_name=org, **kw)


def test_an_admin_cannot_declare_where_its_enterprise_is(tmp_path):
    ex = _world(tmp_path)
    admin = Actor.for_org(SELLER)
    # a mainland credit code: the admin cannot say Hong Kong or abroad (rule 1 would let
    # every sale pass as not cross-border) ...
    for region in ("hong-kong", "abroad"):
        with pytest.raises(NotAllowed) as e:
            _register(ex, admin, SELLER, region=region)
        assert e.value.status == 403 and e.value.fields["field"] == "region"
        assert "sysadmin" in e.value.hint
    # ... nor another division than the code's: a Baiyun firm cannot place itself in the
    # Nansha free-trade zone (whose exemption would then apply)
    with ex.catalogue.Session.begin() as s:
        ex.catalogue.ensure_organization(s, "baiyun")
    baiyun = credit_code.make("440111", "MA5BYKT1")
    with pytest.raises(NotAllowed) as e:
        _register(ex, Actor.for_org("baiyun"), "baiyun", baiyun, division="440115")
    assert e.value.fields["field"] == "division"
    r = _register(ex, Actor.for_org("baiyun"), "baiyun", baiyun, division="440111")
    assert r["region"]["division"] == "440111"  # the code's own division is fine
    # nor change its credit code (another code, another division)
    with pytest.raises(NotAllowed) as e:
        _register(ex, Actor.for_org("baiyun"), "baiyun", credit_code.make("440115", "MA5BYKT2"))
    assert e.value.fields["field"] == "credit_code"
    # a critical-information-infrastructure operator stays one unless the operator says not
    _register(ex, OPERATOR, SELLER, ciio=True)
    with pytest.raises(NotAllowed) as e:
        _register(ex, admin, SELLER, ciio=False)
    assert e.value.fields["field"] == "ciio"
    assert _register(ex, admin, SELLER, phone="020-1")["ciio"] is True  # kept when not given
    # the operator records a region outside the mainland; the firm's admin keeps it
    assert _register(ex, OPERATOR, SELLER, region="hong-kong", ciio=False)["region"] == {
        "region": "hong-kong"
    }
    assert _register(ex, admin, SELLER, phone="020-2")["region"] == {"region": "hong-kong"}
    with pytest.raises(NotAllowed):
        _register(ex, admin, SELLER, region="mainland", division="440115")


def test_a_latest_grant_abroad_covers_only_the_assessed_version(tmp_path):
    ex = _world(tmp_path)
    with ex.catalogue.Session.begin() as s:
        org = s.query(Organization).filter_by(name=SELLER).one()
        ds = Dataset(name="trips", domain="transport", access="restricted", organization=org,
                     extras={}, current_version=1, grade="general", has_pi=False,
                     price_fen=100_000)  # fmt: skip
        s.add(ds)
        s.flush()
        s.add(Version(dataset_id=ds.id, number=1, prefix="bureau/trips/v1",
                      storage_url="file://", fingerprint="t1", manifest={}, validation={},
                      individuals=0))  # fmt: skip
    register(ex, "trips", SELLER, scenario="xb")
    seller = Actor.for_org(SELLER)
    day = date(Y, 3, 2)
    offer = trade.create_offer(  # "the latest during the term"
        ex.on_day(day), seller, "trips", cross_border=True, term_start=day,
        term_end=date(Y + 1, 12, 31),
    )["id"]  # fmt: skip
    o = _order(ex, offer, "paris-firm", day)
    assert (o["cross_border"]["route"], o["cross_border"]["rule"]) == (
        "exempt", "no_personal_information",
    )  # fmt: skip
    trade.confirm_payment(ex.on_day(day), seller, o["id"])
    r = trade.grant_access(ex, seller, o["id"])
    assert r["receipt"]["entry"]["version"] == 1
    # the seller then publishes a version with 500,000 passengers' phone numbers
    with ex.catalogue.Session.begin() as s:
        ds = s.query(Dataset).filter_by(name="trips").one()
        s.add(Version(dataset_id=ds.id, number=2, prefix="bureau/trips/v2",
                      storage_url="file://", fingerprint="t2", manifest={}, validation={},
                      individuals=500_000))  # fmt: skip
        ds.current_version, ds.has_pi = 2, True
    with ex.catalogue.Session() as s:
        (g,) = s.query(Grant).filter_by(order_id=o["id"]).all()
        assert g.version == 1
        paris = s.query(Organization).filter_by(name="paris-firm").one().id
        ds_id = s.query(Dataset).filter_by(name="trips").one().id
        now = g.starts
        assert holds_grant(s, [paris], ds_id, 1, now)
        assert not holds_grant(s, [paris], ds_id, 2, now)  # never assessed: not covered


def test_an_editor_cannot_move_a_dataset_off_the_negative_list(tmp_path):
    ex = _world(tmp_path)
    pk = Packages(ex.catalogue)
    with ex.catalogue.Session() as s:
        org_id = s.query(Organization).filter_by(name=SELLER).one().id
    editor = Principal(user_id="ed-1", name="ed", roles={org_id: "editor"})
    with pytest.raises(InvalidInput) as e:
        pk.patch(editor, {"id": "ds40", "extras": [{"key": "domain", "value": "transport-x"}]})
    assert "domain" in e.value.errors and "sysadmin" in str(e.value.errors["domain"][0])
    with ex.catalogue.Session() as s:
        assert s.query(Dataset).filter_by(name="ds40").one().domain == "transport"
    # a title fix that names the same domain is fine; the operator may reclassify
    pk.patch(editor, {"id": "ds40", "title": "x", "extras": [{"key": "domain",
                                                              "value": "transport"}]})  # fmt: skip
    admin = Principal(user_id="root", name="root", sysadmin=True)
    pk.patch(admin, {"id": "ds40", "extras": [{"key": "domain", "value": "economy"}]})
    with ex.catalogue.Session() as s:
        assert s.query(Dataset).filter_by(name="ds40").one().domain == "economy"


def test_authority_numbers_are_recorded_by_an_operator_not_the_parties(tmp_path):
    ex = _world(tmp_path)
    seller = Actor.for_org(SELLER)
    o = _order(ex, trade.create_offer(
        ex.on_day(date(Y, 6, 2)), seller, "imp", cross_border=True, term_start=date(Y, 6, 2),
        term_end=date(Y + 1, 12, 31))["id"], "hk-firm", date(Y, 6, 2))  # fmt: skip
    assert o["cross_border"]["missing_evidence"] == ["approval"]
    trade.confirm_payment(ex.on_day(date(Y, 6, 2)), seller, o["id"])
    ref = {"kind": "approval", "reference": "SA-2025-000311"}
    own_reviewer = Actor("rev-in-house", roles={SELLER: "editor"}, reviewer=True)
    for who in (seller, Actor.for_org("hk-firm"), own_reviewer):
        with pytest.raises(NotAllowed) as e:
            trade.record_crossborder_evidence(ex, who, o["id"], **ref)
        assert e.value.status == 403 and e.value.fields["field"] == "kind"
        assert "operator" in e.value.hint
    assert trade.get_order(ex, seller, o["id"])["cross_border"]["evidence"] == {}
    # the operator's reviewer finds the order and opens it (the portal's order page calls
    # the same get_order), sees what it may record, and records it
    rev = Actor("rev", reviewer=True)
    assert [x["id"] for x in trade.list_orders(ex, rev)] == [o["id"]]
    assert trade.crossborder_evidence_kinds(rev, trade.get_order(ex, rev, o["id"])) == ["approval"]
    domestic = trade.create_offer(ex.on_day(date(Y, 6, 2)), seller, "imp",
                                  term_start=date(Y, 6, 2), term_end=date(Y + 1, 12, 31))  # fmt: skip
    with ex.catalogue.Session.begin() as s:
        ex.catalogue.ensure_organization(s, "gz-firm")
    trade.register_enterprise(ex, Actor.for_org("gz-firm"), "gz-firm", legal_name="gz-firm",
                              credit_code_=credit_code.make("440115", "MA59XKT1"))  # fmt: skip
    plain = _order(ex, domestic["id"], "gz-firm", date(Y, 6, 3))
    assert plain["cross_border"] is None
    with pytest.raises(NotAllowed):  # a domestic order is not the reviewer's business
        trade.get_order(ex, rev, plain["id"])
    assert plain["id"] not in {x["id"] for x in trade.list_orders(ex, rev)}
    r = trade.record_crossborder_evidence(ex, rev, o["id"], **ref)
    assert r["receipt"]["entry"]["actor"] == "rev"
    assert trade.grant_access(ex, seller, o["id"])["status"] == "granted"
