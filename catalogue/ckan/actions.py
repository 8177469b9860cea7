"""The actions. Each is a few lines: coerce CKAN's parameters, call one core function
(:mod:`catalogue.editing`, :mod:`catalogue.auth`, :mod:`catalogue.search`,
:mod:`catalogue.jobs`), return its dict."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..access import NO_GRANTS, Grants, granted_for
from ..auth import (
    ANONYMOUS,
    Accounts,
    InvalidInput,
    NotAuthorized,
    ObjectNotFound,
    Principal,
    require_user_details,
    user_as_seen_by,
)
from ..downloads import absolute
from ..editing import Packages
from ..jobs import Jobs, upload_format
from ..licences import LICENCES, document_url
from ..registry import Catalogue
from ..search import MAX_ROWS, SearchIndex, SearchQueryError
from .envelope import failure, success
from .errors import BadRequest, to_error

CKAN_VERSION = "2.10.4"  # the API level nsdx answers


@dataclass
class Upload:
    """A file received in a multipart request, already saved by the HTTP layer."""

    filename: str
    path: Path


@dataclass
class ActionContext:
    cat: Catalogue
    packages: Packages
    accounts: Accounts
    index: SearchIndex
    principal: Principal
    grants: Grants = NO_GRANTS  # the exchange's live grants (catalogue.access)
    jobs: Jobs | None = None
    files: dict[str, Upload] = field(default_factory=dict)
    site_url: str = ""
    site_title: str = "nsdx — Nansha open data"

    def upload_jobs(self) -> Jobs:
        """The job queue uploads are ingested by; a server without one takes no uploads."""
        if self.jobs is None:
            raise BadRequest("this server does not run background jobs; uploads are disabled")
        return self.jobs


@dataclass(frozen=True)
class ActionSpec:
    fn: Callable[[ActionContext, dict], Any]
    get: bool  # allowed through GET (read actions)


ACTIONS: dict[str, ActionSpec] = {}


def action(name: str, *, get: bool = False):
    def deco(fn):
        ACTIONS[name] = ActionSpec(fn, get)
        return fn

    return deco


def dispatch(
    name: str, data: dict, ctx: ActionContext, *, method: str = "POST"
) -> tuple[int, dict]:
    """Run action ``name``; (HTTP status, CKAN envelope)."""
    try:
        spec = ACTIONS.get(name)
        if spec is None:
            raise BadRequest(f"Bad request - Action name not known: {name}")
        if method == "GET" and not spec.get:
            raise BadRequest(
                f"Bad request - {name} changes the catalogue: use POST with a JSON body"
            )
        result = spec.fn(ctx, data)
    except Exception as e:  # noqa: BLE001 - every error becomes CKAN's error shape
        status, err = to_error(e)
        return status, failure(ctx.site_url, name, err)
    # published tables' URLs are download paths: absolute against the public base URL
    return 200, success(ctx.site_url, name, absolute(result, ctx.site_url))


# -- parameter coercion ---------------------------------------------------------------
MAX_INT = 2**31 - 1  # offsets, limits, counts: beyond this a number is a mistake or an attack
MAX_TEXT = 10_000  # characters of one text parameter (q, fq, sort, query)


def _int(data: dict, key: str, default: int | None, *, maximum: int | None = None):
    v = data.get(key)
    if v in (None, ""):
        return default
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise InvalidInput({key: ["Invalid integer"]})
    try:
        n = int(v) if isinstance(v, int) or len(v) <= 20 else None
    except ValueError:
        n = None
    if n is None:
        raise InvalidInput({key: ["Invalid integer"]})
    if n < 0:
        raise InvalidInput({key: ["Must be a natural number"]})
    if n > MAX_INT:
        raise InvalidInput({key: [f"Must be at most {MAX_INT}"]})
    return min(n, maximum) if maximum is not None else n


def _text(data: dict, key: str, default: str = "") -> str:
    """A text parameter: a string of at most MAX_TEXT characters."""
    v = data.get(key)
    if v is None or v == "":
        return default
    if not isinstance(v, str):
        raise InvalidInput({key: ["Must be a string"]})
    if len(v) > MAX_TEXT:
        raise InvalidInput({key: [f"Must be at most {MAX_TEXT} characters"]})
    return v


def _json_param(data: dict, key: str, default):
    """A parameter that is JSON or a JSON string (package_revise's match, update, filter)."""
    v = data.get(key)
    if v is None or v == "":
        return default
    if isinstance(v, str):
        try:
            return json.loads(v)
        except (ValueError, RecursionError):
            raise InvalidInput({key: ["Must be JSON"]}) from None
    return v


def _bool(data: dict, key: str, default: bool = False) -> bool:
    v = data.get(key)
    if v is None or v == "":
        return default
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "on")
    return bool(v)


def _list(data: dict, key: str) -> list[str]:
    v = data.get(key)
    if v in (None, ""):
        return []
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            try:
                v = json.loads(s)
            except ValueError:
                raise InvalidInput({key: ["Must be a JSON list"]}) from None
        else:
            return [s]
    if not isinstance(v, list):
        raise InvalidInput({key: ["Must be a list"]})
    return [str(x) for x in v]


def _id(data: dict, key: str = "id") -> str:
    v = data.get(key)
    if v in (None, ""):
        raise InvalidInput({key: ["Missing value"]})
    return str(v)


# -- site ----------------------------------------------------------------------------
@action("status_show", get=True)
def status_show(ctx: ActionContext, data: dict) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("nsdx")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout
        v = "0"
    return {
        "site_title": ctx.site_title,
        "site_description": "Nansha (Guangzhou) AI zone open dataset registry and data exchange",
        "site_url": ctx.site_url,
        "ckan_version": CKAN_VERSION,
        "nsdx_version": v,
        "error_emails_to": None,
        "locale_default": "zh_Hans_CN",
        "extensions": ["nsdx"],
    }


@action("help_show", get=True)
def help_show(ctx: ActionContext, data: dict) -> str:
    name = _id(data, "name")
    spec = ACTIONS.get(name)
    if spec is None:
        raise ObjectNotFound("action", name)
    return (spec.fn.__doc__ or name).strip()


@action("license_list", get=True)
def license_list(ctx: ActionContext, data: dict) -> list[dict]:
    """The licence register; a licence with no document elsewhere points at its page on
    the portal (as the DCAT, schema.org, Croissant and Data Package metadata do)."""
    return [
        {"id": lic.id, "title": lic.title,
         "url": document_url(lic, ctx.site_url) if ctx.site_url else lic.url or "",
         "status": "active",
         "od_conformance": "approved" if lic.open else "not reviewed",
         "osd_conformance": "not reviewed"}
        for lic in LICENCES.values()
    ]  # fmt: skip


# -- datasets --------------------------------------------------------------------------
@action("package_list", get=True)
def package_list(ctx: ActionContext, data: dict) -> list[str]:
    """Names of the public, active datasets."""
    return ctx.packages.names(limit=_int(data, "limit", None), offset=_int(data, "offset", 0))


@action("package_show", get=True)
def package_show(ctx: ActionContext, data: dict) -> dict:
    """One dataset (by name or id) with its resources and nsdx extras."""
    return ctx.index.show(ctx.principal, _id(data), ctx.grants)


# CKAN's package_search parameters (the Solr ones it passes on are accepted and ignored)
SEARCH_PARAMS = frozenset(
    """q fq fq_list rows start sort fl facet facet.field facet.limit facet.mincount
    include_private include_drafts include_deleted use_default_schema extras qf wt bf boost
    tie defType mm df q.op""".split()
)


@action("package_search", get=True)
def package_search(ctx: ActionContext, data: dict) -> dict:
    """Search datasets: q, fq, fq_list, sort, rows, start, facet.field, facet.limit,
    facet.mincount, include_private, include_drafts (see docs/api.md)."""
    unknown = sorted(set(data) - SEARCH_PARAMS)
    if unknown:  # as CKAN: a misspelt parameter is an error, not silently ignored
        raise SearchQueryError(
            f"Search Query is invalid: Invalid search parameters: {unknown}",
            hint="parameters: " + ", ".join(sorted(SEARCH_PARAMS)),
        )
    fq = [_text(data, "fq")] if data.get("fq") else []
    fq += _list(data, "fq_list")
    facet = _bool(data, "facet", True)
    # -1: every value (as CKAN); else a natural number
    facet_limit = (
        -1 if str(data.get("facet.limit")).strip() == "-1" else _int(data, "facet.limit", 50)
    )
    fl = _list(data, "fl")
    if len(fl) == 1:  # "name,title" or "name title"
        fl = fl[0].replace(",", " ").split()
    return ctx.index.search(
        q=_text(data, "q"),
        fq=fq,
        rows=_int(data, "rows", 10, maximum=MAX_ROWS),
        start=_int(data, "start", 0),
        sort=_text(data, "sort") or None,
        facet_fields=_list(data, "facet.field") if facet else [],
        facet_limit=facet_limit,
        facet_mincount=_int(data, "facet.mincount", 1),
        include_private=_bool(data, "include_private"),
        include_drafts=_bool(data, "include_drafts"),
        include_deleted=_bool(data, "include_deleted"),
        principal=ctx.principal,
        fl=fl if fl and fl != ["*"] else None,
        grants=ctx.grants,
    )


@action("package_create")
def package_create(ctx: ActionContext, data: dict) -> dict:
    """Create a dataset (name, title, owner_org, private, tags, extras, resources, ...)."""
    return ctx.packages.create(ctx.principal, data)


@action("package_update")
def package_update(ctx: ActionContext, data: dict) -> dict:
    """Replace a dataset's metadata; fields not given are reset (resources kept)."""
    return ctx.packages.update(ctx.principal, data)


@action("package_patch")
def package_patch(ctx: ActionContext, data: dict) -> dict:
    """Change only the given fields of a dataset."""
    return ctx.packages.patch(ctx.principal, data)


@action("package_delete")
def package_delete(ctx: ActionContext, data: dict) -> None:
    """Mark a dataset deleted (it stays in the database; its name stays taken)."""
    ctx.packages.delete(ctx.principal, _id(data))
    return None


@action("package_revise")
def package_revise(ctx: ActionContext, data: dict) -> dict:
    """Change a dataset by match/filter/update (the subset: ``match`` by id or name,
    ``update`` merged over the current dict, ``filter`` of ``-key`` removals)."""
    match = _json_param(data, "match", None)
    if not isinstance(match, dict) or not (match.get("id") or match.get("name")):
        raise InvalidInput({"match": ["Must be an object with id or name"]})
    current = ctx.packages.show(ctx.principal, str(match.get("id") or match.get("name")))
    for k, v in match.items():
        if current.get(k) != v:
            raise InvalidInput({"match": [f"{k} does not match"]})
    update = _json_param(data, "update", {})
    if not isinstance(update, dict):
        raise InvalidInput({"update": ["Must be an object"]})
    filt = _json_param(data, "filter", [])
    if not isinstance(filt, list):
        raise InvalidInput({"filter": ["Must be a list"]})
    new = dict(current)
    for f in filt:
        if isinstance(f, str) and f.startswith("-"):
            new.pop(f[1:].lstrip("/"), None)
    new.update(update)
    new["id"] = current["id"]
    return {"package": ctx.packages.update(ctx.principal, new)}


@action("current_package_list_with_resources", get=True)
def current_package_list_with_resources(ctx: ActionContext, data: dict) -> list[dict]:
    """Recently modified public datasets with their resources."""
    limit = _int(data, "limit", 10, maximum=MAX_ROWS)
    offset = _int(data, "offset", 0)
    page = _int(data, "page", None)
    if page:
        offset = (page - 1) * limit
    return ctx.index.search(
        rows=limit, start=offset, sort="metadata_modified desc", principal=ctx.principal
    )["results"]


# -- resources -------------------------------------------------------------------------
@action("resource_show", get=True)
def resource_show(ctx: ActionContext, data: dict) -> dict:
    return ctx.packages.resource_show(ctx.principal, _id(data), ctx.grants)


@action("resource_create")
def resource_create(ctx: ActionContext, data: dict) -> dict:
    """Add a resource. With a multipart ``upload`` the file goes through the ingest
    pipeline as a background job and becomes the dataset's next published version; the
    result then describes the pending job (``nsdx_job``). Without one, a link resource."""
    upload = ctx.files.get("upload")
    if upload is None:
        return ctx.packages.resource_create(ctx.principal, data)
    return _upload(ctx, data, upload, "resource_create")


# the actions that take a multipart file (``upload``)
UPLOAD_ACTIONS = frozenset({"resource_create", "resource_update", "resource_patch"})


def authorize_upload(ctx: ActionContext, name: str, data: dict) -> dict:
    """The dataset a file sent to action ``name`` with fields ``data`` would be added to,
    if the caller may add it; else the error. The HTTP layer calls this when the first
    file part of a request begins, before a byte of it is written, and the action calls
    it again."""
    if name not in UPLOAD_ACTIONS:
        raise BadRequest(f"{name} takes no file uploads")
    ctx.upload_jobs()
    if ctx.principal.anonymous:
        raise NotAuthorized(
            "an API token is required to upload files",
            hint="send it in the Authorization header; create one with `nsdx token create`",
        )
    if name == "resource_create":
        pkg_id = data.get("package_id") or data.get("id")
        if not pkg_id:
            raise InvalidInput({"package_id": ["Missing value (send it before the file)"]})
    else:
        r = ctx.packages.resource_show(ctx.principal, _id(data))
        pkg_id = r["package_id"]
    pkg = ctx.packages.show(ctx.principal, str(pkg_id))
    if not ctx.principal.can_edit(pkg["owner_org"]):
        raise NotAuthorized(
            f"User {ctx.principal.name or 'anonymous'} not authorized to add resources to "
            f"{pkg['name']}"
        )
    return pkg


def _upload(ctx: ActionContext, data: dict, upload: Upload, action: str) -> dict:
    pkg = authorize_upload(ctx, action, data)
    fmt = upload_format(upload.filename, data.get("format"))
    if fmt is None:
        raise InvalidInput(
            {
                "format": [
                    f"Cannot tell the format of {upload.filename!r}: send format=CSV, "
                    "JSON, NDJSON, XLSX, Parquet or GTFS"
                ]
            }  # fmt: skip
        )
    job = ctx.upload_jobs().submit(
        "ingest_upload",
        {
            "dataset": pkg["name"],
            "path": str(upload.path),
            "filename": upload.filename,
            "format": fmt,
            "options": {k: data[k] for k in ("encoding", "delimiter") if data.get(k)},
        },
        user_id=ctx.principal.user_id,
    )
    return {
        "id": job["id"],
        "package_id": pkg["id"],
        "name": data.get("name") or upload.filename,
        "format": fmt.upper() if fmt != "parquet" else "Parquet",
        "url": "",
        "url_type": "upload",
        "state": "pending",
        "nsdx_job": job,
    }


@action("resource_update")
def resource_update(ctx: ActionContext, data: dict) -> dict:
    if ctx.files.get("upload") is not None:
        return _upload(ctx, data, ctx.files["upload"], "resource_update")
    return ctx.packages.resource_update(ctx.principal, data)


@action("resource_patch")
def resource_patch(ctx: ActionContext, data: dict) -> dict:
    if ctx.files.get("upload") is not None:
        return resource_update(ctx, data)
    return ctx.packages.resource_update(ctx.principal, data, patch=True)


@action("resource_delete")
def resource_delete(ctx: ActionContext, data: dict) -> None:
    ctx.packages.resource_delete(ctx.principal, _id(data))
    return None


@action("nsdx_job_show", get=True)
def nsdx_job_show(ctx: ActionContext, data: dict) -> dict:
    """Status of a background job (queued, running, finished, failed) and its result, for
    its submitter and those who may see its dataset's unpublished upload."""
    if ctx.jobs is None:
        raise ObjectNotFound("job", _id(data))
    return ctx.jobs.show(_id(data), ctx.principal)


# -- organisations, members, groups, tags ----------------------------------------------
def _granted(ctx: ActionContext) -> frozenset[str]:
    """The datasets the caller's organisations hold live grants for (they count as seen)."""
    return granted_for(ctx.principal, ctx.grants)


@action("organization_list", get=True)
def organization_list(ctx: ActionContext, data: dict) -> list:
    orgs = ctx.accounts.orgs(ctx.principal, _granted(ctx))
    q = str(data.get("q") or "").strip().lower()
    if q:  # as CKAN: in the name, title or description
        orgs = [
            o for o in orgs
            if q in o["name"].lower() or q in (o["title"] or "").lower()
            or q in (o.get("description") or "").lower()
        ]  # fmt: skip
    wanted = _list(data, "organizations")
    if wanted:
        orgs = [o for o in orgs if o["name"] in wanted]
    sort = str(data.get("sort") or "name asc")
    key, _, direction = sort.partition(" ")
    if key == "package_count":
        orgs.sort(key=lambda o: o["package_count"], reverse=direction != "asc")
    elif key in ("title", "name"):
        orgs.sort(key=lambda o: o[key].lower(), reverse=direction == "desc")
    offset = _int(data, "offset", 0)
    limit = _int(data, "limit", None)
    orgs = orgs[offset : offset + limit if limit is not None else None]
    if _bool(data, "all_fields"):
        return orgs
    return [o["name"] for o in orgs]


@action("organization_show", get=True)
def organization_show(ctx: ActionContext, data: dict) -> dict:
    org = ctx.accounts.org_show(_id(data), ctx.principal, _granted(ctx))
    if not (ctx.principal.can_admin(org["id"])):
        org.pop("users", None)
    if _bool(data, "include_datasets"):
        org["packages"] = ctx.index.search(
            fq=f'owner_org:"{org["id"]}"',
            rows=MAX_ROWS,
            include_private=True,
            principal=ctx.principal,
            grants=ctx.grants,
        )["results"]
    return org


@action("organization_create")
def organization_create(ctx: ActionContext, data: dict) -> dict:
    """Create an organisation (sysadmins only); the creator becomes its admin."""
    return ctx.accounts.create_org(
        _id(data, "name"),
        title=data.get("title"),
        description=str(data.get("description") or ""),
        image_url=str(data.get("image_url") or ""),
        id=data.get("id"),
        creator=ctx.principal,
    )


def _member(ctx: ActionContext, org: str, user: str, role: str) -> dict:
    m = ctx.accounts.add_member(org, user, role, by=ctx.principal)
    return {"table_name": "user", "table_id": user, "capacity": role, "group_id": org, **m}


@action("member_create")
def member_create(ctx: ActionContext, data: dict) -> dict:
    """Add a user to an organisation: id (organisation), object (user), object_type
    'user', capacity admin|editor|member."""
    if str(data.get("object_type") or "user") != "user":
        raise InvalidInput({"object_type": ["Only users can be members (nsdx has no groups)"]})
    return _member(ctx, _id(data), _id(data, "object"), _id(data, "capacity"))


@action("organization_member_create")
def organization_member_create(ctx: ActionContext, data: dict) -> dict:
    return _member(ctx, _id(data), _id(data, "username"), _id(data, "role"))


def _scenario_groups(ctx: ActionContext, names: list[str] | None = None) -> list[dict]:
    """Scenarios as CKAN groups, each with the datasets the caller may see (catalogue.scenarios)."""
    from .. import scenarios

    out = []
    for d in scenarios.list_scenarios(ctx.cat):
        if names is not None and d["name"] not in names:
            continue
        found = ctx.index.search(
            fq=f'groups:"{_quoted(d["name"])}"', rows=MAX_ROWS, fl=["name"],
            include_private=True, principal=ctx.principal, grants=ctx.grants,
        )  # fmt: skip
        seen = {p["name"] for p in found["results"]}
        d["datasets"] = [x for x in d["datasets"] if x["name"] in seen]
        out.append(scenarios.group_dict(d, found["count"]))
    return out


@action("group_list", get=True)
def group_list(ctx: ActionContext, data: dict) -> list:
    """The application scenarios (应用场景), as CKAN groups: names, or with all_fields the
    group dicts (sector, status, proposer, datasets, query, evaluation in extras and under
    ``nsdx``). q, groups, sort (name|title|package_count asc|desc), limit, offset."""
    groups = _scenario_groups(ctx)
    q = str(data.get("q") or "").strip().lower()
    if q:
        groups = [
            g for g in groups
            if q in g["name"] or q in g["title"].lower() or q in g["description"].lower()
            or q in g["nsdx"]["title_en"].lower()
        ]  # fmt: skip
    wanted = _list(data, "groups")
    if wanted:
        groups = [g for g in groups if g["name"] in wanted]
    key, _, direction = str(data.get("sort") or "name asc").partition(" ")
    if key == "package_count":
        groups.sort(key=lambda g: g["package_count"], reverse=direction != "asc")
    elif key in ("title", "name"):
        groups.sort(key=lambda g: g[key].lower(), reverse=direction == "desc")
    offset = _int(data, "offset", 0)
    limit = _int(data, "limit", None)
    groups = groups[offset : offset + limit if limit is not None else None]
    if _bool(data, "all_fields"):
        return groups
    return [g["name"] for g in groups]


@action("group_show", get=True)
def group_show(ctx: ActionContext, data: dict) -> dict:
    """One application scenario as a CKAN group (by name or id); include_datasets adds
    the datasets it uses that the caller may see (up to 1000)."""
    from .. import scenarios

    name = _id(data)
    with ctx.cat.Session() as s:
        try:
            sc = scenarios.get(s, name)
        except scenarios.ScenarioNotFound:
            raise ObjectNotFound("group", name, hint="`group_list` names the scenarios") from None
        real = sc.name
    (group,) = _scenario_groups(ctx, [real])
    if _bool(data, "include_datasets"):
        group["packages"] = ctx.index.search(
            fq=f'groups:"{_quoted(real)}"', rows=MAX_ROWS, include_private=True,
            principal=ctx.principal, grants=ctx.grants,
        )["results"]  # fmt: skip
    return group


@action("tag_show", get=True)
def tag_show(ctx: ActionContext, data: dict) -> dict:
    """A tag of datasets the caller may see; include_datasets adds them (up to 1000)."""
    name = _id(data)
    found = ctx.index.search(
        fq=f'tags:"{_quoted(name)}"', rows=MAX_ROWS if _bool(data, "include_datasets") else 0,
        include_private=True, principal=ctx.principal, grants=ctx.grants,
    )  # fmt: skip
    if found["count"] == 0:
        raise ObjectNotFound("tag", name)
    out = {"id": name, "name": name, "display_name": name, "vocabulary_id": None}
    if _bool(data, "include_datasets"):
        out["packages"] = found["results"]
    return out


def _quoted(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


# -- users (CKAN's privacy rule: catalogue.auth.user_as_seen_by) ------------------------
@action("user_list", get=True)
def user_list(ctx: ActionContext, data: dict) -> list:
    """Users (signed-in callers only): q (in name or full name), order_by (name,
    fullname, created), limit, offset, all_fields (default true). E-mail addresses only
    to sysadmins and to the user themselves."""
    require_user_details(ctx.principal)
    users = [user_as_seen_by(u, ctx.principal) for u in ctx.accounts.users()]
    q = str(data.get("q") or "").strip().lower()
    if q:
        users = [u for u in users if q in u["name"].lower() or q in u["fullname"].lower()]
    order = str(data.get("order_by") or "name")
    if order not in ("name", "fullname", "created", "display_name"):
        raise InvalidInput({"order_by": ["Must be name, fullname, display_name or created"]})
    users.sort(key=lambda u: (str(u.get(order) or "").lower(), u["name"]))
    offset = _int(data, "offset", 0)
    limit = _int(data, "limit", None)
    users = users[offset : offset + limit if limit is not None else None]
    if not _bool(data, "all_fields", True):
        return [u["name"] for u in users]
    return users


@action("user_show", get=True)
def user_show(ctx: ActionContext, data: dict) -> dict:
    """One user by name or id (signed-in callers only; the e-mail address for sysadmins
    and the user themselves). Password hashes do not exist here: API tokens only."""
    require_user_details(ctx.principal)
    return user_as_seen_by(ctx.accounts.user(_id(data)), ctx.principal)


# -- autocomplete and resource search -------------------------------------------------------
@action("package_autocomplete", get=True)
def package_autocomplete(ctx: ActionContext, data: dict) -> list[dict]:
    """Public datasets whose name or title contains q (limit, default 10)."""
    q = str(data.get("q") or data.get("incomplete") or "").strip()
    if not q:
        return []
    return ctx.packages.autocomplete(q, limit=_int(data, "limit", 10, maximum=100) or 10)


RESOURCE_SEARCH_FIELDS = (
    "id", "name", "description", "format", "url", "mimetype", "hash", "url_type",
    "package_id", "state", "created", "last_modified", "position", "size",
)  # fmt: skip


@action("resource_search", get=True)
def resource_search(ctx: ActionContext, data: dict) -> dict:
    """Resources of public datasets matching every ``query`` term ``field:value`` (a
    string or a list; case-insensitive substring match, hash exact), order_by a field,
    offset, limit."""
    terms = _list(data, "query")
    if not terms and data.get("fields"):  # CKAN's deprecated form
        fields = data["fields"]
        if isinstance(fields, str):
            fields = json.loads(fields)
        terms = [f"{k}:{v}" for k, v in dict(fields).items()]
    wanted = []
    for t in terms:
        field, sep, value = t.partition(":")
        if not sep or not field:
            raise InvalidInput({"query": ["Must be <field>:<value>"]})
        if field not in RESOURCE_SEARCH_FIELDS:
            raise InvalidInput({"query": [f'Field "{field}" not recognised in resource_search.']})
        wanted.append((field, value.strip().lower()))
    order = str(data.get("order_by") or "")
    if order and order not in RESOURCE_SEARCH_FIELDS:
        raise InvalidInput({"order_by": [f'Field "{order}" not recognised in resource_search.']})
    found = []
    start = 0
    while True:  # public datasets only, as CKAN
        page = ctx.index.search(rows=MAX_ROWS, start=start, principal=ANONYMOUS)
        for pkg in page["results"]:
            for r in pkg.get("resources") or []:
                if all(_matches(r.get(f), f, v) for f, v in wanted):
                    found.append(r)
        start += MAX_ROWS
        if start >= page["count"]:
            break
    if order:
        found.sort(key=lambda r: str(r.get(order) or "").lower())
    offset = _int(data, "offset", 0)
    limit = _int(data, "limit", None)
    return {"count": len(found), "results": found[offset : offset + limit if limit else None]}


def _matches(have, field: str, want: str) -> bool:
    if have is None:
        return False
    have = str(have).lower()
    return have == want if field == "hash" else want in have


@action("tag_list", get=True)
def tag_list(ctx: ActionContext, data: dict) -> list:
    tags = ctx.index.tags(ctx.principal, query=_text(data, "query") or _text(data, "q") or None)
    if _bool(data, "all_fields"):
        return [{"id": t, "name": t, "vocabulary_id": None} for t in tags]
    return tags
