"""The buyers' and sellers' pages: offers on a dataset page, placing an order, "my work"
(orders as buyer and as seller), one order with its payment and grant state, the seller's
steps (confirm payment, grant access, refund), the buyer's Delta Sharing profile.

Every step calls the function the CLI and the API call (:mod:`exchange.trade`,
:func:`exchange.sharing.issue_profile`) with the signed-in user as the actor; who may do
what, prices and ledger writes are decided there, never here.
"""

from __future__ import annotations

import json
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from catalogue.auth import Principal
from exchange import trade
from exchange.actors import Actor, actor_for_user
from exchange.errors import ExchangeError
from validation.errors import NsdxError

from .errorpages import error_response
from .i18n import Np_, core
from .i18n import gettext as _
from .render import render
from .session import require_user, viewer
from .sharing import PREFIX
from .state import site_url, state_of

router = APIRouter(include_in_schema=False)

ORDER_STATES = [
    Np_("order", "placed"),
    Np_("order", "paid"),
    Np_("order", "granted"),
    Np_("order", "delivered"),
    Np_("order", "refunded"),
]
EVIDENCE_KINDS = [  # exchange.crossborder.policy.EVIDENCE_KINDS, for the evidence form
    Np_("evidence", "pia"),
    Np_("evidence", "filing"),
    Np_("evidence", "gba_filing"),
    Np_("evidence", "certification"),
    Np_("evidence", "approval"),
]
GRANT_STATES = [
    Np_("grant", "live"),
    Np_("grant", "expired"),
    Np_("grant", "revoked"),
    Np_("grant", "not_started"),
    Np_("grant", "none"),
]


def actor_of(request: Request, p: Principal | None = None) -> Actor:
    p = p or viewer(request)
    if p.anonymous:
        return Actor(name="anonymous", anonymous=True)
    ex = state_of(request).exchange
    with ex.catalogue.Session() as s:
        return actor_for_user(s, p.user_name)


def grant_word(order: dict, now: datetime | None = None) -> str:
    """How the grant stands, as the order dict tells it: refunds and expiries as such."""
    now = now or datetime.utcnow()  # noqa: DTZ003 - the exchange stores naive UTC
    if order.get("status") == "refunded" or order.get("grant_revoked"):
        return "revoked"
    exp = order.get("grant_expires")
    if not exp:
        return "none"
    return "expired" if datetime.fromisoformat(exp) <= now else "live"


def offers_for(request: Request, dataset: str) -> tuple[list[dict], list[str]]:
    """The dataset's offers the viewer may see, and the organisations the viewer could
    order for (their organisations other than the seller's)."""
    ex = state_of(request).exchange
    actor = actor_of(request)
    try:
        offers = trade.list_offers(ex, actor, dataset=dataset)
    except NsdxError:
        return [], []
    sellers = {o["seller"] for o in offers}
    buyers = sorted(o for o in actor.orgs() if o not in sellers)
    return offers, buyers


def can_sell(request: Request, pkg: dict) -> bool:
    """Whether the viewer may create offers for ``pkg`` (the exchange's seller rule:
    an admin or editor of the dataset's organisation, or the operator)."""
    from exchange.actors import SELLER_ROLES

    org = (pkg.get("organization") or {}).get("name")
    if not org:
        return False
    a = actor_of(request)
    return a.sysadmin or a.roles.get(org, "") in SELLER_ROLES


@router.post("/exchange/offers")
async def create_offer(request: Request):
    p = require_user(request)
    form = await request.form()
    f = {k: str(form.get(k) or "").strip()[:500] for k in (
        "dataset", "price", "licence_terms", "term_start", "term_end", "access_days", "version"
    )}  # fmt: skip
    cross_border = form.get("cross_border") == "1"
    f["cross_border"] = "1" if cross_border else ""  # the form's checkbox, kept on a refusal
    ex = state_of(request).exchange
    errors: dict[str, str] = {}
    if not f["price"]:
        errors["price"] = _("Enter a price in yuan, e.g. 1200.00.")
    try:
        days = int(f["access_days"] or 365)
        if not 1 <= days <= 3650:
            raise ValueError
    except ValueError:
        errors["access_days"] = _("A number of days from 1 to 3650.")
        days = 365
    try:
        version = int(f["version"]) if f["version"] else None
    except ValueError:
        errors["version"] = _("A version number, or empty for the latest during the term.")
        version = None

    async def again(message: str, status: int):
        from .pages import dataset_response

        return await dataset_response(
            request, f["dataset"], offer_error=message, offer_form=f, offer_errors=errors,
            status=status,
        )  # fmt: skip

    if errors:
        return await again(_("The offer was not created: check the marked fields."), 422)
    try:
        await run_in_threadpool(
            lambda: trade.create_offer(
                ex,
                actor_of(request, p),
                f["dataset"],
                price=f["price"],
                version=version,
                licence_terms=f["licence_terms"],
                term_start=f["term_start"] or None,
                term_end=f["term_end"] or None,
                cross_border=cross_border,
                access_days=days,
            )
        )
    except NsdxError as e:
        return await again(
            _("The offer was not created: %(why)s", why=core(e.message)), e_status(e)
        )
    return RedirectResponse(f"/dataset/{f['dataset']}?offered=1#offers-h", status_code=303)


@router.post("/exchange/offers/{offer_id}/withdraw")
async def withdraw_offer(offer_id: str, request: Request):
    p = require_user(request)
    form = await request.form()
    dataset = str(form.get("dataset") or "")[:100]
    ex = state_of(request).exchange
    try:
        await run_in_threadpool(
            lambda: trade.withdraw_offer(ex, actor_of(request, p), offer_id[:64])
        )
    except NsdxError as e:
        from .pages import dataset_response

        return await dataset_response(
            request,
            dataset,
            offer_error=_("The offer was not withdrawn: %(why)s", why=core(e.message)),
            status=e_status(e),
        )
    return RedirectResponse(f"/dataset/{dataset}?withdrawn=1#offers-h", status_code=303)


@router.post("/exchange/orders")
async def place_order(request: Request):
    p = require_user(request)
    form = await request.form()
    offer = str(form.get("offer") or "")[:64]
    buyer = str(form.get("buyer") or "")[:100]
    dataset = str(form.get("dataset") or "")[:100]
    contract = str(form.get("contract_no") or "").strip()[:100] or None
    other = form.get("other_support") == "1"
    ex = state_of(request).exchange
    try:
        done = await run_in_threadpool(
            lambda: trade.place_order(
                ex,
                actor_of(request, p),
                offer,
                buyer=buyer,
                contract_no=contract,
                other_support=other,
            )
        )
    except NsdxError as e:
        from .pages import dataset_response

        return await dataset_response(
            request,
            dataset,
            order_error=_("The order was not placed: %(why)s", why=core(e.message)),
            order_form={"buyer": buyer, "contract_no": contract or "", "offer": offer},
            status=getattr(e, "status", 409),
        )
    return RedirectResponse(f"/my/orders/{done['id']}?placed=1", status_code=303)


@router.get("/my")
def my_work(request: Request):
    p = require_user(request)
    ex = state_of(request).exchange
    actor = actor_of(request, p)
    sees = actor.orgs() or actor.can_read_all() or actor.reviewer
    orders = trade.list_orders(ex, actor) if sees else []
    mine = actor.orgs()
    bought = [o for o in orders if o["buyer"] in mine]
    sold = [o for o in orders if o["seller"] in mine]
    # a reviewer records the authorities' numbers on the cross-border orders of others
    review = [
        o for o in orders
        if actor.reviewer and o["cross_border"] and not {o["buyer"], o["seller"]} & mine
    ]  # fmt: skip
    for o in orders:
        o["grant_word"] = grant_word(o)
    return render(
        request,
        "my.html",
        {
            "roles": sorted(actor.roles.items()),
            "bought": bought[::-1],
            "sold": sold[::-1],
            "review": review[::-1],
            "reviewer": actor.reviewer,
        },
    )


def _order_page(request: Request, p: Principal, order_id: str, **ctx):
    ex = state_of(request).exchange
    actor = actor_of(request, p)
    status = ctx.pop("status", 200)
    try:
        o = trade.get_order(ex, actor, order_id)
    except ExchangeError:
        return error_response(
            request, 404, _("Order not found"), _("No order %(id)s of yours.", id=order_id[:64])
        )
    o["grant_word"] = grant_word(o)
    return render(
        request,
        "order.html",
        {
            "o": o,
            "is_seller": o["seller"] in actor.orgs() or actor.sysadmin,
            "is_buyer": o["buyer"] in actor.orgs(),
            # the seller records its PIA, an operator the authorities' numbers (the core's rule)
            "evidence_kinds": trade.crossborder_evidence_kinds(actor, o),
            **ctx,
        },
        status,
    )


@router.get("/my/orders/{order_id}")
def order_page(order_id: str, request: Request):
    p = require_user(request)
    return _order_page(request, p, order_id)


@router.post("/my/orders/{order_id}/{step}")
async def order_step(order_id: str, step: str, request: Request):
    p = require_user(request)
    form = await request.form()
    ex = state_of(request).exchange
    actor = await run_in_threadpool(actor_of, request, p)
    steps = {
        "payment": lambda: trade.confirm_payment(
            ex,
            actor,
            order_id,
            # the figure on the button the seller pressed (the order's amount, stated)
            amount=str(form.get("amount") or "")[:40] or None,
            reference=str(form.get("reference") or "")[:200],
            paid_on=str(form.get("paid_on") or "") or None,
        ),
        "grant": lambda: trade.grant_access(ex, actor, order_id, days=_int(form.get("days"))),
        "refund": lambda: trade.refund(
            ex, actor, order_id, reason=str(form.get("reason") or "")[:500]
        ),
        "evidence": lambda: trade.record_crossborder_evidence(
            ex,
            actor,
            order_id,
            kind=str(form.get("kind") or "")[:40],
            reference=str(form.get("evidence_ref") or "")[:200],
        ),
    }
    if step == "profile":
        from exchange.sharing import issue_profile

        endpoint = site_url(request) + f"{PREFIX}/"
        try:
            res = await run_in_threadpool(
                issue_profile, ex, actor, order_id, endpoint=endpoint, days=None
            )
        except NsdxError as e:
            return await run_in_threadpool(
                _order_page, request, p, order_id, error=core(e.message), status=e_status(e)
            )
        body = json.dumps(res["profile"], indent=2) + "\n"
        return Response(
            body,
            media_type="application/json",
            headers={
                "content-disposition": f'attachment; filename="nsdx-{order_id[:8]}.share"',
                "cache-control": "no-store",
            },
        )
    if step not in steps:
        return error_response(request, 404)
    try:
        await run_in_threadpool(steps[step])
    except ValueError:
        return await run_in_threadpool(
            _order_page, request, p, order_id, error=_("Check the values entered."), status=422
        )
    except NsdxError as e:
        return await run_in_threadpool(
            _order_page,
            request,
            p,
            order_id,
            error=core(e.message),
            error_hint=core(e.hint) if e.hint else None,
            status=e_status(e),
        )
    return RedirectResponse(f"/my/orders/{order_id}?done={step}", status_code=303)


def e_status(e: Exception) -> int:
    return getattr(e, "status", 409)


def _int(v) -> int | None:
    v = str(v or "").strip()
    if not v:
        return None
    n = int(v)  # ValueError: answered with "check the values"
    if not 1 <= n <= 3650:
        raise ValueError(n)
    return n


__all__ = ["grant_word", "offers_for", "router"]
