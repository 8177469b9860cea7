"""The providers' pages: "my datasets" with their upload jobs, creating a dataset, uploading
a file to it (streamed to disk with the API's cap), and watching the job until the version is
published or refused, with the validation summary and the reasons.

Every step is an Action API action run by :func:`catalogue.ckan.dispatch` with the
signed-in user as the principal (``package_create``, ``resource_create`` with an upload),
so the rules, the checks and the ingest pipeline are exactly the API's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from catalogue.auth import ObjectNotFound
from catalogue.ckan import dispatch
from catalogue.ckan.actions import authorize_upload
from validation.errors import NsdxError

from . import declare
from .errorpages import error_response
from .i18n import core
from .i18n import gettext as _
from .limits import max_upload_bytes
from .render import render
from .session import require_user
from .state import state_of
from .uploads import UploadTooLarge, receive_multipart

router = APIRouter(include_in_schema=False)
LICENCES = ["CC-BY-4.0", "CC0-1.0", "ODbL-1.0", "CC-BY-SA-4.0", "other-closed"]
FORMATS = ["", "CSV", "JSON", "NDJSON", "XLSX", "Parquet", "GTFS"]


def _editable_orgs(request: Request, p) -> list[dict]:
    acc = state_of(request).accounts
    return [o for o in acc.orgs(p) if p.can_edit(o["id"])]


@router.get("/my/datasets")
def my_datasets(request: Request):
    p = require_user(request)
    st = state_of(request)
    orgs = _editable_orgs(request, p)
    results = []
    if orgs:
        fq = "organization:(" + " OR ".join(f'"{o["name"]}"' for o in orgs) + ")"
        results = st.index.search(
            q="",
            fq=[fq],
            rows=200,
            include_private=True,
            include_drafts=True,
            principal=p,
            grants=st.grants,
            sort="metadata_modified desc",
        )["results"]
    jobs = st.jobs.submitted_by(p, limit=30)
    return render(
        request, "provider/datasets.html", {"orgs": orgs, "datasets": results, "jobs": jobs}
    )


def _declare_ctx(cols: list[dict], exps: list[dict], err: dict | None = None,
                 where: dict | None = None, bad: dict | None = None) -> dict:  # fmt: skip
    """The template values of the "columns and checks" section (nsdx/web/declare.py)."""
    col_err, exp_err, whole = declare.row_errors(
        err or {}, where or {"schema": [], "expectations": []}, bad or {}
    )
    return {"cols": cols, "exps": exps, "col_err": col_err, "exp_err": exp_err,
            "decl_error": whole, "ch": declare.choices()}  # fmt: skip


def _with_declaration(data: dict, cols: list[dict], exps: list[dict], always: bool) -> tuple:
    """Add the rows' ``schema`` and ``expectations`` to an Action API request (when there
    are any, or ``always``: the edit form of a dataset that declares some)."""
    schema, expectations, where, bad = declare.declaration_of_rows(cols, exps)
    if schema or expectations or always:
        data["schema"], data["expectations"] = schema, expectations
    return where, bad


# the fields of provider/new.html that show their own error
NEW_FIELDS = frozenset({"name", "title", "title_en", "domain", "tags", "owner_org", "access"})


@router.get("/my/datasets/new")
def new_dataset_form(request: Request):
    p = require_user(request)
    return render(
        request,
        "provider/new.html",
        {
            "orgs": _editable_orgs(request, p),
            "form": {},
            "errors": {},
            "licences": LICENCES,
            **_declare_ctx(*declare.rows_of_declared(None)),
        },
    )


@router.post("/my/datasets/new")
async def new_dataset(request: Request):
    p = require_user(request)
    form = await request.form(max_fields=declare.MAX_FIELDS)
    cols, exps = declare.rows_of_form(form)
    f: dict[str, Any] = {k: str(form.get(k) or "").strip()[:2000] for k in (
        "name", "title", "title_en", "notes", "owner_org", "license_id", "domain", "access", "tags"
    )}  # fmt: skip
    f["private"] = form.get("private") == "1"
    data = {
        "name": f["name"],
        "title": f["title"],
        "notes": f["notes"],
        "owner_org": f["owner_org"],
        "license_id": f["license_id"],
        "private": f["private"],
        "tags": [{"name": t.strip()} for t in f["tags"].split(",") if t.strip()][:50],
        "extras": [{"key": k, "value": f[k]} for k in ("domain", "title_en", "access") if f[k]],
    }
    page = {"orgs": _editable_orgs(request, p), "form": f, "licences": LICENCES}
    if form.get("more"):  # more empty rows: nothing is saved
        return render(
            request, "provider/new.html", {**page, "errors": {}, **_declare_ctx(cols, exps)}
        )
    where, bad = _with_declaration(data, cols, exps, always=False)
    if bad:  # a row the form cannot read: nothing is sent
        return render(
            request,
            "provider/new.html",
            {**page, "errors": {}, "error": _("The dataset was not created: check the marked fields."),
             **_declare_ctx(cols, exps, where=where, bad=bad)},
            422,
        )  # fmt: skip
    st = state_of(request)
    ctx = st.context(request, p)
    status, body = await run_in_threadpool(dispatch, "package_create", data, ctx)
    if status == 200:
        return RedirectResponse(f"/dataset/{body['result']['name']}/upload?created=1", 303)
    err = body.get("error") or {}
    errors = {  # each field's messages in the visitor's language (core Msgs)
        k: " ".join(core(m) for m in (v if isinstance(v, list) else [v]))
        for k, v in err.items()
        if not k.startswith("__") and k not in ("message", "schema", "expectations")
    }
    if errors or err.get("__type") == "Validation Error" or not err.get("message"):
        message = _("The dataset was not created: check the marked fields.")
        unmarked = [v for k, v in errors.items() if k not in NEW_FIELDS]  # no field shows it
        message = " ".join([message, *unmarked])
    else:
        message = core(err.get("message"))
    return render(
        request,
        "provider/new.html",
        {**page, "errors": errors, "error": message, **_declare_ctx(cols, exps, err, where, bad)},
        422 if status in (400, 409) else status,
    )


# -- editing a dataset's metadata: the Action API's package_patch ---------------------------
EDIT_FIELDS = (
    "title",
    "title_en",
    "notes",
    "notes_en",
    "tags",
    "license_id",
    "domain",
    "maintainer",
    "maintainer_email",
)
EDIT_MAX = {"notes": 10_000, "notes_en": 10_000}  # other fields: 500 characters


def _edit_form(pkg: dict) -> dict[str, str]:
    """The form's values from a package dict (what package_show answers)."""
    ex = {e["key"]: e["value"] for e in pkg.get("extras") or []}
    f = {k: str(pkg.get(k) or ex.get(k) or "") for k in EDIT_FIELDS if k != "tags"}
    f["tags"] = ", ".join(t["name"] for t in pkg.get("tags") or [])
    f["modified"] = str(pkg.get("metadata_modified") or "")
    return f


def _edit_page(request: Request, pkg: dict, form: dict, status: int = 200, **ctx):
    rows = ctx.pop("rows", None) or declare.rows_of_declared(
        (pkg.get("nsdx") or {}).get("declared")
    )
    return render(
        request,
        "provider/edit.html",
        {
            "pkg": pkg,
            "form": form,
            "errors": ctx.pop("errors", {}),
            "licences": _licences(form.get("license_id")),
            **_declare_ctx(
                rows[0], rows[1], ctx.pop("err", None), ctx.pop("where", None), ctx.pop("bad", None)
            ),
            **ctx,
        },
        status,
    )


def _licences(current: str | None) -> list[str]:
    return LICENCES + ([current] if current and current not in LICENCES else [])


def _editable(request: Request, name: str):
    """(principal, package dict) when the viewer may edit the dataset, else an error page:
    the access decision is the core's (``Packages.show``, then ``can_edit``, the same check
    package_patch makes)."""
    p = require_user(request)
    st = state_of(request)
    try:
        pkg = st.packages.show(p, name[:200], st.grants)
    except NsdxError as e:
        if e_status(e) not in (403, 404):
            raise
        return (
            p,
            None,
            error_response(
                request,
                404,
                _("Dataset not found"),
                _("There is no dataset %(name)s you may see.", name=name[:100]),
            ),
        )
    org = (pkg.get("organization") or {}).get("id") or pkg.get("owner_org")
    if not p.can_edit(org):
        return (
            p,
            None,
            error_response(
                request,
                403,
                _("You may not edit this dataset"),
                _("An admin or editor of the dataset's organisation (or a sysadmin) may."),
            ),
        )
    return p, pkg, None


@router.get("/dataset/{name}/edit")
def edit_form(name: str, request: Request):
    _p, pkg, refused = _editable(request, name)
    if refused is not None:
        return refused
    return _edit_page(request, pkg, _edit_form(pkg))


@router.post("/dataset/{name}/edit")
async def edit(name: str, request: Request):
    """Change the dataset's metadata with ``package_patch`` (the same validation, access
    decision and effects as the Action API); refused fields are marked, the form is kept."""
    p, pkg, refused = await run_in_threadpool(_editable, request, name)
    if refused is not None:
        return refused
    form = await request.form(max_fields=declare.MAX_FIELDS)
    f = {k: str(form.get(k) or "").strip() for k in (*EDIT_FIELDS, "modified")}
    rows = declare.rows_of_form(form)
    if form.get("more"):  # more empty rows: nothing is saved
        return _edit_page(request, pkg, f, rows=rows)
    errors: dict[str, str] = {}
    for k in EDIT_FIELDS:
        if len(f[k]) > EDIT_MAX.get(k, 500):
            errors[k] = _("At most %(n)s characters.", n=EDIT_MAX.get(k, 500))
    if errors:
        return _edit_page(
            request, pkg, f, 422, rows=rows, errors=errors, error=_("Check the marked fields.")
        )
    if f["modified"] and f["modified"] != str(pkg.get("metadata_modified") or ""):
        # a second tab (or someone else) saved meanwhile: never overwrite their change blind
        return _edit_page(
            request,
            pkg,
            f,
            409,
            rows=rows,
            error=_(
                "The dataset was changed since you opened this form. Your entries are kept "
                "below; reload the page to see the current metadata, then save again."
            ),
        )
    data: dict[str, Any] = {
        "id": pkg["id"],
        "title": f["title"],
        "notes": f["notes"],
        "license_id": f["license_id"],
        "maintainer": f["maintainer"],
        "maintainer_email": f["maintainer_email"],
        "tags": [{"name": t.strip()} for t in f["tags"].split(",") if t.strip()][:100],
        "extras": [{"key": k, "value": f[k]} for k in ("title_en", "notes_en", "domain")],
    }
    kept = (pkg.get("nsdx") or {}).get("declared") is not None
    where, bad = _with_declaration(data, *rows, always=kept)
    if bad:  # a row the form cannot read: nothing is sent
        return _edit_page(request, pkg, f, 422, rows=rows, where=where, bad=bad,
                          error=_("Not saved: check the marked fields."))  # fmt: skip
    st = state_of(request)
    status, body = await run_in_threadpool(dispatch, "package_patch", data, st.context(request, p))
    if status == 200:
        return RedirectResponse(f"/dataset/{body['result']['name']}?edited=1", 303)
    err = body.get("error") or {}
    if err.get("__type") != "Validation Error":
        return error_response(request, status, _("Not saved"), core(err.get("message")))
    for k, v in err.items():
        if k.startswith("__") or k in ("message", "schema", "expectations"):
            continue
        field = {"extras": "title_en", "owner_org": "title"}.get(k, k)
        field = field if field in EDIT_FIELDS else "title"
        text = " ".join(core(m) for m in (v if isinstance(v, list) else [v]))
        errors[field] = (errors[field] + " " + text) if field in errors else text
    return _edit_page(
        request,
        pkg,
        f,
        422,
        rows=rows,
        err=err,
        where=where,
        errors=errors,
        error=_("Not saved: check the marked fields."),
    )


@router.get("/dataset/{name}/upload")
def upload_form(name: str, request: Request):
    require_user(request)
    return render(
        request,
        "provider/upload.html",
        {"name": name, "formats": FORMATS, "cap_mb": max_upload_bytes() >> 20},
    )


@router.post("/dataset/{name}/upload")
async def upload(name: str, request: Request):
    """The Action API's streamed upload (:func:`nsdx.web.uploads.receive_multipart`: the
    caller's rights are checked before a byte is written, the file is streamed to disk in
    chunks and refused past ``NSDX_UPLOAD_MAX_BYTES``), then ``resource_create``."""
    p = require_user(request)
    st = state_of(request)
    page = {"name": name, "formats": FORMATS, "cap_mb": max_upload_bytes() >> 20}
    ctx = st.context(request, p)

    async def authorize(fields: dict) -> None:
        await run_in_threadpool(
            authorize_upload, ctx, "resource_create", {**fields, "package_id": name}
        )

    try:
        received = await receive_multipart(
            request,
            st.uploads_dir,
            accepts_files=True,
            authorize=authorize,
            action="resource_create",
        )
    except UploadTooLarge:
        return render(
            request,
            "provider/upload.html",
            {**page, "error": _("The file is larger than %(mb)s MB.", mb=page["cap_mb"])},
            413,
        )
    except NsdxError as e:
        return render(
            request, "provider/upload.html", {**page, "error": core(e.message)}, e_status(e)
        )
    if "upload" not in received.files:
        received.discard()
        return render(request, "provider/upload.html", {**page, "error": _("Choose a file.")}, 422)
    fmt = (received.data.get("format") or "").strip()
    ctx.files = received.files
    data = {"package_id": name, **({"format": fmt} if fmt else {})}
    try:
        status, body = await run_in_threadpool(dispatch, "resource_create", data, ctx)
    except BaseException:
        received.discard()
        raise
    if status != 200:
        received.discard()  # nothing half-done: no orphaned upload
        err = body.get("error") or {}
        msg = err.get("message") or "; ".join(
            f"{k}: {' '.join(v) if isinstance(v, list) else v}"
            for k, v in err.items()
            if not k.startswith("__")
        )
        return render(request, "provider/upload.html", {**page, "error": msg}, status)
    return RedirectResponse(f"/my/jobs/{body['result']['id']}", 303)


def e_status(e: Exception) -> int:
    return getattr(e, "status", 400)


@router.get("/my/jobs/{job_id}")
def job_page(job_id: str, request: Request):
    p = require_user(request)
    try:
        job = state_of(request).jobs.show(job_id[:64], p)
    except ObjectNotFound:
        return error_response(request, 404, _("Job not found"), _("No such upload of yours."))
    return render(request, "provider/job.html", {"job": job})


__all__ = ["router"]
