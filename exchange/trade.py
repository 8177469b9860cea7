"""The trade: enterprise profiles, offers, orders, payments, grants, deliveries, refunds.

Every function here is one step of the flow; each checks the actor's role, changes the
working tables and appends one ledger event in the same transaction, and once that has
committed and the event has its index and a signed checkpoint (see
:mod:`exchange.ledger.store`), returns a receipt carrying the event and its inclusion
proof. The CLI, the HTTP API and the demo call these functions.

    offer ──▶ order ──▶ payment confirmed ──▶ access grant ──▶ delivery (presigned URLs)
                                          └──▶ refund (revokes the grant)
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from catalogue.access import DatasetFacts, Principal, may_see
from catalogue.db import referenced
from catalogue.models import Dataset, Organization, Version
from catalogue.registry import find_dataset
from validation.messages import Msg, Term
from validation.money import cny, yuan

from . import credit_code
from .actors import BUYER_ROLES, SELLER_ROLES, Actor, principal_of
from .context import Exchange
from .crossborder import record as crossborder
from .crossborder.record import decision_dict, region_of
from .crossborder.regions import Region, parse_region
from .deliveries import covered_version, granted_order, record_delivery, version_keys
from .errors import (
    EnterpriseNotFound,
    InvalidRequest,
    InvalidState,
    LedgerCorrupt,
    NotAllowed,
    OfferNotFound,
    OrderNotFound,
)
from .grants import SessionGrants
from .ledger.store import Appended, b64
from .models import CrossBorderDecision, Enterprise, Grant, Offer, Order, Payment, Refund
from .registration import require_listable
from .rules import MAX_INT32, bounded_int, bounded_text, parse_day

DELIVERY_MODES = ("presigned-url", "query", "delta-sharing")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def norm_text(v: str | None) -> str | None:
    """NFKC, no spaces, lower case: '广州市南沙区 海滨路 1号' == '广州市南沙区海滨路1号'."""
    if not v:
        return None
    return "".join(unicodedata.normalize("NFKC", v).split()).lower()


def norm_digits(v: str | None) -> str | None:
    if not v:
        return None
    d = "".join(ch for ch in unicodedata.normalize("NFKC", v) if ch.isdigit())
    if len(d) == 13 and d.startswith("86"):  # +86 mobile
        d = d[2:]
    return d or None


def _receipt(ex: Exchange, a: Appended, record: dict, ref=None) -> dict:
    """The receipt of a committed, settled event (``ledger.transaction()`` settles on
    exit): its entry and its inclusion proof against the checkpoint of its batch."""
    import json

    a = ex.ledger.settle(a)
    proof = ex.ledger.inclusion(a.settled_index, checkpoint=a.checkpoint)
    if proof["leaf_hash"] != b64(a.leaf_hash):  # never a proof of another entry
        raise LedgerCorrupt(
            f"ledger entry {a.index} does not hold the leaf of this event: no receipt",
            hint="run `nsdx audit verify`",
            index=a.index,
        )
    if ref is not None and "ledger_index" in record:
        record = {**record, "ledger_index": ref.ledger_index or a.index}
    return {**record, "receipt": {"entry": json.loads(a.payload), **proof}}


def _commit_event(ex: Exchange, s: Session, kind: str, data: dict, ref=None) -> Appended:
    """Append the event in ``s``'s transaction (never waits for the ledger lock); ``ref``
    (a row with ``ledger_index``) receives its index."""
    return ex.ledger.append(s, kind, data, ref=ref)


# -- lookups -------------------------------------------------------------------------------


def _org(s: Session, name: str) -> Organization:
    org = s.scalar(
        select(Organization).where(or_(Organization.name == name, Organization.id == name))
    )
    if org is None:
        raise EnterpriseNotFound(
            Msg("organisation %(org)s not found", org=repr(name)),
            hint=Msg("organisations come from datasets.yaml (`nsdx ingest`) or `nsdx org create`"),
            organization=name,
        )
    return org


def _enterprise(s: Session, org: Organization) -> Enterprise:
    ent = s.scalar(select(Enterprise).where(Enterprise.organization_id == org.id))
    if ent is None:
        raise EnterpriseNotFound(
            Msg(
                "organisation %(org)s has no enterprise profile (credit code, group, ...)",
                org=repr(org.name),
            ),
            hint=Msg(
                "register it: `nsdx exchange enterprise register %(org)s --credit-code ...`",
                org=org.name,
            ),
            organization=org.name,
        )
    return ent


def _dataset(s: Session, name: str) -> Dataset:
    """The catalogue's one dataset lookup (DatasetNotFound, 404, when missing or deleted)."""
    return find_dataset(s, name)


def _offer(s: Session, offer_id: str) -> Offer:
    o = s.get(Offer, offer_id)
    if o is None:
        raise OfferNotFound(_offer_missing(offer_id), hint="`nsdx exchange offers`", offer=offer_id)
    return o


def _offer_missing(offer_id: str) -> Msg:
    return Msg("offer %(offer)s not found", offer=repr(offer_id))


def _order(s: Session, order_id: str) -> Order:
    o = s.get(Order, order_id)
    if o is None:
        raise OrderNotFound(
            Msg("order %(order)s not found", order=repr(order_id)),
            hint="`nsdx exchange orders`",
            order=order_id,
        )
    return o


def _names(s: Session, *org_ids: str) -> list[str]:
    return [referenced(s, Organization, i).name for i in org_ids]


# -- enterprise profiles --------------------------------------------------------------------


def register_enterprise(
    ex: Exchange,
    actor: Actor,
    org: str,
    *,
    credit_code_: str,
    legal_name: str,
    corporate_group: str | None = None,
    legal_representative: str | None = None,
    shareholders: list[str] | None = None,
    controllers: list[str] | None = None,
    registered_address: str | None = None,
    phone: str | None = None,
    bank_account: str | None = None,
    in_nansha: bool = False,
    create_org: bool = False,
    region: str | None = None,
    division: str | None = None,
    ciio: bool | None = None,
) -> dict:
    """Create or update an organisation's enterprise profile (one ledger event).
    ``region`` (mainland | hong-kong | macao | abroad) and, on the mainland, ``division``
    (GB/T 2260) say where it is registered; ``ciio``: a critical-information-infrastructure
    operator. ``None`` keeps what the profile holds (a new profile: the mainland, the credit
    code's division, not a CIIO).

    These three decide the cross-border rules, so the organisation's own admin cannot
    steer them (:func:`_check_where`): its credit code is a mainland registration in the
    division the code names; another region or division, a change of credit code and
    clearing ``ciio`` are the exchange operator's (a sysadmin's), after checking the
    registration documents."""
    code = credit_code.validate(credit_code_)
    if ciio is not None and not isinstance(ciio, bool):
        raise InvalidRequest("ciio must be true or false", field="ciio")
    with ex.ledger.transaction() as s:
        o = s.scalar(select(Organization).where(Organization.name == org))
        if o is None and create_org:
            o = ex.catalogue.ensure_organization(s, org, legal_name)
        o = o or _org(s, org)
        actor.require(o.name, frozenset({"admin"}), "register the enterprise profile")
        ent = s.scalar(select(Enterprise).where(Enterprise.organization_id == o.id))
        if ent is not None:  # what is not given is kept
            region = ent.region if region is None else region
            if division is None and str(region).strip().lower() == (ent.region or "mainland"):
                division = ent.division
        where = parse_region(region, division, credit_division=credit_code.division(code))
        ciio = bool(ent.ciio) if ciio is None and ent is not None else bool(ciio)
        _check_where(actor, o.name, code, where, ciio, ent)
        other = s.scalar(
            select(Enterprise).where(
                Enterprise.credit_code == code, Enterprise.organization_id != o.id
            )
        )
        if other is not None:
            raise InvalidRequest(
                f"credit code {code} is already registered for another organisation",
                hint="one enterprise, one credit code",
                credit_code=code,
            )
        kind = "enterprise.updated" if ent else "enterprise.registered"
        if ent is None:
            ent = Enterprise(organization_id=o.id)
            s.add(ent)
        ent.credit_code = code
        ent.legal_name = legal_name
        ent.corporate_group = corporate_group or None
        ent.legal_representative = legal_representative or None
        ent.shareholders = list(shareholders or [])
        ent.controllers = list(controllers or [])
        ent.registered_address = registered_address or None
        ent.phone = phone or None
        ent.bank_account = bank_account or None
        ent.in_nansha = bool(in_nansha)
        ent.region = where.region
        ent.division = where.division if where.division != credit_code.division(code) else None
        ent.ciio = ciio
        ent.updated = _now()
        s.flush()
        a = _commit_event(ex, s, kind, {"actor": actor.name, **enterprise_facts(ex, o.name, ent)})
    return _receipt(ex, a, enterprise_dict(o.name, ent))


def _check_where(
    actor: Actor, org: str, code: str, where: Region, ciio: bool, ent: Enterprise | None
) -> None:
    """Only the exchange operator (a sysadmin) may place an enterprise elsewhere than its
    credit code says, change a registered credit code, or clear ``ciio``: these decide
    which cross-border rules apply to its sales and purchases (review finding 1)."""
    if actor.sysadmin:
        return
    declared = Region("mainland", credit_code.division(code))
    held = region_of(ent) if ent is not None else None
    hint = (
        "the exchange operator records it after checking the registration documents: ask a "
        "sysadmin (CLI: `nsdx exchange enterprise register ... --user <sysadmin>`)"
    )
    if ent is not None and ent.credit_code != code:
        raise NotAllowed(
            f"credit code: {org!r} is registered as {ent.credit_code}; only the exchange "
            "operator changes a registered enterprise's credit code",
            hint=hint,
            field="credit_code",
            organization=org,
        )
    if where != (held or declared):
        field = "region" if where.region != "mainland" else "division"
        raise NotAllowed(
            f"{field}: the credit code {code} is a mainland registration in division "
            f"{declared.division}; {org!r} cannot declare itself {where.label()}",
            hint=hint,
            field=field,
            organization=org,
        )
    if ent is not None and ent.ciio and not ciio:
        raise NotAllowed(
            f"ciio: {org!r} is recorded as a critical-information-infrastructure operator; "
            "only the exchange operator clears it",
            hint=hint,
            field="ciio",
            organization=org,
        )


def enterprise_facts(ex: Exchange, org: str, ent: Enterprise) -> dict:
    """What the ledger records of a profile: public registry facts in the clear, phone and
    bank account as keyed fingerprints (equal numbers give equal fingerprints)."""
    return {
        "org": org,
        "credit_code": ent.credit_code,
        "legal_name": ent.legal_name,
        "corporate_group": ent.corporate_group,
        "legal_representative": norm_text(ent.legal_representative),
        "shareholders": sorted({norm_text(x) for x in ent.shareholders if x}),
        "controllers": sorted({norm_text(x) for x in ent.controllers if x}),
        "registered_address": norm_text(ent.registered_address),
        "phone_fp": ex.fingerprint(norm_digits(ent.phone)),
        "bank_account_fp": ex.fingerprint(norm_digits(ent.bank_account)),
        "in_nansha": bool(ent.in_nansha),
        "division": credit_code.division(ent.credit_code),
        "region": region_of(ent).to_dict(),
        "ciio": bool(ent.ciio),
    }


def enterprise_dict(org: str, ent: Enterprise) -> dict:
    return {
        "org": org,
        "credit_code": ent.credit_code,
        "legal_name": ent.legal_name,
        "corporate_group": ent.corporate_group,
        "legal_representative": ent.legal_representative,
        "shareholders": ent.shareholders,
        "controllers": ent.controllers,
        "registered_address": ent.registered_address,
        "phone": ent.phone,
        "bank_account": ent.bank_account,
        "in_nansha": ent.in_nansha,
        "region": region_of(ent).to_dict(),
        "ciio": bool(ent.ciio),
    }


def list_enterprises(ex: Exchange, actor: Actor) -> list[dict]:
    with ex.catalogue.Session() as s:
        rows = s.execute(
            select(Organization.name, Enterprise)
            .join(Enterprise, Enterprise.organization_id == Organization.id)
            .order_by(Organization.name)
        ).all()
        out = []
        for name, ent in rows:
            d = enterprise_dict(name, ent)
            if not (actor.can_read_all() or name in actor.orgs()):
                d.update(phone=None, bank_account=None)  # contact details: own org, auditors
            out.append(d)
        return out


# -- offers --------------------------------------------------------------------------------


def create_offer(
    ex: Exchange,
    actor: Actor,
    dataset: str,
    *,
    price: str | int | None = None,
    version: int | None = None,
    licence_terms: str = "",
    term_start: date | str | None = None,
    term_end: date | str | None = None,
    delivery_mode: str = "presigned-url",
    cross_border: bool = False,
    access_days: int = 365,
) -> dict:
    """Offer a dataset for sale: a fixed ``version`` or ``None`` = latest during the term.
    ``price`` defaults to the dataset's list price (``price_cny`` in datasets.yaml), so the
    catalogue page, ``package_show`` and the offer show the same figure."""
    rules = ex.rules
    if delivery_mode not in DELIVERY_MODES:
        raise InvalidRequest(
            f"delivery mode {delivery_mode!r} is not one of {', '.join(DELIVERY_MODES)}",
            delivery_mode=delivery_mode,
        )
    price_fen = (
        None if price is None else rules.amount(price, Msg("price"), minimum=rules.min_order_fen)
    )
    if version is not None:
        version = bounded_int(version, Msg("version"), 1, MAX_INT32)
    access_days = bounded_int(access_days, Msg("access_days"), 1, rules.max_access_days)
    licence_terms = bounded_text(licence_terms, Msg("licence terms"), 10_000)
    today = ex.today()
    start = parse_day(term_start, Msg("term start")) if term_start else today
    if abs((start - today).days) > rules.max_term_days:
        raise InvalidRequest(
            Msg(
                "the term cannot start on %(start)s (today is %(today)s)",
                start=start.isoformat(),
                today=today.isoformat(),
            ),
            hint=Msg(
                "start within %(days)s days of today (trade rules: max_term_days)",
                days=rules.max_term_days,
            ),
        )
    end = parse_day(term_end, Msg("term end")) if term_end else start + timedelta(days=365)
    if end < start:
        raise InvalidRequest(
            Msg(
                "the term ends (%(end)s) before it starts (%(start)s)",
                end=str(end),
                start=str(start),
            )
        )
    if (end - start).days > rules.max_term_days:
        raise InvalidRequest(
            Msg(
                "the term %(start)s..%(end)s is longer than %(days)s days",
                start=str(start),
                end=str(end),
                days=rules.max_term_days,
            ),
            hint=Msg("offer a shorter term (trade rules: max_term_days)"),
        )
    with ex.ledger.transaction() as s:
        ds = _dataset(s, dataset)
        if ds.organization is None:
            raise InvalidRequest(
                Msg("dataset %(name)s has no owning organisation", name=repr(ds.name))
            )
        seller = ds.organization
        actor.require(seller.name, SELLER_ROLES, Msg("offer dataset %(name)s", name=repr(ds.name)))
        ent = _enterprise(s, seller)
        # no scenario, no registration; no registration, no trade (exchange.registration)
        reg = require_listable(s, ds)
        if price_fen is None:
            if not ds.price_fen:
                raise InvalidRequest(
                    Msg("dataset %(name)s has no list price", name=repr(ds.name)),
                    hint=Msg("give the price (--price), or set price_cny in datasets.yaml"),
                    dataset=ds.name,
                )
            price_fen = ds.price_fen
        if version is not None and not s.scalar(
            select(Version.id).where(Version.dataset_id == ds.id, Version.number == version)
        ):
            raise InvalidRequest(
                Msg(
                    "dataset %(name)s has no version %(version)s",
                    name=repr(ds.name),
                    version=version,
                ),
                version=version,
            )
        offer = Offer(
            dataset_id=ds.id,
            seller_id=seller.id,
            version=version,
            price_fen=price_fen,
            licence_terms=licence_terms,
            term_start=start,
            term_end=end,
            delivery_mode=delivery_mode,
            cross_border=bool(cross_border),
            access_days=access_days,
            status="open",
        )
        s.add(offer)
        s.flush()
        a = _commit_event(
            ex,
            s,
            "offer.created",
            {
                "actor": actor.name,
                "offer": offer.id,
                "dataset": ds.name,
                "domain": ds.domain,
                "seller": seller.name,
                "seller_code": ent.credit_code,
                "version": version,
                "price_fen": price_fen,
                "list_price_fen": ds.price_fen,
                "licence_terms": licence_terms,
                "term_start": start.isoformat(),
                "term_end": end.isoformat(),
                "delivery_mode": delivery_mode,
                "cross_border": bool(cross_border),
                "access_days": access_days,
                "registration_code": reg.code,
            },
            ref=offer,
        )
        d = offer_dict(s, offer)
    return _receipt(ex, a, d, ref=offer)


def withdraw_offer(ex: Exchange, actor: Actor, offer_id: str) -> dict:
    with ex.ledger.transaction() as s:
        offer = _offer(s, offer_id)
        (seller,) = _names(s, offer.seller_id)
        actor.require(seller, SELLER_ROLES, Msg("withdraw this offer"))
        if offer.status != "open":
            raise InvalidState(
                Msg(
                    "offer %(offer)s is already %(status)s",
                    offer=offer_id,
                    status=Term(offer.status, "offer"),
                )
            )
        offer.status = "withdrawn"
        a = _commit_event(
            ex, s, "offer.withdrawn", {"actor": actor.name, "offer": offer.id, "seller": seller}
        )
        d = offer_dict(s, offer)
    return _receipt(ex, a, d)


def offer_dict(s: Session, o: Offer) -> dict:
    ds = referenced(s, Dataset, o.dataset_id)
    (seller,) = _names(s, o.seller_id)
    return {
        "id": o.id,
        "dataset": ds.name,
        "seller": seller,
        "version": o.version,
        "version_mode": "fixed" if o.version is not None else "latest-during-term",
        "price_cny": cny(o.price_fen),
        "price_fen": o.price_fen,
        "price_display": yuan(o.price_fen),
        "list_price_cny": cny(ds.price_fen) if ds.price_fen is not None else None,
        "licence_terms": o.licence_terms,
        "term_start": o.term_start.isoformat(),
        "term_end": o.term_end.isoformat(),
        "delivery_mode": o.delivery_mode,
        "cross_border": o.cross_border,
        "access_days": o.access_days,
        "status": o.status,
        "ledger_index": o.ledger_index,
    }


def _load_referenced(s: Session, offers: list[Offer]) -> list[object]:
    """Load the datasets and sellers of ``offers`` into the session in a few queries, so
    that :func:`offer_dict` and the access check find them there (it was three queries per
    offer: 36 statements for the demo's offers). The session holds its rows weakly: keep
    the list returned while they are used."""
    rows: list[object] = []
    dataset_ids = {o.dataset_id for o in offers}
    seller_ids = {o.seller_id for o in offers}
    if dataset_ids:
        rows += s.scalars(select(Dataset).where(Dataset.id.in_(dataset_ids))).all()
    if seller_ids:
        rows += s.scalars(select(Organization).where(Organization.id.in_(seller_ids))).all()
    return rows


def list_offers(
    ex: Exchange, actor: Actor | None = None, *, dataset: str | None = None
) -> list[dict]:
    """Open offers are public (a catalogue) — of the datasets the actor may see (the
    catalogue's access rule: not those made private, drafts or deleted since); withdrawn ones
    only for their seller/auditors."""
    with ex.catalogue.Session() as s:
        q = select(Offer).order_by(Offer.created)
        if dataset:
            q = q.where(Offer.dataset_id == _dataset(s, dataset).id)
        reads_all = actor is not None and actor.can_read_all()
        p, grants = _principal(s, actor), SessionGrants(s)
        offers = list(s.scalars(q))
        loaded = _load_referenced(s, offers)  # noqa: F841 - held while the loop reads them
        out = []
        for o in offers:
            d = offer_dict(s, o)
            if o.status != "open" and not (reads_all or (actor and d["seller"] in actor.orgs())):
                continue
            ds = referenced(s, Dataset, o.dataset_id)
            if not reads_all and not may_see(p, DatasetFacts.of(ds), grants):
                continue
            out.append(d)
        return out


def _principal(s: Session, actor: Actor | None) -> Principal:
    """The catalogue's principal for an exchange actor (roles keyed by organisation id)."""
    return principal_of(s, actor)


# -- orders --------------------------------------------------------------------------------


def place_order(
    ex: Exchange,
    actor: Actor,
    offer_id: str,
    *,
    buyer: str,
    amount: str | int | None = None,
    contract_no: str | None = None,
    other_support: bool = False,
    on: date | str | None = None,
) -> dict:
    """Order an offer for ``buyer`` (an organisation the actor belongs to), dated today (or
    ``on``, within the trade rules' window). ``amount`` defaults to the offer price; a
    negotiated contract value may differ (the event records ``negotiated``, and the seller
    must then confirm the payment with the amount stated). ``other_support`` declares that
    the contract already received other public support (it then earns no reward: no
    stacking)."""
    rules = ex.rules
    day = rules.day(on, Msg("order date"), ex.today())
    amount_in = (
        None if amount is None else rules.amount(amount, Msg("amount"), minimum=rules.min_order_fen)
    )
    contract_no = bounded_text(contract_no, Msg("contract number"), 100) or None
    try:
        return _place_order(ex, actor, offer_id, buyer, amount_in, contract_no, other_support, day)
    except _Refused as r:  # nothing of the order was kept: the refusal is its own event
        crossborder.record_refusal(ex, r.assessment, actor, stage="order")
        raise AssertionError("record_refusal raises") from None


class _Refused(Exception):
    def __init__(self, assessment: crossborder.Assessment) -> None:
        self.assessment = assessment


def _place_order(ex, actor, offer_id, buyer, amount_in, contract_no, other_support, day) -> dict:
    with ex.ledger.transaction() as s:
        offer = _offer(s, offer_id)
        b = _org(s, buyer)
        actor.require(b.name, BUYER_ROLES, Msg("order on behalf of %(org)s", org=repr(b.name)))
        seller = referenced(s, Organization, offer.seller_id)
        if b.id == seller.id:
            raise NotAllowed(
                Msg("'%(org)s' cannot buy its own offer", org=b.name), organization=b.name
            )
        if offer.status != "open":
            raise InvalidState(
                Msg(
                    "offer %(offer)s is %(status)s",
                    offer=offer.id,
                    status=Term(offer.status, "offer"),
                ),
                offer=offer.id,
            )
        if not offer.term_start <= day <= offer.term_end:
            raise InvalidState(
                Msg(
                    "offer %(offer)s runs %(start)s to %(end)s; %(day)s is outside it",
                    offer=offer.id,
                    start=str(offer.term_start),
                    end=str(offer.term_end),
                    day=str(day),
                ),
                offer=offer.id,
            )
        be, se = _enterprise(s, b), _enterprise(s, seller)
        ds = referenced(s, Dataset, offer.dataset_id)
        if not may_see(Principal(roles={b.id: "member"}), DatasetFacts.of(ds), SessionGrants(s)):
            raise OfferNotFound(  # hidden since it was offered: the catalogue's access rule
                _offer_missing(offer_id), hint="`nsdx exchange offers`", offer=offer_id
            )
        # no registration, no trade: a registration cancelled since the offer ends its orders
        require_listable(s, ds)
        xb = crossborder.assess(
            ex, s, offer=offer, seller=seller, seller_ent=se, buyer=b, buyer_ent=be, ds=ds, day=day
        )
        if xb.decision.refused:
            raise _Refused(xb)
        amount_fen = offer.price_fen if amount_in is None else amount_in
        order = Order(
            offer_id=offer.id,
            dataset_id=offer.dataset_id,
            seller_id=seller.id,
            buyer_id=b.id,
            amount_fen=amount_fen,
            contract_no=contract_no,
            status="placed",
            other_support=bool(other_support),
            ordered_on=day,
        )
        s.add(order)
        s.flush()
        a = _commit_event(
            ex,
            s,
            "order.placed",
            {
                "actor": actor.name,
                "order": order.id,
                "offer": offer.id,
                "dataset": ds.name,
                "domain": ds.domain,
                "buyer": b.name,
                "buyer_code": be.credit_code,
                "seller": seller.name,
                "seller_code": se.credit_code,
                "amount_fen": amount_fen,
                "price_fen": offer.price_fen,
                "negotiated": amount_fen != offer.price_fen,
                "contract_no": contract_no,
                "channel": "exchange",
                "other_support": bool(other_support),
                "ordered_on": day.isoformat(),
            },
            ref=order,
        )
        if xb.decision.cross_border:
            crossborder.record_decision(ex, s, xb, order, actor)
        d = order_dict(s, order)
    return _receipt(ex, a, d, ref=order)


def _seller_step(s: Session, actor: Actor, order: Order, what: str) -> str:
    seller = referenced(s, Organization, order.seller_id).name
    actor.require(seller, SELLER_ROLES, what)
    return seller


def confirm_payment(
    ex: Exchange,
    actor: Actor,
    order_id: str,
    *,
    amount: str | int | None = None,
    reference: str = "",
    paid_on: date | str | None = None,
) -> dict:
    """The seller (or the exchange's clearing operator) confirms the buyer's payment: one
    payment of exactly the order amount, dated today (or ``paid_on``, within the trade
    rules' window and not before the order). When the order's amount differs from the
    offer price (a negotiated contract), ``amount`` must be stated: a confirmation never
    takes a buyer's figure on trust."""
    rules = ex.rules
    amount_in = None if amount is None else rules.amount(amount, Msg("payment amount"))
    reference = bounded_text(reference, Msg("payment reference"), 200)
    with ex.ledger.transaction() as s:
        order = _order(s, order_id)
        _seller_step(s, actor, order, Msg("confirm payment of this order"))
        if order.status != "placed":
            raise InvalidState(
                Msg(
                    "order %(order)s is %(status)s, not awaiting payment",
                    order=order.id,
                    status=Term(order.status, "order"),
                )
            )
        day = rules.day(paid_on, Msg("payment date"), ex.today(), not_before=order.ordered_on)
        offer = referenced(s, Offer, order.offer_id)
        if amount_in is None and order.amount_fen != offer.price_fen:
            raise InvalidRequest(
                Msg(
                    "order %(order)s is for %(amount)s, not the offer price %(price)s: state "
                    "the amount received to confirm it",
                    order=order.id,
                    amount=yuan(order.amount_fen),
                    price=yuan(offer.price_fen),
                ),
                hint=Msg(
                    "if that is the signed contract value: `nsdx exchange pay %(order)s "
                    "--amount %(amount)s`",
                    order=order.id,
                    amount=cny(order.amount_fen),
                ),
                order=order.id,
            )
        amount_fen = order.amount_fen if amount_in is None else amount_in
        if amount_fen != order.amount_fen:
            raise InvalidRequest(
                Msg(
                    "payment of %(amount)s does not match the order amount %(due)s",
                    amount=yuan(amount_fen),
                    due=yuan(order.amount_fen),
                ),
                hint=Msg(
                    "one payment settles an order: confirm the full contract value once it "
                    "has arrived"
                ),
                order=order.id,
            )
        pay = Payment(
            order_id=order.id,
            amount_fen=amount_fen,
            reference=reference,
            paid_on=day,
            confirmed_by=actor.name,
        )
        s.add(pay)
        order.status = "paid"
        s.flush()
        a = _commit_event(
            ex,
            s,
            "payment.confirmed",
            {
                "actor": actor.name,
                "order": order.id,
                "payment": pay.id,
                "amount_fen": amount_fen,
                "paid_on": day.isoformat(),
                "reference_fp": ex.fingerprint(reference) if reference else None,
            },
            ref=pay,
        )
        d = order_dict(s, order)
    return _receipt(ex, a, d)


def grant_access(
    ex: Exchange,
    actor: Actor,
    order_id: str,
    *,
    days: int | None = None,
    starts: datetime | None = None,
) -> dict:
    """Grant the buyer access for ``days`` (default: the offer's ``access_days``; at most
    the trade rules' ``max_access_days``) from ``starts`` (default now)."""
    if days is not None:
        days = bounded_int(days, Msg("days"), 1, ex.rules.max_access_days)
    with ex.catalogue.Session() as s:
        order = _order(s, order_id)
        _seller_step(s, actor, order, Msg("grant access for this order"))
        paid = order.status == "paid"
    if paid:  # a route that needs a procedure: blocked (and recorded) until its evidence
        crossborder.check_grant(ex, order_id, actor)
    with ex.ledger.transaction() as s:
        order = _order(s, order_id)
        _seller_step(s, actor, order, Msg("grant access for this order"))
        if order.status != "paid":
            raise InvalidState(
                Msg(
                    "order %(order)s is %(status)s; access is granted after payment",
                    order=order.id,
                    status=Term(order.status, "order"),
                ),
                hint=Msg("confirm payment first: `nsdx exchange pay %(order)s`", order=order.id),
            )
        offer = referenced(s, Offer, order.offer_id)
        version = _granted_version(s, order, offer)
        start = starts or _now()
        expires = start + timedelta(days=days or offer.access_days)
        g = Grant(
            order_id=order.id,
            dataset_id=order.dataset_id,
            buyer_id=order.buyer_id,
            version=version,
            starts=start,
            expires=expires,
        )
        s.add(g)
        order.status = "granted"
        s.flush()
        (buyer,) = _names(s, order.buyer_id)
        a = _commit_event(
            ex,
            s,
            "access.granted",
            {
                "actor": actor.name,
                "order": order.id,
                "grant": g.id,
                "buyer": buyer,
                "dataset": referenced(s, Dataset, order.dataset_id).name,
                "version": version,
                "starts": start.isoformat(timespec="seconds"),
                "expires": expires.isoformat(timespec="seconds"),
            },
            ref=g,
        )
        d = order_dict(s, order)
    return _receipt(ex, a, d)


def _granted_version(s: Session, order: Order, offer: Offer) -> int | None:
    """The version a grant covers: the offer's (``None``: the latest during the term) —
    except for a cross-border order, whose grant covers only the version its decision
    assessed (review finding 2: a later version may hold personal information or a higher
    grade that no decision has weighed and no count has included). A buyer abroad who wants
    a later version orders it again, and that order is decided on its own facts."""
    row = crossborder.decision_of(s, order.id)
    if row is None:
        return offer.version
    if row.version is None:
        raise InvalidState(
            Msg(
                "order %(order)s was decided when %(name)s had no published version: no "
                "version was assessed for the transfer abroad",
                order=order.id,
                name=repr(referenced(s, Dataset, order.dataset_id).name),
            ),
            hint=Msg("refund this order; the buyer orders again once a version is published"),
            order=order.id,
        )
    return row.version


def deliver(ex: Exchange, actor: Actor, order_id: str, *, expires_seconds: int = 3600) -> dict:
    """Hand the buyer presigned URLs to the granted version's files (valid for
    ``expires_seconds``, never beyond the grant); recorded by
    :func:`exchange.deliveries.record_delivery` (channel ``presigned-url``)."""
    if ex.store is None:
        raise InvalidRequest("no object store configured for deliveries")
    seconds_asked = bounded_int(expires_seconds, "expires_seconds", 1, ex.rules.max_url_seconds)
    with ex.ledger.transaction() as s:
        order, g, now = granted_order(
            s,
            actor,
            order_id,
            what=Msg("take delivery of this order"),
            needs=Msg("deliveries need"),
        )
        seconds = int(min(seconds_asked, (g.expires - now).total_seconds()))
        _, ver = covered_version(s, g, order)
        keys = version_keys(s, ver)
        urls = [{"key": k, "url": ex.store.presign(k, seconds)} for k in keys]
        a = record_delivery(
            ex,
            s,
            grant=g,
            order=order,
            version=ver.number,
            keys=keys,
            expires=now + timedelta(seconds=seconds),
            channel="presigned-url",
            actor=actor.name,
            at=now,
        )
        d = order_dict(s, order)
    return _receipt(
        ex,
        a,
        {**d, "delivery": {"version": ver.number, "expires_seconds": seconds, "files": urls}},
    )


def refund(
    ex: Exchange,
    actor: Actor,
    order_id: str,
    *,
    amount: str | int | None = None,
    reason: str = "",
    refunded_on: date | str | None = None,
) -> dict:
    """Refund a paid order (whole or part) and revoke its access grants; dated today (or
    ``refunded_on``, within the trade rules' window and not before the payment)."""
    rules = ex.rules
    amount_in = None if amount is None else rules.amount(amount, Msg("refund amount"))
    reason = bounded_text(reason, Msg("reason"), 2000)
    with ex.ledger.transaction() as s:
        order = _order(s, order_id)
        _seller_step(s, actor, order, Msg("refund this order"))
        if order.status not in ("paid", "granted", "delivered"):
            raise InvalidState(
                Msg(
                    "order %(order)s is %(status)s; only paid orders are refunded",
                    order=order.id,
                    status=Term(order.status, "order"),
                )
            )
        pay = s.scalars(
            select(Payment).where(Payment.order_id == order.id).order_by(Payment.paid_on.desc())
        ).first()
        day = rules.day(
            refunded_on, Msg("refund date"), ex.today(), not_before=pay.paid_on if pay else None
        )
        amount_fen = order.amount_fen if amount_in is None else amount_in
        if not 0 < amount_fen <= order.amount_fen:
            raise InvalidRequest(
                Msg("refund must be between ¥0.01 and %(max)s", max=yuan(order.amount_fen)),
                order=order.id,
            )
        r = Refund(order_id=order.id, amount_fen=amount_fen, reason=reason, refunded_on=day)
        s.add(r)
        for g in s.scalars(select(Grant).where(Grant.order_id == order.id)):
            g.revoked = True
        order.status = "refunded"
        s.flush()
        a = _commit_event(
            ex,
            s,
            "refund.issued",
            {
                "actor": actor.name,
                "order": order.id,
                "refund": r.id,
                "amount_fen": amount_fen,
                "refunded_on": day.isoformat(),
                "reason": reason,
            },
            ref=r,
        )
        d = order_dict(s, order)
    return _receipt(ex, a, d)


def _order_rows(s: Session, orders: list[Order]) -> list[dict[str, Any]]:
    """The dicts of ``orders`` with three queries in all (names, payments, grants), however
    many orders there are."""
    if not orders:
        return []
    ids = [o.id for o in orders]
    org_ids = {o.buyer_id for o in orders} | {o.seller_id for o in orders}
    names = dict(s.execute(select(Organization.id, Organization.name).where(
        Organization.id.in_(org_ids))).all())  # fmt: skip
    datasets = dict(s.execute(select(Dataset.id, Dataset.name).where(
        Dataset.id.in_({o.dataset_id for o in orders}))).all())  # fmt: skip
    decisions = {
        r.order_id: r
        for r in s.scalars(select(CrossBorderDecision).where(CrossBorderDecision.order_id.in_(ids)))
    }
    paid: dict[str, date] = {}
    for oid, day in s.execute(
        select(Payment.order_id, Payment.paid_on)
        .where(Payment.order_id.in_(ids))
        .order_by(Payment.created)
    ):
        paid.setdefault(oid, day)
    newest: dict[str, Grant] = {}
    for grant in s.scalars(select(Grant).where(Grant.order_id.in_(ids)).order_by(Grant.created)):
        newest[grant.order_id] = grant
    out = []
    for o in orders:
        g = newest.get(o.id)
        pay_day = paid.get(o.id)
        out.append(
            {
                "id": o.id,
                "offer": o.offer_id,
                "dataset": datasets.get(o.dataset_id),
                "buyer": names.get(o.buyer_id),
                "seller": names.get(o.seller_id),
                "amount_cny": cny(o.amount_fen),
                "amount_fen": o.amount_fen,
                "amount_display": yuan(o.amount_fen),
                "contract_no": o.contract_no,
                "status": o.status,
                "other_support": o.other_support,
                "ordered_on": o.ordered_on.isoformat() if o.ordered_on else None,
                "paid_on": pay_day.isoformat() if pay_day else None,
                "grant_expires": g.expires.isoformat(timespec="seconds") if g else None,
                "grant_revoked": g.revoked if g else None,
                "ledger_index": o.ledger_index,
                "cross_border": decision_dict(decisions.get(o.id)),
                "created": o.created.isoformat(timespec="seconds"),
            }
        )
    return out


def order_dict(s: Session, o: Order) -> dict[str, Any]:
    return _order_rows(s, [o])[0]


def get_order(ex: Exchange, actor: Actor, order_id: str) -> dict:
    with ex.catalogue.Session() as s:
        o = _order(s, order_id)
        d = order_dict(s, o)
        # an operator's reviewer records the authorities' numbers on cross-border orders
        # (crossborder.require_recorder), so it reads those orders too
        reviews = actor.reviewer and d["cross_border"] is not None
        if not (actor.can_read_all() or reviews or {d["buyer"], d["seller"]} & actor.orgs()):
            raise NotAllowed(
                Msg(
                    "%(actor)s is neither buyer nor seller of order %(order)s",
                    actor=actor.name,
                    order=order_id,
                )
            )
        return d


def list_orders(ex: Exchange, actor: Actor, *, status: str | None = None) -> list[dict]:
    """Orders the actor may see: its organisations' (as buyer or seller), and for a
    reviewer the cross-border ones (as :func:`get_order`); all for auditors. A fixed number
    of queries, however many orders."""
    with ex.catalogue.Session() as s:
        q = select(Order).order_by(Order.created)
        if status:
            q = q.where(Order.status == bounded_text(status, "status", 20))
        if not actor.can_read_all():
            mine = select(Organization.id).where(Organization.name.in_(actor.orgs() or {""}))
            seen = [Order.buyer_id.in_(mine), Order.seller_id.in_(mine)]
            if actor.reviewer:
                seen.append(Order.id.in_(select(CrossBorderDecision.order_id)))
            q = q.where(or_(*seen))
        return _order_rows(s, list(s.scalars(q)))


def record_crossborder_evidence(
    ex: Exchange, actor: Actor, order_id: str, *, kind: str, reference: str
) -> dict:
    """The exporter records a procedure's evidence for a cross-border order (a filing
    number, a security-assessment approval, a PI impact assessment, a certification), in
    the form the cross-border policy sets: one ``crossborder.evidence`` event."""
    a, d = crossborder.record_evidence(ex, actor, order_id, kind=kind, reference=reference)
    return _receipt(ex, a, {"order": order_id, "cross_border": d})


def crossborder_evidence_kinds(actor: Actor, order: dict) -> list[str]:
    """The evidence kinds ``actor`` may record now on ``order`` (a dict of
    :func:`get_order`): the seller its PIA, an operator the authorities' numbers."""
    xb = order.get("cross_border")
    if not xb:
        return []
    return crossborder.recordable_kinds(
        actor, xb["route"], xb["evidence"], str(order["seller"]), str(order["buyer"])
    )
