"""The officials' pages (auditor role, or sysadmin): the ledger, its verification, the
transactions, one entry with its inclusion proof, the rewards of a year with every
exclusion and its reason, the wash-trade flags, charts, and the yearly report.

Read-only: every number is computed from the latest *signed* checkpoint as it is (never
signing a new one), with the functions the CLI calls (:mod:`exchange.reports`,
:mod:`exchange.ledger.verify`, :mod:`exchange.ledger.browse`). The one file written is the
official's own record of the last checkpoint they verified (outside the database, as
`nsdx audit verify --state` keeps it).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import date
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from catalogue.auth import Principal
from exchange.errors import ExchangeError, LedgerCorrupt
from exchange.ledger.browse import entry_kinds, list_entries
from exchange.ledger.note import NoteError
from exchange.ledger.store import b64
from exchange.ledger.verify import change_token, remembered, rows_digest, verify_with_state
from validation.messages import Msg

from .charts import bar_chart, hbar_chart
from .errorpages import error_response
from .i18n import N_, Np_
from .i18n import gettext as _
from .render import render
from .session import require_user
from .state import state_of

router = APIRouter(include_in_schema=False)
PAGE = 50
MAX_CHECKPOINT_BYTES = 64 * 1024

EXCLUSIONS = [
    Np_("exclusion", "unpaid"),
    Np_("exclusion", "outside_year"),
    Np_("exclusion", "not_exchange_trade"),
    Np_("exclusion", "refunded"),
    Np_("exclusion", "stacking"),
    Np_("exclusion", "below_minimum"),
    Np_("exclusion", "not_in_district"),
    Np_("exclusion", "wash_trade:cycle"),
    Np_("exclusion", "wash_trade:mirrored"),
    Np_("exclusion", "wash_trade:split"),
    Np_("exclusion", "related_party:same_group"),
    Np_("exclusion", "related_party:shared_controller"),
]
FLAG_KINDS = [Np_("flag", "cycle"), Np_("flag", "mirrored"), Np_("flag", "split")]
PROBLEM_KINDS = [  # exchange.ledger.verify.Problem.kind
    Np_("problem", "gap"),
    Np_("problem", "duplicate"),
    Np_("problem", "leaf_hash"),
    Np_("problem", "root"),
    Np_("problem", "signature"),
    Np_("problem", "missing"),
    Np_("problem", "unsigned"),
    Np_("problem", "tile"),
    Np_("problem", "fork"),  # with witnesses (exchange.witness.audit)
    Np_("problem", "quorum"),
    Np_("problem", "cosignature"),
]
REGIONS = [N_("hong-kong"), N_("macao"), N_("abroad")]  # a destination outside the mainland
LEDGER_KINDS = [  # the kinds of ledger entries the exchange writes (others are shown as stored)
    Np_("ledger-kind", "enterprise.registered"),
    Np_("ledger-kind", "enterprise.updated"),
    Np_("ledger-kind", "offer.created"),
    Np_("ledger-kind", "offer.withdrawn"),
    Np_("ledger-kind", "order.placed"),
    Np_("ledger-kind", "payment.confirmed"),
    Np_("ledger-kind", "access.granted"),
    Np_("ledger-kind", "refund.issued"),
    Np_("ledger-kind", "delivery.made"),
    Np_("ledger-kind", "crossborder.decided"),
    Np_("ledger-kind", "crossborder.evidence"),
    Np_("ledger-kind", "crossborder.refused"),
    Np_("ledger-kind", "registration.applied"),
    Np_("ledger-kind", "registration.reviewed"),
    Np_("ledger-kind", "registration.issued"),
    Np_("ledger-kind", "registration.objected"),
    Np_("ledger-kind", "registration.cancelled"),
]


def _official(request: Request) -> Principal:
    p = require_user(request)
    if not (p.auditor or p.sysadmin):
        raise _NotOfficial
    return p


class _NotOfficial(Exception):
    pass


def _refuse(request: Request):
    return error_response(
        request,
        403,
        _("For officials only"),
        _("These pages are for auditors. Ask an administrator for the auditor role."),
    )


def _state_file(request: Request, p: Principal) -> Path:
    """Where this official's last verified checkpoint is remembered (per user, outside
    the database, like `nsdx audit verify --state`)."""
    return state_of(request).nx.settings.home / "audit" / "portal" / f"{p.user_id}.txt"


# -- computed once per signed checkpoint (a checkpoint never changes) ---------------------
_cache: OrderedDict[tuple, object] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple, make):
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = make()
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > 16:
            _cache.popitem(last=False)
    return value


def _latest(ex):
    return ex.ledger.latest_checkpoint()


# -- the year's summary: computed in the background, never on the page request -------------
_jobs: dict[tuple, Future] = {}
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nsdx-audit-summary")
WAIT_SECONDS = 0.2  # a small ledger's summary is ready in this time: no "computing" page
SMALL_LEDGER = 5_000  # entries: above this the summary takes longer, so the page never waits


def _summary_key(ex, year: int, cp) -> tuple:
    return (
        "summary",
        id(ex),
        cp.tree_size,
        b64(cp.root),
        year,
        os.environ.get("NSDX_REWARD_POLICY"),
    )


def _compute(ex, year: int, tree_size: int) -> tuple[_Digest, dict]:
    from exchange.reports import yearly_summary

    digest = _digest(ex, tree_size)  # first: a later edit cannot hide behind it
    return digest, yearly_summary(ex, year, tree_size=tree_size)  # verified against the root


class _Digest:
    """The digest of the ledger rows a cached figure was computed from, and the database's
    :func:`change_token` read just before the rows were: while the token is the same,
    nothing was committed since, so the rows are as digested without reading them again."""

    __slots__ = ("token", "value")

    def __init__(self, token: tuple | None, value: bytes) -> None:
        self.token, self.value = token, value

    def still(self, ex, tree_size: int) -> bool:
        """Are the rows as they were? (Re-reads them only if something was committed.)"""
        token = change_token(ex.ledger)
        if token is not None and token == self.token:
            return True
        if rows_digest(ex.ledger, tree_size) != self.value:
            return False
        self.token = token  # the same rows: the next view compares with this reading
        return True


def _digest(ex, tree_size: int) -> _Digest:
    token = change_token(ex.ledger)
    return _Digest(token, rows_digest(ex.ledger, tree_size))


def start_summary(ex, year: int, cp) -> Future | None:
    """Start computing the year's summary of checkpoint ``cp`` in the background (one job
    per checkpoint and year; the dashboard starts last year's as soon as a new checkpoint
    is seen), so the rewards page of a new checkpoint never computes on the request."""
    key = _summary_key(ex, year, cp)
    with _cache_lock:
        if key in _cache:  # computed already (each view re-checks it: _summary)
            return None
        fut = _jobs.get(key)
        if fut is None:
            fut = _jobs[key] = _pool.submit(_compute, ex, year, cp.tree_size)
        return fut


def _summary(ex, year: int, cp, *, wait: float | None = None):
    """The year's summary from the signed checkpoint ``cp``, or None while it is being
    computed in the background (:func:`start_summary`; the page then says so and
    refreshes itself).

    The cached summary is kept with a digest of the ledger rows it was computed from
    (:func:`exchange.ledger.verify.rows_digest`). Every view checks the rows are as they
    were: if anything was committed to the database since the last check
    (:func:`exchange.ledger.verify.change_token`), it re-reads them and compares. Rows
    changed after the summary was cached (an edited payload, a removed or inserted row) drop
    the cached figures, and the fresh computation, verified against the signed root,
    reports the tampering (:class:`exchange.errors.LedgerCorrupt`)."""
    if wait is None:
        wait = WAIT_SECONDS if cp.tree_size <= SMALL_LEDGER else 0.0
    key = _summary_key(ex, year, cp)
    with _cache_lock:
        hit = _cache.get(key)
    same = hit[0].still(ex, cp.tree_size) if hit is not None else False  # type: ignore[index]
    with _cache_lock:
        if hit is not None and same:
            _cache.move_to_end(key)
            return hit[1]  # type: ignore[index]
        if hit is not None:  # the rows changed since: never serve the cached figures
            _cache.pop(key, None)
            for k in [k for k in _cache if k[0] == "charts" and k[1:5] == key[1:5]]:
                _cache.pop(k, None)
    if hit is not None:
        _changed(ex, year, cp)
    fut = start_summary(ex, year, cp)
    if fut is None:  # cached meanwhile by another request: check it like any cached one
        return _summary(ex, year, cp, wait=wait)
    try:
        digest, s = fut.result(timeout=wait)
    except FutureTimeout:
        return None
    except Exception:
        with _cache_lock:
            _jobs.pop(key, None)  # reported now; the next view computes (and checks) again
        raise
    with _cache_lock:
        _jobs.pop(key, None)
    if not digest.still(ex, cp.tree_size):  # changed since it was computed
        _changed(ex, year, cp)
    return _cached(key, lambda: (digest, s))[1]


def _changed(ex, year: int, cp):
    """Rows a signed checkpoint covers never change: this is tampering (or a damaged
    database), reported at once; a fresh verified computation starts for the details."""
    start_summary(ex, year, cp)
    raise LedgerCorrupt(
        Msg(
            "the ledger entries [0, %(size)s) changed after these figures were computed "
            "from them (they hashed to the signed root then): an entry was edited, "
            "removed or inserted",
            size=cp.tree_size,
        ),
        hint=Msg("run `nsdx audit verify` to find the changed entries; nothing was computed"),
        tree_size=cp.tree_size,
    )


_primed: set[tuple[int, str]] = set()


def _prime_verification(ex) -> None:
    """The first verification of this process hashes every entry; it is run in the
    background when an official first opens the dashboard (remembering nothing on disk and
    showing nothing), so the official's own verification resumes from it: the same checks,
    the entries hashed once."""
    key = ex.signer.verifier_key
    with _cache_lock:
        if (id(ex.ledger.engine), key) in _primed or remembered(ex.ledger, key):
            return
        _primed.add((id(ex.ledger.engine), key))
    _pool.submit(verify_with_state, ex.ledger, key, remember=True)


def _year(request: Request) -> int:
    raw = request.query_params.get("year") or ""
    try:
        y = int(raw)
    except ValueError:
        return date.today().year - 1
    return y if 2000 <= y <= 2100 else date.today().year - 1


# -- the dashboard and verification ----------------------------------------------------
def _dashboard(request: Request, p: Principal, *, status: int = 200, **ctx):
    ex = state_of(request).exchange
    cp = _latest(ex)
    if cp is not None:  # ready by the time the official opens the rewards
        start_summary(ex, date.today().year - 1, cp)
        _prime_verification(ex)
    state = _state_file(request, p)
    kept = None
    if state.exists():
        m = re.search(r"\n(\d+)\n", state.read_text(encoding="utf-8"))
        kept = int(m.group(1)) if m else None
    return render(
        request,
        "audit/dashboard.html",
        {
            "size": ex.ledger.head_size(),
            "cp": cp,
            "root": b64(cp.root) if cp else None,
            "kept_size": kept,
            "pubkey": ex.signer.verifier_key,
            "witnessing": _witnessing(ex),
            **ctx,
        },
        status,
    )


def _witnessing(ex) -> dict:
    """The witnesses' side of the dashboard: the configuration (or why it is unusable),
    the latest witnessed checkpoint with its cosignatures, each witness's last answer."""
    from exchange.witness.publish import cosigned_note, witness_status

    out: dict = {"configured": None, "config_error": None}
    try:
        cfg = ex.witnessing
        out["configured"] = (
            None if cfg is None else {"quorum": cfg.quorum, "count": len(cfg.witnesses)}
        )
    except ExchangeError as e:
        out["config_error"] = str(e)
    out.update(witness_status(ex.engine))
    lw = ex.ledger.latest_witnessed()
    out["note"] = cosigned_note(ex.engine, lw.note, lw.tree_size) if lw else None
    return out


@router.get("/audit")
def dashboard(request: Request):
    try:
        p = _official(request)
    except _NotOfficial:
        return _refuse(request)
    return _dashboard(request, p)


@router.post("/audit/verify")
async def verify(request: Request):
    try:
        p = _official(request)
    except _NotOfficial:
        return _refuse(request)
    form = await request.form()
    kept: list[str] = []
    pasted = str(form.get("checkpoint") or "").strip()
    upload = form.get("checkpoint_file")
    if pasted:
        kept.append(pasted[:MAX_CHECKPOINT_BYTES] + "\n")
    if upload is not None and hasattr(upload, "read"):
        data = await upload.read(MAX_CHECKPOINT_BYTES + 1)
        if len(data) > MAX_CHECKPOINT_BYTES:
            return await run_in_threadpool(
                _dashboard,
                request,
                p,
                error=_("The checkpoint file is too large: a checkpoint is a few hundred bytes."),
                form_checkpoint=pasted,
                status=422,
            )
        if data.strip():
            try:
                kept.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                return await run_in_threadpool(
                    _dashboard,
                    request,
                    p,
                    error=_(
                        "The checkpoint file is not text. Upload the checkpoint note you kept."
                    ),
                    form_checkpoint=pasted,
                    status=422,
                )
    ex = state_of(request).exchange

    def run():
        from exchange.witness.audit import witness_checks

        key = ex.signer.verifier_key
        try:
            cfg = ex.witnessing
        except ExchangeError:
            cfg = None  # the dashboard shows why
        also = witness_checks(ex.ledger, key, cfg) if cfg is not None else None
        try:
            return verify_with_state(
                ex.ledger,
                key,
                kept=kept,
                state=_state_file(request, p),
                remember=True,  # the next verification hashes only the entries added since
                also=also,
            )
        except NoteError as e:  # pragma: no cover - verify_ledger reports bad notes itself
            raise ExchangeError(str(e)) from e

    res = await run_in_threadpool(run)
    return await run_in_threadpool(
        _dashboard, request, p, result=res, used_kept=len(kept), form_checkpoint=pasted
    )


# -- transactions ------------------------------------------------------------------------
def _date(raw: str | None, errors: dict, field: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[field] = _("A date like 2026-03-31.")
        return None


@router.get("/audit/transactions")
def transactions(request: Request):
    try:
        _official(request)
    except _NotOfficial:
        return _refuse(request)
    q = request.query_params
    errors: dict[str, str] = {}
    since = _date(q.get("since"), errors, "since")
    until = _date(q.get("until"), errors, "until")
    try:
        page = max(1, min(100_000, int(q.get("page") or 1)))
    except ValueError:
        page = 1
    ex = state_of(request).exchange
    kinds = entry_kinds(ex.ledger)
    kind = q.get("kind") or ""
    if kind and kind not in kinds:
        errors["kind"] = _("Choose a kind from the list.")
        kind = ""
    filters = {
        "kind": kind,
        "since": q.get("since") or "",
        "until": q.get("until") or "",
        "enterprise": (q.get("enterprise") or "").strip()[:100],
        "dataset": (q.get("dataset") or "").strip()[:100],
    }
    res = list_entries(
        ex.ledger,
        kind=kind or None,
        since=since,
        until=until,
        enterprise=filters["enterprise"] or None,
        dataset=filters["dataset"] or None,
        offset=(page - 1) * PAGE,
        limit=PAGE,
    )
    pages = max(1, -(-res["total"] // PAGE))
    from urllib.parse import urlencode

    def link(n: int) -> str:
        return "/audit/transactions?" + urlencode(
            [(k, v) for k, v in filters.items() if v] + [("page", str(n))]
        )

    return render(
        request,
        "audit/transactions.html",
        {
            "res": res,
            "kinds": kinds,
            "filters": filters,
            "errors": errors,
            "page": page,
            "pages": pages,
            "link": link,
        },
        422 if errors else 200,
    )


@router.get("/audit/entry/{index}")
def entry(index: int, request: Request):
    try:
        _official(request)
    except _NotOfficial:
        return _refuse(request)
    ex = state_of(request).exchange
    try:
        e = ex.ledger.entry(index)
    except ExchangeError:
        return error_response(
            request, 404, _("No such ledger entry"), _("Entries are numbered from 0.")
        )
    cp = _latest(ex)
    proof = None
    if cp is not None and index < cp.tree_size:
        proof = ex.ledger.inclusion(index, checkpoint=cp)  # the signed one in hand: no signing
    import json

    return render(
        request,
        "audit/entry.html",
        {
            "e": e,
            "payload": json.dumps(e["payload"], ensure_ascii=False, indent=2, sort_keys=True),
            "proof": proof,
        },
    )


# -- rewards, flags, charts, the yearly report ------------------------------------------
@router.get("/audit/rewards")
def rewards(request: Request):
    try:
        _official(request)
    except _NotOfficial:
        return _refuse(request)
    ex = state_of(request).exchange
    year = _year(request)
    cp = _latest(ex)
    if cp is None:
        return render(request, "audit/rewards.html", {"year": year, "s": None})
    try:
        s = _summary(ex, year, cp)
        if s is None:  # being computed in the background: this page refreshes itself
            return render(request, "audit/rewards.html", {"year": year, "s": None, "computing": cp})
    except LedgerCorrupt as e:  # changed after signing: no figure from it is shown
        logging.getLogger("nsdx.web").error("rewards page refused: %s", e.message)
        return render(
            request,
            "audit/rewards.html",
            {"year": year, "s": None, "corrupt": e.message, "corrupt_hint": e.hint},
            e.status,  # the error's own status (500), as the JSON API answers it
        )
    from . import i18n

    key = ("charts", id(ex), cp.tree_size, b64(cp.root), year, i18n.current())
    charts = _cached(key, lambda: _charts(s, year))
    only = request.query_params.get("only") == "excluded"
    txs = [t for t in s["transactions"] if not t["eligible"]] if only else s["transactions"]
    try:
        page = max(1, min(1_000_000, int(request.query_params.get("tx") or 1)))
    except ValueError:
        page = 1
    pages = max(1, -(-len(txs) // TX_PAGE))
    page = min(page, pages)
    shown = txs[(page - 1) * TX_PAGE : page * TX_PAGE]

    def link(**kw) -> str:
        from urllib.parse import urlencode

        q = {"year": year, "only": "excluded" if only else "", "tx": page, **kw}
        return "/audit/rewards?" + urlencode({k: v for k, v in q.items() if v}) + "#tx-h"

    return render(
        request,
        "audit/rewards.html",
        {
            "year": year,
            "s": s,
            "charts": charts,
            "txs": shown,
            "tx_total": len(txs),
            "tx_page": page,
            "tx_pages": pages,
            "only": only,
            "link": link,
            "flags": s["flags"][:FLAGS_SHOWN],
        },
    )


FLAGS_SHOWN = 100


TX_PAGE = 100


def _charts(s: dict, year: int) -> dict:
    months = [m["month"][5:] for m in s["by_month"]]
    return {
        "monthly": bar_chart(
            _("Monthly trade volume, %(year)s", year=year),
            months,
            [float(m["volume_cny"]) for m in s["by_month"]],
        ),
        "domains": hbar_chart(
            _("Volume by domain"),
            [_domain_label(d["domain"]) for d in s["by_domain"]],
            [float(d["volume_cny"]) for d in s["by_domain"]],
        ),
        "top": hbar_chart(_("Top enterprises by volume"), *_top(s["by_enterprise"])),
    }


def _domain_label(d: str) -> str:
    from .i18n import pgettext

    return pgettext("domain", d) if d and d != "-" else "-"


def _top(ents: list[dict], n: int = 10) -> tuple[list[str], list[float]]:
    vol = sorted(
        ((float(e["bought_cny"]) + float(e["sold_cny"]), e["org"]) for e in ents), reverse=True
    )[:n]
    return [o for _, o in vol], [v for v, _ in vol]


REPORT_FILE = re.compile(r"^exchange-(\d{4})(-[a-z]+)?\.(csv|parquet|html|json)$")


@router.get("/audit/report/{filename}")
def report_file(filename: str, request: Request):
    """A file of the yearly report (as `nsdx audit report --year Y` writes them), computed
    from the latest signed checkpoint into a temporary folder."""
    try:
        _official(request)
    except _NotOfficial:
        return _refuse(request)
    from exchange.reports import write_yearly_report

    return _report_file(request, filename, REPORT_FILE.fullmatch(filename), write_yearly_report)


# -- cross-border transfers (数据出境) ----------------------------------------------------
XB_ROUTES = [
    Np_("route", "not_cross_border"),
    Np_("route", "exempt"),
    Np_("route", "standard_contract"),
    Np_("route", "certification"),
    Np_("route", "gba_standard_contract"),
    Np_("route", "security_assessment"),
    Np_("route", "refused"),
]
XB_STAGES = [Np_("stage", "order"), Np_("stage", "grant")]
XB_BANDS = [Np_("band", "exempt"), Np_("band", "contract"), Np_("band", "assessment")]
XB_RULES = [
    Np_("xbrule", "offer_not_cross_border"),
    Np_("xbrule", "core_data"),
    Np_("xbrule", "important_data"),
    Np_("xbrule", "no_personal_information"),
    Np_("xbrule", "ftz_outside_negative_list"),
    Np_("xbrule", "pi_count_unknown"),
    Np_("xbrule", "ciio_personal_information"),
    Np_("xbrule", "pi_below_threshold"),
    Np_("xbrule", "gba_hong_kong"),
    Np_("xbrule", "gba_macao"),
    Np_("xbrule", "pi_assessment_threshold"),
    Np_("xbrule", "sensitive_pi_assessment_threshold"),
    Np_("xbrule", "sensitive_pi"),
    Np_("xbrule", "pi_contract_threshold"),
    Np_("xbrule", "evidence_missing"),
]
XB_FILE = re.compile(
    r"cross-border-(\d{4})(-(?:transfers|exporters|destinations|refusals))?\.(csv|parquet|html|json)"
)


def _crossborder(ex, year: int, cp):
    from exchange.crossborder.report import crossborder_report

    key = ("crossborder", id(ex), cp.tree_size, b64(cp.root), year)
    return _cached(key, lambda: crossborder_report(ex, year, tree_size=cp.tree_size))


@router.get("/audit/cross-border")
def cross_border(request: Request):
    """Cross-border transfers of a year: the report of `nsdx audit cross-border --year Y`."""
    try:
        _official(request)
    except _NotOfficial:
        return _refuse(request)
    ex = state_of(request).exchange
    year = _year(request)
    cp = _latest(ex)
    rep = _crossborder(ex, year, cp) if cp is not None else None
    return render(request, "audit/crossborder.html", {"year": year, "rep": rep})


@router.get("/audit/cross-border/{filename}")
def cross_border_file(filename: str, request: Request):
    """A file of the cross-border audit (as `nsdx audit cross-border --out` writes them)."""
    try:
        _official(request)
    except _NotOfficial:
        return _refuse(request)
    from exchange.crossborder.report import write_crossborder_report

    return _report_file(request, filename, XB_FILE.fullmatch(filename), write_crossborder_report)


REPORT_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
}


def _report_file(request: Request, filename: str, m: re.Match | None, write) -> Response:
    """One file of a yearly report (``m``: the file name matched, its groups the year and the
    format), written by ``write`` from the latest signed checkpoint into a temporary folder
    that is removed once the file is sent."""
    if not m or not 2000 <= int(m.group(1)) <= 2100:
        return error_response(request, 404)
    ex = state_of(request).exchange
    cp = _latest(ex)
    if cp is None:
        return error_response(request, 404, _("No signed checkpoint yet"), _("Nothing to report."))
    tmp = tempfile.TemporaryDirectory(prefix="nsdx-report-")
    files = write(ex, int(m.group(1)), Path(tmp.name), tree_size=cp.tree_size)
    path = next((f for f in files if f.name == filename), None)
    if path is None:
        tmp.cleanup()
        return error_response(request, 404)
    return FileResponse(
        path,
        media_type=REPORT_MEDIA[m.group(3)],
        filename=filename,
        background=BackgroundTask(tmp.cleanup),
    )


__all__ = ["router"]
