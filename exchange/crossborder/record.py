"""The cross-border rules in the trade: gather an order's facts, decide (one call of
:func:`exchange.crossborder.decide.decide`), and record the decision, every refusal and
every evidence reference as ledger events.

* :func:`assess` — inside the order's transaction: the facts and the decision;
* :func:`record_decision` — the ``crossborder.decided`` event and the working row, in the
  order's transaction (a refusal creates no order: :func:`record_refusal` appends
  ``crossborder.refused`` in its own transaction, then the caller raises);
* :func:`check_grant` — a grant of an order whose route needs a procedure is blocked until
  the evidence is recorded (the blocked attempt is a ``crossborder.refused`` event too);
* :func:`record_evidence` — ``crossborder.evidence``: a filing number, an approval number,
  a PIA reference or a certification, in the form the policy sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalogue.models import Dataset, Organization, Version
from validation.messages import Msg, Term

from .. import credit_code
from ..actors import SELLER_ROLES, Actor
from ..errors import (
    CrossBorderBlocked,
    CrossBorderRefused,
    InvalidRequest,
    InvalidState,
    NotAllowed,
    OrderNotFound,
)
from ..models import CrossBorderDecision, Enterprise, Offer, Order
from .decide import REQUIRES, Decision, Transfer, add_working_days, decide
from .policy import EVIDENCE_KINDS, CrossBorderPolicy
from .regions import Region

if TYPE_CHECKING:
    from ..context import Exchange

#: Evidence each route accepts (the grant needs one of REQUIRES; the GBA filing follows).
ACCEPTS: dict[str, tuple[str, ...]] = {
    "standard_contract": ("filing", "certification"),
    "certification": ("filing", "certification"),
    "gba_standard_contract": ("pia", "gba_filing"),
    "security_assessment": ("approval",),
}


def region_of(ent: Enterprise) -> Region:
    if (ent.region or "mainland") != "mainland":
        return Region(ent.region)
    return Region("mainland", ent.division or credit_code.division(ent.credit_code))


@dataclass
class Assessment:
    decision: Decision
    policy: CrossBorderPolicy
    facts: dict[str, Any]  # what the events record
    transfer: Transfer
    seller_id: str
    dataset_id: str
    version: int | None
    day: date


def assess(
    ex: Exchange,
    s: Session,
    *,
    offer: Offer,
    seller: Organization,
    seller_ent: Enterprise,
    buyer: Organization,
    buyer_ent: Enterprise,
    ds: Dataset,
    day: date,
) -> Assessment:
    """The decision of an order of ``offer`` by ``buyer`` on ``day`` (inside the order's
    transaction: the exporter's profile row is locked so that concurrent orders count in
    turn)."""
    policy = ex.crossborder_policy
    s.execute(select(Enterprise.id).where(Enterprise.id == seller_ent.id).with_for_update())
    number = offer.version if offer.version is not None else ds.current_version
    individuals = None
    if number is not None:
        individuals = s.scalar(
            select(Version.individuals).where(Version.dataset_id == ds.id, Version.number == number)
        )
    prior = list(
        s.execute(
            select(
                CrossBorderDecision.individuals,
                CrossBorderDecision.sensitive,
                CrossBorderDecision.dataset_id,
                CrossBorderDecision.version,
            ).where(
                CrossBorderDecision.seller_id == seller.id,
                CrossBorderDecision.year == day.year,
                CrossBorderDecision.route != "refused",
            )
        )
    )
    t = Transfer(
        seller=region_of(seller_ent),
        buyer=region_of(buyer_ent),
        exporter_ciio=bool(seller_ent.ciio),
        offer_cross_border=bool(offer.cross_border),
        grade=ds.grade or "general",
        domain=ds.domain,
        category=ds.data_category,
        has_pi=bool(ds.has_pi),
        sensitive_pi=bool(ds.sensitive_pi),
        individuals=individuals,
        prior_individuals=sum(p[0] for p in prior),
        prior_sensitive=sum(p[1] for p in prior),
        counted_before=any(p[2] == ds.id and p[3] == number for p in prior),
    )
    d = decide(t, policy)
    facts = {
        "offer": offer.id,
        "dataset": ds.name,
        "domain": ds.domain,
        "data_category": ds.data_category,
        "version": number,
        "grade": t.grade,
        "has_pi": t.has_pi,
        "sensitive_pi": t.sensitive_pi,
        "seller": seller.name,
        "seller_code": seller_ent.credit_code,
        "seller_region": t.seller.to_dict(),
        "exporter_ciio": t.exporter_ciio,
        "buyer": buyer.name,
        "buyer_code": buyer_ent.credit_code,
        "buyer_region": t.buyer.to_dict(),
        "year": day.year,
        "decided_on": day.isoformat(),
        **d.to_dict(),
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
    }
    return Assessment(d, policy, facts, t, seller.id, ds.id, number, day)


def record_decision(ex: Exchange, s: Session, a: Assessment, order: Order, actor: Actor) -> None:
    """The ``crossborder.decided`` event and working row of a cross-border order."""
    d = a.decision
    added = 0
    if a.transfer.has_pi and not a.transfer.counted_before:
        added = a.transfer.individuals or 0
    due = None
    if d.route == "gba_standard_contract":
        due = add_working_days(a.day, a.policy.gba_filing_working_days)
    row = CrossBorderDecision(
        order_id=order.id,
        seller_id=a.seller_id,
        dataset_id=a.dataset_id,
        version=a.version,
        year=a.day.year,
        decided_on=a.day,
        route=d.route,
        rule=d.rule,
        individuals=added,
        sensitive=added if a.transfer.sensitive_pi else 0,
        policy_sha256=a.policy.sha256,
        evidence={},
        filing_due=due,
    )
    s.add(row)
    s.flush()
    ex.ledger.append(
        s,
        "crossborder.decided",
        {
            "actor": actor.name,
            "order": order.id,
            **a.facts,
            "individuals_added": added,
            "filing_due": due.isoformat() if due else None,
        },
        ref=row,
    )


def record_refusal(ex: Exchange, a: Assessment, actor: Actor, *, stage: str, order=None):
    """Append ``crossborder.refused`` in its own transaction and raise
    :class:`CrossBorderRefused` naming the rule and the ledger entry."""
    with ex.ledger.transaction() as s:
        ap = ex.ledger.append(
            s,
            "crossborder.refused",
            {"actor": actor.name, "stage": stage, "order": order, **a.facts},
        )
    ap = ex.ledger.settle(ap)
    d = a.decision
    raise CrossBorderRefused(
        Msg(
            "cross-border sale refused (%(rule)s): %(detail)s",
            rule=Term(d.rule, "xbrule"),
            detail=d.detail,
        ),
        hint=Msg(
            "core data and offers not made for cross-border sale cannot be sold to a buyer "
            "outside the mainland; see docs/exchange.md (cross-border transfers)"
        ),
        rule=d.rule,
        route=d.route,
        ledger_index=ap.index,
    )


def decision_of(s: Session, order_id: str) -> CrossBorderDecision | None:
    return s.scalar(select(CrossBorderDecision).where(CrossBorderDecision.order_id == order_id))


def missing_evidence(row: CrossBorderDecision | None) -> tuple[str, ...]:
    """The evidence kinds of which one must be recorded before the grant (empty: none)."""
    if row is None:
        return ()
    need = REQUIRES.get(row.route, ())
    if row.route == "certification":
        need = REQUIRES["standard_contract"]
    if not need or any(k in (row.evidence or {}) for k in need):
        return ()
    return need


def check_grant(ex: Exchange, order_id: str, actor: Actor) -> None:
    """Raise :class:`CrossBorderBlocked` (after recording the refusal in the ledger) when the
    order's route needs a procedure whose evidence is not recorded yet."""
    with ex.catalogue.Session() as s:
        row = decision_of(s, order_id)
        need = missing_evidence(row)
        if not need or row is None:
            return
        route, rule = row.route, row.rule
        seller = s.get(Organization, row.seller_id)
        ds = s.get(Dataset, row.dataset_id)
        order = s.get(Order, order_id)
        buyer = s.get(Organization, order.buyer_id) if order else None
        facts = {
            "order": order_id,
            "seller": seller.name if seller else None,
            "buyer": buyer.name if buyer else None,
            "dataset": ds.name if ds else None,
            "route": route,
            "rule": "evidence_missing",
            "decision_rule": rule,
            "detail": missing_reason(route, rule, need),
            "requires": list(need),
            "year": row.year,
            "decided_on": ex.today().isoformat(),
            "policy_sha256": row.policy_sha256,
        }
    with ex.ledger.transaction() as s:
        ap = ex.ledger.append(
            s, "crossborder.refused", {"actor": actor.name, "stage": "grant", **facts}
        )
    ap = ex.ledger.settle(ap)
    raise CrossBorderBlocked(
        Msg(
            "order %(order)s needs %(route)s (%(rule)s): access cannot be granted until its "
            "%(kinds)s reference is recorded",
            order=order_id,
            route=Term(route.replace("_", " "), "route", msgid=route),
            rule=Term(rule, "xbrule"),
            kinds=_kinds(need),
        ),
        hint=Msg(
            "record it: `nsdx exchange evidence %(order)s --kind %(kind)s --ref ...`",
            order=order_id,
            kind=need[0],
        ),
        order=order_id,
        route=route,
        requires=list(need),
        ledger_index=ap.index,
    )


def _kinds(need: tuple[str, ...] | list[str]) -> str:
    """'filing or certification' (the evidence kinds, in the reader's language)."""
    k = [Term(x, "evidence") for x in need]
    if len(k) == 1:
        return k[0]
    if len(k) == 2:
        return Msg("%(a)s or %(b)s", a=k[0], b=k[1])
    return " or ".join(k)


def missing_reason(route: str, rule: str, need: tuple[str, ...] | list[str]) -> Msg:
    """Why a grant is refused while the route's evidence is missing (the refusal's
    ``detail`` in the ledger; :mod:`.report` rebuilds it from the entry's fields)."""
    return Msg(
        "%(route)s (%(rule)s) needs its %(kinds)s reference before the grant",
        route=Term(route, "route"),
        rule=Term(rule, "xbrule"),
        kinds=_kinds(need),
    )


def check_reference(policy: CrossBorderPolicy, kind: Any, reference: Any) -> tuple[str, str]:
    if kind not in EVIDENCE_KINDS:
        raise InvalidRequest(
            Msg(
                "kind: %(kind)s is not one of %(kinds)s",
                kind=repr(str(kind)[:40]),
                kinds=", ".join(EVIDENCE_KINDS),
            ),
            hint=Msg(
                "filing (standard contract), gba_filing, pia (PI impact assessment), "
                "certification, approval (security assessment)"
            ),
            field="kind",
        )
    fmt = policy.evidence[kind]
    ref = reference.strip() if isinstance(reference, str) else ""
    if not ref or len(ref) > 100 or not ref.isascii() or not re.fullmatch(fmt.pattern, ref):
        raise InvalidRequest(
            Msg(
                "reference: %(ref)s is not a %(kind)s reference",
                ref=repr(str(reference)[:40]),
                kind=Term(kind, "evidence"),
            ),
            hint=Msg(
                "write it like %(example)s (the policy's evidence.%(kind)s.pattern)",
                example=fmt.example,
                kind=kind,
            ),
            field="reference",
            kind=kind,
        )
    return str(kind), ref


#: Evidence the exporter itself records: its own PI impact assessment. Every other kind is
#: a number an authority or an accredited body issued (filing, approval, certification),
#: recorded by an operator role (:func:`require_recorder`), never by the granting party.
SELLER_EVIDENCE = ("pia",)


def require_recorder(actor: Actor, kind: str, seller: str, buyer: str) -> None:
    """Who may record ``kind`` for an order of ``seller`` to ``buyer``: a ``pia`` — the
    seller (admin or editor) or the operator; an authority's number — a sysadmin or a
    reviewer who belongs to neither party (review finding 4)."""
    if kind in SELLER_EVIDENCE:
        actor.require(seller, SELLER_ROLES, Msg("record cross-border evidence for this order"))
        return
    actor._writable(Msg("record cross-border evidence"))
    parties = sorted({seller, buyer} & actor.orgs())
    if not (actor.sysadmin or actor.reviewer) or parties:
        why = (
            Msg(
                "%(actor)s belongs to %(orgs)s, a party to the order",
                actor=actor.name,
                orgs=", ".join(repr(p) for p in parties),
            )
            if parties and (actor.sysadmin or actor.reviewer)
            else Msg("%(actor)s is not an exchange operator", actor=actor.name)
        )
        raise NotAllowed(
            Msg(
                "kind: a %(kind)s number is issued by an authority and recorded by the exchange "
                "operator (a sysadmin or reviewer of neither party), not by the parties: %(why)s",
                kind=Term(kind, "evidence"),
                why=why,
            ),
            hint=Msg(
                "send the authority's notice to the exchange operator, who records it (CLI: "
                "`nsdx exchange evidence ORDER --kind %(kind)s --ref ... --user <operator>`); "
                "the seller records only its pia",
                kind=kind,
            ),
            field="kind",
            kind=kind,
        )


def recordable_kinds(
    actor: Actor, route: str, evidence: dict, seller: str, buyer: str
) -> list[str]:
    """The evidence kinds ``actor`` may record now on an order of ``route`` (those the route
    accepts, not recorded yet, that :func:`require_recorder` lets this actor record): what
    the portal offers in its form."""
    out = []
    for kind in ACCEPTS.get(route, ()):
        if kind in evidence:
            continue
        try:
            require_recorder(actor, kind, seller, buyer)
        except NotAllowed:
            continue
        out.append(kind)
    return out


def record_evidence(ex: Exchange, actor: Actor, order_id: str, *, kind: Any, reference: Any):
    """Record a procedure's evidence for a cross-border order: one ``crossborder.evidence``
    event. The seller records its PI impact assessment; filing, approval and certification
    numbers are recorded by an operator (:func:`require_recorder`). A certification on a
    standard-contract route makes the route ``certification``."""
    kind, ref = check_reference(ex.crossborder_policy, kind, reference)
    with ex.ledger.transaction() as s:
        order = s.get(Order, order_id)
        if order is None:
            raise OrderNotFound(
                Msg("order %(order)s not found", order=repr(order_id)), order=order_id
            )
        seller_name = s.scalar(select(Organization.name).where(Organization.id == order.seller_id))
        buyer_name = s.scalar(select(Organization.name).where(Organization.id == order.buyer_id))
        require_recorder(actor, kind, str(seller_name), str(buyer_name))
        row = decision_of(s, order.id)
        if row is None or row.route not in ACCEPTS:
            raise InvalidState(
                Msg(
                    "order %(order)s needs no cross-border procedure (%(why)s)",
                    order=order.id,
                    why=Term(row.route, "route") if row else Msg("not a cross-border order"),
                ),
                order=order.id,
            )
        if kind not in ACCEPTS[row.route]:
            raise InvalidRequest(
                Msg(
                    "kind: a %(kind)s reference does not belong to the %(route)s route",
                    kind=Term(kind, "evidence"),
                    route=Term(row.route, "route"),
                ),
                hint=Msg("this order accepts %(kinds)s", kinds=", ".join(ACCEPTS[row.route])),
                field="kind",
            )
        if kind in (row.evidence or {}):
            raise InvalidState(
                Msg(
                    "order %(order)s already has its %(kind)s reference (%(ref)s)",
                    order=order.id,
                    kind=Term(kind, "evidence"),
                    ref=row.evidence[kind],
                ),
                order=order.id,
            )
        row.evidence = {**(row.evidence or {}), kind: ref}
        if kind == "certification" and row.route == "standard_contract":
            row.route = "certification"
        late = None
        if kind == "gba_filing" and row.filing_due is not None:
            late = ex.today() > row.filing_due
        s.flush()
        ap = ex.ledger.append(
            s,
            "crossborder.evidence",
            {
                "actor": actor.name,
                "order": order.id,
                "seller": seller_name,
                "kind": kind,
                "reference": ref,
                "route": row.route,
                "recorded_on": ex.today().isoformat(),
                "filing_late": late,
                "policy_sha256": ex.crossborder_policy.sha256,
            },
        )
        out = decision_dict(row)
    return ap, out


def decision_dict(row: CrossBorderDecision | None) -> dict | None:
    if row is None:
        return None
    return {
        "route": row.route,
        "rule": row.rule,
        "year": row.year,
        "individuals_added": row.individuals,
        "evidence": dict(row.evidence or {}),
        "missing_evidence": list(missing_evidence(row)),
        "filing_due": row.filing_due.isoformat() if row.filing_due else None,
        "policy_sha256": row.policy_sha256,
        "ledger_index": row.ledger_index,
    }
