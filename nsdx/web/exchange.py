"""HTTP endpoints of the exchange (``/api/exchange/...``) and the audit
(``/api/audit/...``). Each endpoint calls the same core function as the CLI
(:mod:`exchange.trade`, :mod:`exchange.reports`, :mod:`exchange.ledger`) on the service
root's one exchange (:attr:`nsdx.core.Nsdx.exchange`); this module only speaks HTTP.

Authentication is the catalogue's: ``Authorization: <token>`` (or ``Bearer <token>``);
the caller's organisation roles decide what it may do (see :mod:`exchange.actors`).
Errors answer ``{"error": {"error": <kind>, "message", "hint", "transient", ...}}``
(:func:`nsdx.web.errors.json_error`) with the status of the error class (403 not allowed, 404 not found, 409 wrong state, 422 bad
input). Checkpoints, proofs and the verifier key are public: anyone may check the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from exchange import trade
from exchange.actors import Actor, actor_for_user
from exchange.context import Exchange
from exchange.errors import CheckpointNotFound, NotAllowed

from .state import state_of

router = APIRouter(tags=["exchange"])

# bounds of the audit's numbers: a ledger never holds 2**62 entries, and a reward year is
# one of the programme's (a year far ahead walked every year in between: a thread for good)
TREE_MAX = 2**62
YEAR_MIN, YEAR_MAX = 2000, 2100


def _exchange(request: Request) -> Exchange:
    return state_of(request).exchange


def _actor(request: Request, ex: Exchange) -> Actor:
    principal = state_of(request).principal(request)
    if principal.anonymous or principal.name is None:
        return Actor(name="anonymous", anonymous=True)
    with ex.catalogue.Session() as s:
        return actor_for_user(s, principal.name)


def _call(request: Request, fn: Callable[[Exchange, Actor], Any], status: int = 200):
    """Run ``fn`` for the caller; its errors (bad token, not allowed, wrong state...) are
    answered by :mod:`nsdx.web.errors` in the JSON dialect with their own status."""
    ex = _exchange(request)
    result = fn(ex, _actor(request, ex))
    return JSONResponse(result, status_code=status)


def _auditor(a: Actor) -> None:
    if not a.can_read_all():
        raise NotAllowed(
            f"{a.name} is not an auditor", hint="audit reports are for auditors and operators"
        )


class EnterpriseIn(BaseModel):
    org: str
    credit_code: str
    legal_name: str
    corporate_group: str | None = None
    legal_representative: str | None = None
    shareholders: list[str] = []
    controllers: list[str] = []
    registered_address: str | None = None
    phone: str | None = None
    bank_account: str | None = None
    in_nansha: bool = False
    # where it is registered and whether a CIIO; None keeps the profile's (new: mainland,
    # the credit code's division, not a CIIO). Another region/division than the credit
    # code's, and clearing ciio: a sysadmin only (exchange.trade.register_enterprise)
    region: str | None = None  # mainland | hong-kong | macao | abroad
    division: str | None = None  # mainland: GB/T 2260 code
    ciio: bool | None = None  # a critical-information-infrastructure operator


class OfferIn(BaseModel):
    dataset: str
    price_cny: str
    version: int | None = None
    licence_terms: str = ""
    term_start: str | None = None
    term_end: str | None = None
    delivery_mode: str = "presigned-url"
    cross_border: bool = False
    access_days: int = 365


class OrderIn(BaseModel):
    offer: str
    buyer: str
    amount_cny: str | None = None
    contract_no: str | None = None
    other_support: bool = False


class PaymentIn(BaseModel):
    amount_cny: str | None = None
    reference: str = ""
    paid_on: str | None = None


class EvidenceIn(BaseModel):
    kind: str  # filing | gba_filing | pia | certification | approval
    reference: str


class GrantIn(BaseModel):
    days: int | None = None


class DeliveryIn(BaseModel):
    expires_seconds: int = 3600


class RefundIn(BaseModel):
    amount_cny: str | None = None
    reason: str = ""
    refunded_on: str | None = None


# -- the trade ------------------------------------------------------------------------------


@router.get("/api/exchange/enterprises")
def enterprises(request: Request):
    return _call(request, lambda ex, a: trade.list_enterprises(ex, a))


@router.post("/api/exchange/enterprises")
def enterprise_register(request: Request, body: EnterpriseIn):
    d = body.model_dump()
    org, code = d.pop("org"), d.pop("credit_code")
    return _call(
        request,
        lambda ex, a: trade.register_enterprise(ex, a, org, credit_code_=code, **d),
        201,
    )


@router.get("/api/exchange/offers")
def offers(request: Request, dataset: str | None = None):
    return _call(request, lambda ex, a: trade.list_offers(ex, a, dataset=dataset))


@router.post("/api/exchange/offers")
def offer_create(request: Request, body: OfferIn):
    d = body.model_dump()
    ds, price = d.pop("dataset"), d.pop("price_cny")
    return _call(request, lambda ex, a: trade.create_offer(ex, a, ds, price=price, **d), 201)


@router.post("/api/exchange/offers/{offer_id}/withdraw")
def offer_withdraw(request: Request, offer_id: str):
    return _call(request, lambda ex, a: trade.withdraw_offer(ex, a, offer_id))


@router.get("/api/exchange/orders")
def orders(request: Request, status: str | None = None):
    return _call(request, lambda ex, a: trade.list_orders(ex, a, status=status))


@router.post("/api/exchange/orders")
def order_create(request: Request, body: OrderIn):
    return _call(
        request,
        lambda ex, a: trade.place_order(
            ex, a, body.offer, buyer=body.buyer, amount=body.amount_cny,
            contract_no=body.contract_no, other_support=body.other_support,
        ),
        201,
    )  # fmt: skip


@router.get("/api/exchange/orders/{order_id}")
def order_show(request: Request, order_id: str):
    return _call(request, lambda ex, a: trade.get_order(ex, a, order_id))


@router.post("/api/exchange/orders/{order_id}/payment")
def order_pay(request: Request, order_id: str, body: PaymentIn):
    return _call(
        request,
        lambda ex, a: trade.confirm_payment(
            ex, a, order_id, amount=body.amount_cny, reference=body.reference, paid_on=body.paid_on
        ),
    )


@router.post("/api/exchange/orders/{order_id}/grant")
def order_grant(request: Request, order_id: str, body: GrantIn):
    return _call(request, lambda ex, a: trade.grant_access(ex, a, order_id, days=body.days))


@router.post("/api/exchange/orders/{order_id}/evidence")
def order_evidence(request: Request, order_id: str, body: EvidenceIn):
    """Record a cross-border procedure's evidence (the seller): a grant of an order whose
    route needs a procedure is refused (409) until it is recorded."""
    return _call(
        request,
        lambda ex, a: trade.record_crossborder_evidence(
            ex, a, order_id, kind=body.kind, reference=body.reference
        ),
        201,
    )


@router.post("/api/exchange/orders/{order_id}/delivery")
def order_deliver(request: Request, order_id: str, body: DeliveryIn):
    return _call(
        request,
        lambda ex, a: trade.deliver(ex, a, order_id, expires_seconds=body.expires_seconds),
    )


@router.post("/api/exchange/orders/{order_id}/refund")
def order_refund(request: Request, order_id: str, body: RefundIn):
    return _call(
        request,
        lambda ex, a: trade.refund(
            ex, a, order_id, amount=body.amount_cny, reason=body.reason,
            refunded_on=body.refunded_on,
        ),
    )  # fmt: skip


# -- the audit ------------------------------------------------------------------------------


@router.get("/api/audit/pubkey", response_class=PlainTextResponse)
def pubkey(request: Request):
    return PlainTextResponse(_exchange(request).signer.verifier_key + "\n")


@router.get("/api/audit/checkpoint", response_class=PlainTextResponse)
def checkpoint(request: Request, witnessed: bool = Query(False)):
    """The latest signed checkpoint as the C2SP note text, with the witnesses'
    cosignature lines stored for it; ``witnessed=true``: the latest witnessed one."""
    from exchange.witness.publish import cosigned_note

    ledger = _exchange(request).ledger
    cp = ledger.latest_witnessed() if witnessed else ledger.get_checkpoint()
    if cp is None:
        raise CheckpointNotFound(
            "no checkpoint has been witnessed yet",
            hint="witnessing follows each checkpoint in the background; see GET /api/audit/checkpoint",
        )
    return PlainTextResponse(cosigned_note(ledger.engine, cp.note, cp.tree_size))


@router.get("/api/audit/proof/inclusion")
def proof_inclusion(
    request: Request,
    index: int = Query(ge=0, le=TREE_MAX),
    size: int | None = Query(None, ge=0, le=TREE_MAX),
    witnessed: bool = Query(False),
):
    return _call(request, lambda ex, a: ex.ledger.inclusion(index, size, witnessed=witnessed))


@router.get("/api/audit/proof/consistency")
def proof_consistency(
    request: Request,
    size1: int = Query(ge=0, le=TREE_MAX),
    size2: int | None = Query(None, ge=0, le=TREE_MAX),
):
    return _call(request, lambda ex, a: ex.ledger.consistency(size1, size2))


@router.get("/api/audit/verify")
def verify(request: Request):
    from exchange.ledger.verify import verify_ledger

    def run(ex: Exchange, a: Actor):
        from exchange.witness.audit import witness_checks

        _auditor(a)
        key = ex.signer.verifier_key
        res = verify_ledger(ex.ledger, key)
        if ex.witnessing is not None:  # the witnesses' cosignatures, quorum and views
            witness_checks(ex.ledger, key, ex.witnessing)(res)
        return res.to_dict()

    return _call(request, run)


@router.get("/api/audit/rewards")
def rewards(
    request: Request,
    year: int = Query(ge=YEAR_MIN, le=YEAR_MAX, description="the reward year"),
    at: int | None = Query(None, ge=0, le=TREE_MAX, description="a tree size to report at"),
):
    from exchange.reports import rewards_report

    def run(ex: Exchange, a: Actor):
        _auditor(a)
        return rewards_report(ex, year, tree_size=at)

    return _call(request, run)


@router.get("/api/audit/flags")
def flags(request: Request, at: int | None = Query(None, ge=0, le=TREE_MAX)):
    from exchange.reports import wash_flags

    def run(ex: Exchange, a: Actor):
        _auditor(a)
        return wash_flags(ex, tree_size=at)

    return _call(request, run)


@router.get("/api/audit/cross-border")
def cross_border(
    request: Request,
    year: int = Query(ge=YEAR_MIN, le=YEAR_MAX, description="the calendar year"),
    at: int | None = Query(None, ge=0, le=TREE_MAX, description="a tree size to report at"),
):
    """Cross-border transfers of a year (auditors): the same report as
    `nsdx audit cross-border --year Y --json`."""
    from exchange.crossborder.report import crossborder_report

    def run(ex: Exchange, a: Actor):
        _auditor(a)
        return crossborder_report(ex, year, tree_size=at)

    return _call(request, run)
