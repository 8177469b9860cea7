"""Scenarios and registrations over HTTP: the JSON API (``/api/scenarios``,
``/api/exchange/registrations``) and the portal's pages (``/scenarios``, ``/scenario/NAME``,
``/registrations``, ``/registration/CODE`` with its certificate as HTML and PDF, its proof
bundle and its ledger entry). Each calls the same core as the CLI
(:mod:`catalogue.scenarios`, :mod:`exchange.registration`, :mod:`exchange.certificates`).

The register and the certificates are public (公示): an official checks a certificate at
``/registration/CODE`` without an account — for the datasets anyone may see (the catalogue's
access rule, :func:`exchange.registration._seer`); a private or draft dataset's registrations
answer as if they did not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from catalogue import scenarios
from catalogue.auth import Principal
from catalogue.errors import CatalogueError
from exchange import certificates
from exchange import registration as reg
from exchange.errors import ExchangeError
from validation.errors import NsdxError

from .errorpages import error_response
from .exchange import _call
from .i18n import core
from .i18n import gettext as _
from .render import render
from .session import require_user, viewer
from .state import site_url, state_of

router = APIRouter(tags=["registration"])
pages = APIRouter(include_in_schema=False)


class ApplyIn(BaseModel):
    dataset: str
    scenario: str | None = None
    compliance_statement: str = ""
    legality_pledge: str = ""
    version: int | None = None
    kind: str = "initial"
    reason: str = ""


class ReviewIn(BaseModel):
    approve: bool
    note: str = ""


class ObjectionIn(BaseModel):
    reason: str


class ResolveIn(BaseModel):
    uphold: bool
    resolution: str


def _visitor(request: Request):
    """The exchange actor of a portal page's visitor: the signed-in session (pages carry no
    API token), so the register shows them what the one access rule lets them see."""
    from .trade_pages import actor_of

    return actor_of(request)


def _visible(request: Request, d: dict, principal: Principal) -> dict:
    """A scenario with only the datasets ``principal`` may see (the catalogue's access rule):
    the API token's holder for the JSON API, the session's for a page."""
    st = state_of(request)
    found = st.index.search(
        fq=[f'groups:"{d["name"]}"'], rows=1000, fl=["name"], include_private=True,
        include_drafts=True, principal=principal, grants=st.grants,
    )  # fmt: skip
    seen = {p["name"] for p in found["results"]}
    return {**d, "datasets": [x for x in d["datasets"] if x["name"] in seen]}


# -- JSON API --------------------------------------------------------------------------------


@router.get("/api/scenarios")
def scenario_list(request: Request, sector: str | None = None):
    """The application scenarios (also CKAN ``group_list``)."""
    st = state_of(request)
    who = st.principal(request)
    return [_visible(request, d, who) for d in scenarios.list_scenarios(st.cat, sector=sector)]


@router.get("/api/scenarios/{name}")
def scenario_show(name: str, request: Request):
    st = state_of(request)
    return _visible(request, scenarios.show(st.cat, name), st.principal(request))


@router.get("/api/exchange/registrations")
def registration_list(
    request: Request,
    dataset: str | None = None,
    status: str | None = None,
    scenario: str | None = None,
):
    """The public register: applications, notices and registrations of the datasets the
    caller may see (the catalogue's access rule); an application awaiting review only for
    its holder and the reviewers."""
    return _call(
        request,
        lambda ex, a: reg.list_registrations(
            ex,
            actor=a,
            dataset=dataset,
            status=status,
            scenario=scenario,
            full=a.can_read_all() or a.reviewer,
        ),  # fmt: skip
    )


@router.get("/api/exchange/registrations/{ref}")
def registration_show(ref: str, request: Request):
    return _call(
        request, lambda ex, a: reg.show(ex, ref, actor=a, full=a.can_read_all() or a.reviewer)
    )


@router.post("/api/exchange/registrations")
def registration_apply(request: Request, body: ApplyIn):
    d = body.model_dump()
    ds = d.pop("dataset")
    return _call(request, lambda ex, a: reg.apply(ex, a, ds, **d), 201)


@router.post("/api/exchange/registrations/{rid}/review")
def registration_review(rid: str, request: Request, body: ReviewIn):
    return _call(
        request, lambda ex, a: reg.review(ex, a, rid, approve=body.approve, note=body.note)
    )


@router.post("/api/exchange/registrations/{rid}/objections")
def registration_object(rid: str, request: Request, body: ObjectionIn):
    return _call(request, lambda ex, a: reg.lodge_objection(ex, a, rid, reason=body.reason), 201)


@router.post("/api/exchange/objections/{oid}/resolve")
def objection_resolve(oid: str, request: Request, body: ResolveIn):
    return _call(
        request,
        lambda ex, a: reg.resolve_objection(
            ex, a, oid, uphold=body.uphold, resolution=body.resolution
        ),
    )


@router.post("/api/exchange/registrations/{rid}/issue")
def registration_issue(rid: str, request: Request):
    return _call(request, lambda ex, a: reg.issue(ex, a, rid))


# -- portal pages ----------------------------------------------------------------------------


@pages.get("/scenarios", response_class=HTMLResponse)
async def scenarios_page(request: Request):
    cat = state_of(request).cat
    rows = await run_in_threadpool(scenarios.list_scenarios, cat)
    rows = [await run_in_threadpool(_visible, request, d, viewer(request)) for d in rows]
    return render(request, "scenarios.html", {"scenarios": rows, "sectors": scenarios.SECTORS})


@pages.get("/scenario/{name}", response_class=HTMLResponse)
async def scenario_page(name: str, request: Request):
    st = state_of(request)
    try:
        d = await run_in_threadpool(scenarios.show, st.cat, name)
    except CatalogueError:
        return error_response(
            request, 404, _("Scenario not found"),
            _("There is no scenario %(name)s.", name=name[:100]),
        )  # fmt: skip
    d = await run_in_threadpool(_visible, request, d, viewer(request))
    regs = await run_in_threadpool(
        lambda: reg.list_registrations(st.exchange, actor=_visitor(request), scenario=d["name"])
    )
    return render(request, "scenario.html", {"s": d, "registrations": regs})


@pages.get("/registrations", response_class=HTMLResponse)
async def registrations_page(request: Request):
    ex = state_of(request).exchange
    regs = await run_in_threadpool(lambda: reg.list_registrations(ex, actor=_visitor(request)))
    return render(request, "registrations.html", {"registrations": regs[::-1]})


async def _certificate(request: Request, code: str):
    st = state_of(request)
    return await run_in_threadpool(
        lambda: certificates.certificate(
            st.exchange, code, actor=_visitor(request), base_url=site_url(request)
        )
    )


def _not_found(request: Request, code: str, e: ExchangeError) -> Response:
    status = e.status if e.status in (404, 409) else 404
    return error_response(
        request, status, _("Registration not found"),
        _("There is no issued registration %(code)s.", code=code[:100]) + " " + core(e.message),
    )  # fmt: skip


@pages.get("/registration/{code}", response_class=HTMLResponse)
async def registration_page(code: str, request: Request):
    """A registration as anyone may check it: its status, its certificate, its proof; a
    signed-in visitor may object while it is under public notice."""
    return await _registration_response(request, code)


async def _registration_response(
    request: Request, code: str, *, error: str | None = None, status: int = 200
):
    st = state_of(request)
    try:
        d = await run_in_threadpool(lambda: reg.show(st.exchange, code, actor=_visitor(request)))
    except ExchangeError as e:
        return _not_found(request, code, e)
    cert = None
    if d["registered_on"]:
        cert = await _certificate(request, d["code"] or d["id"])
    today = st.exchange.today().isoformat()
    may_object = d["status"] in ("notice", "objected") and (d["notice_end"] or "") >= today
    return render(
        request,
        "registration.html",
        {"r": d, "c": cert, "may_object": may_object, "objection_error": error},
        status,
    )


@pages.post("/registration/{rid}/objection")
async def registration_objection(rid: str, request: Request):
    """Lodge an objection from the portal (signed in; the same core as the CLI and API)."""
    from .trade_pages import actor_of

    p = require_user(request)
    form = await request.form()
    reason = str(form.get("reason") or "").strip()[:5000]
    ex = state_of(request).exchange
    try:
        await run_in_threadpool(
            lambda: reg.lodge_objection(ex, actor_of(request, p), rid[:64], reason=reason)
        )
    except NsdxError as e:
        return await _registration_response(
            request, rid[:64], error=core(e.message), status=getattr(e, "status", 409)
        )
    return RedirectResponse(f"/registration/{rid[:64]}?objected=1", status_code=303)


@pages.get("/registration/{code}/certificate.html", response_class=HTMLResponse)
async def certificate_html(code: str, request: Request):
    try:
        c = await _certificate(request, code)
    except ExchangeError as e:
        return _not_found(request, code, e)
    return HTMLResponse(certificates.render_html(c))


@pages.get("/registration/{code}/certificate.pdf")
async def certificate_pdf(code: str, request: Request):
    try:
        c = await _certificate(request, code)
    except ExchangeError as e:
        return _not_found(request, code, e)
    pdf = await run_in_threadpool(certificates.render_pdf, c)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{c["code"]}.pdf"'},
    )


@pages.get("/registration/{code}/proof.json")
async def certificate_proof(code: str, request: Request):
    """The inclusion proof of the registration's ledger entry and the entry, for the
    verifiers of docs/ledger.md (the proof script, and verify_receipt.py)."""
    try:
        c = await _certificate(request, code)
    except ExchangeError as e:
        return _not_found(request, code, e)
    return JSONResponse(certificates.proof_bundle(c))


@pages.get("/registration/{code}/entry.json")
async def certificate_entry(code: str, request: Request):
    """The ledger entry's exact bytes (RFC 8785 canonical JSON)."""
    try:
        c = await _certificate(request, code)
    except ExchangeError as e:
        return _not_found(request, code, e)
    return Response(c["entry"].encode(), media_type="application/json")
