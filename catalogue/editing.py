"""Writing dataset metadata through the API: create, update (full replace), patch and
(soft) delete datasets and their link resources, with the permission rules of
:mod:`catalogue.auth`. Published tables (Parquet resources of a version) come only from
:func:`catalogue.publishing.publish_dataset`; here only their name and description change.

Every surface renders :func:`render_package`: ``registry.package_dict`` plus the dataset's
link resources.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest.spec import GRADES
from ingest.storage.base import reserved_prefix
from validation.messages import Msg
from validation.money import InvalidAmount, to_fen

from . import iceberg
from .access import ANONYMOUS, NO_GRANTS, DatasetFacts, Grants, require_see, see_clause
from .auth import NAME_RE, InvalidInput, NotAuthorized, ObjectNotFound, Principal
from .declared import DECLARED_KEY, check_declaration, declared_of
from .models import Dataset, DatasetTag, LinkResource, Organization, Resource, utcnow
from .registry import (
    CKAN_FIELDS_IN_EXTRAS,
    ORIGIN_KEY,
    Catalogue,
    find_dataset,
    format_of_url,
    is_name_taken,
    is_view_name_clash,
    media_type,
    package_dict,
    view_clash_message,
    view_name_owner,
    view_stem,
)

# extras that are columns of the dataset, and extras nsdx computes (ignored on input)
COLUMN_EXTRAS = ("domain", "access", "title_en", "notes_en", "attribution", "price_cny")
COMPUTED_EXTRAS = ("current_version", "row_count", "bytes", "quality_score", "storage_uri")
DEFAULT_DOMAIN = "general"
TAG_RE = re.compile(r"^[\w \-.]{2,100}$", re.UNICODE)
ACCESS = ("open", "restricted")
RESOURCE_CORE = ("id", "package_id", "name", "description", "format", "url", "position")
RESOURCE_COMPUTED = (
    "state",
    "created",
    "last_modified",
    "size",
    "nsdx_table",
    "nsdx_row_count",
    "nsdx_files",
    "nsdx_schema",
    "url_type",
    "metadata_modified",
)


def link_resource_dict(r: LinkResource, package_id: str, position: int) -> dict:
    return {
        **{k: v for k, v in (r.extras or {}).items()},
        "id": r.id,
        "package_id": package_id,
        "name": r.name,
        "description": r.description,
        "format": r.format,
        "url": r.url,
        "position": position,
        "state": "active",
        "created": r.created.isoformat(),
        "last_modified": r.last_modified.isoformat() if r.last_modified else None,
        "metadata_modified": (r.last_modified or r.created).isoformat(),
        "url_type": (r.extras or {}).get("url_type"),
        "mimetype": (r.extras or {}).get("mimetype") or media_type(r.format),
        "hash": (r.extras or {}).get("hash") or "",
    }


def render_package(ds: Dataset, s: Session) -> dict:
    """The package dict every surface renders (registry.package_dict + link resources)."""
    return render_packages(s, [ds])[0]


def render_packages(s: Session, datasets: list[Dataset]) -> list[dict]:
    """Package dicts of many datasets at once (the search index's rebuild): relationships
    and link resources are loaded in a few queries instead of a few per dataset."""
    from sqlalchemy.orm import selectinload

    ids = [d.id for d in datasets]
    if not ids:
        return []
    s.scalars(  # loads into the session: package_dict then finds them there
        select(Dataset)
        .where(Dataset.id.in_(ids))
        .options(
            selectinload(Dataset.organization),
            selectinload(Dataset.tags),
            selectinload(Dataset.versions),
        )
    ).all()
    links: dict[str, list[LinkResource]] = {}
    for r in s.scalars(
        select(LinkResource)
        .where(LinkResource.dataset_id.in_(ids))
        .order_by(LinkResource.position, LinkResource.created)
    ):
        links.setdefault(r.dataset_id, []).append(r)
    from .scenarios import groups_of

    groups = groups_of(s, ids)  # the scenarios that use each dataset, as CKAN groups
    out = []
    for ds in datasets:
        pkg = package_dict(ds, s)
        pkg["groups"] = groups.get(ds.id, [])
        pkg["tags"] = sorted(pkg["tags"], key=lambda t: t["name"])
        mine = links.get(ds.id)
        if mine:
            base = len(pkg["resources"])
            pkg["resources"] = pkg["resources"] + [
                link_resource_dict(r, ds.id, base + i) for i, r in enumerate(mine)
            ]
            pkg["num_resources"] = len(pkg["resources"])
            if ds.current_version is None and pkg["nsdx"]["schema"] is None:  # a copy
                tables = [r for r in pkg["resources"] if r.get("nsdx_schema")]
                pkg["nsdx"]["schema"] = tables[0]["nsdx_schema"] if len(tables) == 1 else None
        out.append(pkg)
    return out


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "on")
    return bool(v)


def _time(v: Any) -> datetime | None:
    """A naive UTC datetime from an ISO string (None when absent or not a date)."""
    if not v or not isinstance(v, str):
        return None
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d.astimezone(UTC).replace(tzinfo=None) if d.tzinfo else d


ORIGIN_NUMBERS = ("current_version", "row_count", "bytes", "quality_score")


def _origin_facts(data: Mapping, extras: Mapping) -> dict:
    """What the origin published, from its package dict: the typed ``nsdx`` view, else
    the (string) extras. Never a storage location."""
    nsdx = data.get("nsdx")
    view: Mapping = nsdx if isinstance(nsdx, Mapping) else {}
    out: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for k in ORIGIN_NUMBERS:
        v = view.get(k, extras.get(k))
        if v in (None, ""):
            continue
        try:
            n = float(v)
        except (TypeError, ValueError):
            errors[k] = ["Must be a number"]
            continue
        out[k] = n if k == "quality_score" else int(n)
    if errors:
        raise InvalidInput(errors)
    if isinstance(view.get("contact"), Mapping):  # the origin organisation's contact point
        out["contact"] = {str(k): str(v) for k, v in view["contact"].items()}
    if not out:
        return {}
    if isinstance(view.get("validation"), Mapping):
        out["validation"] = dict(view["validation"])
    if isinstance(view.get("versions"), list):
        out["versions"] = [int(v) for v in view["versions"] if isinstance(v, int | float)]
    c = view.get("classification")
    if isinstance(c, Mapping) and c.get("grade") in GRADES:  # the cross-border facts
        people = c.get("individuals")
        cat = c.get("data_category")
        out["classification"] = {
            "grade": c["grade"],
            "data_category": cat[:100] if isinstance(cat, str) else None,
            "has_pi": c.get("has_pi") is True,
            "sensitive_pi": c.get("sensitive_pi") is True,
            "individuals": people
            if isinstance(people, int) and not isinstance(people, bool) and people >= 0
            else None,
        }
    return out


def _origin_resource(r: Mapping) -> dict:
    """A published table's facts from the origin's resource dict (file lists without any
    storage key), and its size and url_type as the origin gave them."""
    out: dict[str, Any] = {}
    for k in ("nsdx_table", "nsdx_row_count", "nsdx_schema", "size", "url_type"):
        if k in r:  # nsdx_table is None for a single-table dataset
            out[k] = r[k]
    if isinstance(r.get("nsdx_files"), list):
        out["nsdx_files"] = [
            {str(k): v for k, v in f.items() if k != "key"}
            for f in r["nsdx_files"]
            if isinstance(f, Mapping)
        ]
    return out


def _str(v: Any) -> str:
    return "" if v is None else str(v)


class Packages:
    """Dataset metadata of one catalogue, read and written on behalf of a principal."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    # -- reading -------------------------------------------------------------------------
    def _readable(
        self, s: Session, p: Principal, name_or_id: str, grants: Grants = NO_GRANTS
    ) -> Dataset:
        ds = find_dataset(s, name_or_id, include_deleted=True)
        require_see(p, DatasetFacts.of(ds), grants, name_or_id)
        return ds

    def show(self, p: Principal, name_or_id: str, grants: Grants = NO_GRANTS) -> dict:
        with self.cat.Session() as s:
            return render_package(self._readable(s, p, name_or_id, grants), s)

    def names(self, *, limit: int | None = None, offset: int = 0) -> list[str]:
        """Names of the active public datasets (CKAN's package_list: what anyone sees)."""
        with self.cat.Session() as s:
            q = (
                select(Dataset.name)
                .where(Dataset.state == "active", see_clause(ANONYMOUS))
                .order_by(Dataset.name)
                .offset(offset)
            )
            if limit is not None:
                q = q.limit(limit)
            return list(s.scalars(q))

    def autocomplete(self, q: str, *, limit: int = 10) -> list[dict]:
        """Public active datasets whose name or title contains ``q`` (CKAN's
        package_autocomplete): names matching first, then titles."""
        like = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.cat.Session() as s:
            rows = s.execute(
                select(Dataset.name, Dataset.title)
                .where(
                    Dataset.state == "active",
                    Dataset.private.is_(False),
                    func.lower(Dataset.name).like(like, escape="\\")
                    | func.lower(Dataset.title).like(like, escape="\\"),
                )
                .order_by(Dataset.name)
                .limit(limit * 2)
            ).all()
        out = []
        for name, title in rows:
            by_name = q.lower() in name.lower()
            out.append({
                "name": name,
                "title": title,
                "match_field": "name" if by_name else "title",
                "match_displayed": name if by_name else f"{title} ({name})",
            })  # fmt: skip
        out.sort(key=lambda d: (d["match_field"] != "name", d["name"]))
        return out[:limit]

    # -- writing -------------------------------------------------------------------------
    def create(self, p: Principal, data: Mapping[str, Any]) -> dict:
        self._require_user(p)
        try:
            with self.cat.Session.begin() as s:
                ds = Dataset(extras={}, domain=DEFAULT_DOMAIN)
                self._apply(s, p, ds, dict(data), creating=True)
                s.flush()
                return render_package(ds, s)
        except IntegrityError as e:
            if (refused := self._name_refused(e, data)) is None:
                raise
            raise refused from None

    def update(self, p: Principal, data: Mapping[str, Any]) -> dict:
        """Full replace: fields not given are reset (resources are kept when not given)."""
        self._require_user(p)
        key = data.get("id") or data.get("name")
        if not key:
            raise InvalidInput({"id": ["Missing value"]})
        try:
            with self.cat.Session.begin() as s:
                ds = find_dataset(s, str(key), include_deleted=True)
                self._check_edit(p, ds.organization_id, ds.name)
                self._apply(s, p, ds, dict(data), creating=False)
                s.flush()
                iceberg.unlist_in(s, ds)  # no longer open: out of the open Iceberg catalog
                return render_package(ds, s)
        except IntegrityError as e:
            if (refused := self._name_refused(e, data)) is None:
                raise
            raise refused from None

    def _name_refused(self, e: IntegrityError, data: Mapping[str, Any]) -> InvalidInput | None:
        """The database refused a name the check above let through: another request
        took it, or a name on its view, between the check and the commit. The same 409 as
        the check's; any other integrity error is not the caller's to fix."""
        name = str(data.get("name") or "")
        if is_name_taken(e):
            return InvalidInput({"name": [Msg("That URL is already in use.")]})
        if is_view_name_clash(e):
            with self.cat.Session() as s:
                owner = view_name_owner(s, name) or "another dataset"
            return InvalidInput({"name": [view_clash_message(owner)]})
        return None

    def patch(self, p: Principal, data: Mapping[str, Any]) -> dict:
        key = data.get("id") or data.get("name")
        if not key:
            raise InvalidInput({"id": ["Missing value"]})
        current = self.show(p, str(key))
        merged = {**current, **dict(data), "id": current["id"]}
        if "extras" in data:  # patching extras merges them key by key
            ex = {e["key"]: e["value"] for e in current.get("extras") or []}
            ex.update({e["key"]: e["value"] for e in data.get("extras") or []})
            merged["extras"] = [{"key": k, "value": v} for k, v in ex.items()]
        return self.update(p, merged)

    def delete(self, p: Principal, name_or_id: str) -> None:
        self._require_user(p)
        with self.cat.Session.begin() as s:
            ds = find_dataset(s, name_or_id, include_deleted=True)
            self._check_edit(p, ds.organization_id, ds.name)
            ds.state = "deleted"
            ds.metadata_modified = utcnow()
            s.flush()
            iceberg.unlist_in(s, ds)

    # -- validation and assignment -------------------------------------------------------
    @staticmethod
    def _require_user(p: Principal) -> None:
        if p.anonymous:
            raise NotAuthorized(
                "an API token is required for this action",
                hint="send it in the Authorization header; create one with `nsdx token create`",
            )

    @staticmethod
    def _check_edit(p: Principal, org_id: str | None, name: str) -> None:
        if not p.can_edit(org_id):
            raise NotAuthorized(
                Msg(
                    "User %(user)s not authorized to edit package %(name)s", user=p.name, name=name
                ),
                hint=Msg("an admin or editor of the dataset's organisation (or a sysadmin) may"),
            )

    def _org(self, s: Session, p: Principal, data: dict, errors: dict) -> Organization | None:
        od = data.get("organization") if isinstance(data.get("organization"), dict) else None
        if data.get("organization") and od is None:
            errors.setdefault("organization", []).append("Must be an object with a name")
        ref = data.get("owner_org") or (od or {}).get("name")
        if not ref:
            return None
        if not isinstance(ref, str):
            errors.setdefault("owner_org", []).append("Must be an organisation's name or id")
            return None
        org = s.scalar(
            select(Organization).where((Organization.id == ref) | (Organization.name == ref))
        )
        if org is None and od and isinstance(od.get("name"), str):
            org = s.scalar(select(Organization).where(Organization.name == od["name"]))
            if org is None and p.sysadmin and reserved_prefix(od["name"]):
                # the organisation names its datasets' storage folder (catalogue.auth's rule)
                errors.setdefault("owner_org", []).append(
                    Msg("This name is kept by the object store; choose another.")
                )
                return None
            if org is None and p.sysadmin and NAME_RE.fullmatch(od["name"]):
                # a sysadmin loading datasets from another portal brings their organisation
                org = Organization(
                    name=od["name"], title=od.get("title") or od["name"], description="", extras={}
                )
                if od.get("id") and s.get(Organization, od["id"]) is None:
                    org.id = od["id"]
                s.add(org)
                s.flush()
        if org is None:
            errors.setdefault("owner_org", []).append(Msg("Organization does not exist"))
        return org

    def _apply(self, s: Session, p: Principal, ds: Dataset, data: dict, *, creating: bool):
        errors: dict[str, list[str]] = {}
        name = data.get("name")
        if not name:
            if creating:
                errors["name"] = [Msg("Missing value")]
            name = ds.name
        elif not NAME_RE.fullmatch(str(name)):
            errors["name"] = [
                Msg(
                    "Must be purely lowercase alphanumeric (ascii) characters and these symbols: -_"
                )
            ]
        elif "__" in view_stem(str(name)):  # 'x--v1' is the view x__v1 as well
            errors["name"] = [
                Msg(
                    "Must not contain '__' or '--' (in view names they separate a dataset from "
                    "its tables and versions)"
                )
            ]
        else:
            clash = s.scalar(select(Dataset.id).where(Dataset.name == name))
            owner = view_name_owner(s, str(name), dataset_id=ds.id)
            if clash is not None and clash != ds.id:
                errors["name"] = [Msg("That URL is already in use.")]
            elif owner is not None:
                errors["name"] = [view_clash_message(owner)]
        org = self._org(s, p, data, errors)
        private = _bool(data.get("private", False))
        if org is None and "owner_org" not in errors:
            if private:
                errors["private"] = [Msg("Datasets with no organization can't be private.")]
            elif not p.sysadmin:
                errors["owner_org"] = [Msg("An organization must be provided")]
        if org is not None and not p.can_edit(org.id):
            raise NotAuthorized(
                f"User {p.name} not authorized to add dataset to organization {org.name}",
                hint="an admin or editor of the organisation (or a sysadmin) may",
            )
        extras_in = data.get("extras") or []
        extras: dict[str, Any] = {}
        if not isinstance(extras_in, list):
            errors["extras"] = ["Must be a list of {key, value} objects"]
            extras_in = []
        for e in extras_in:
            if not isinstance(e, Mapping) or "key" not in e:
                errors.setdefault("extras", []).append("Each extra needs a key")
                continue
            key = _str(e["key"])
            if key in extras:
                errors.setdefault("extras", []).append(f"Duplicate key {key!r}")
            if e.get("deleted"):
                continue
            extras[key] = e.get("value")
        for k in COLUMN_EXTRAS:  # top-level fields win over extras
            if data.get(k) is not None:
                extras[k] = data[k]
        # an update that does not name access, domain or price keeps the stored ones: a
        # title fix must never turn restricted (sold) data into open data
        access = _str(extras.get("access") or (None if creating else ds.access) or "open")
        if access not in ACCESS:
            errors["access"] = [Msg("Must be one of %(choices)s", choices=", ".join(ACCESS))]
        elif not creating and ds.access == "restricted" and access == "open" and not p.sysadmin:
            errors["access"] = [
                Msg("Only a sysadmin can open restricted data (it is sold through the exchange)")
            ]
        domain = _str(extras.get("domain") or (None if creating else ds.domain) or DEFAULT_DOMAIN)
        if not re.fullmatch(r"[a-z][a-z0-9-]*", domain):
            errors["domain"] = [Msg("Must be lower-case words joined by '-'")]
        elif not creating and domain != ds.domain and not p.sysadmin:
            # the domain decides the cross-border rules (the free-trade zone's negative
            # list is kept per domain): the seller's editors cannot move data off it
            errors["domain"] = [
                Msg(
                    "Only a sysadmin can change a dataset's domain (it decides which "
                    "cross-border rules apply); ask the exchange operator"
                )
            ]
        price = None if creating else ds.price_fen
        if "price_cny" in extras:
            price = None
            if extras["price_cny"] not in (None, ""):
                try:  # a JSON number (99.5) or a string ("280000.00"): exact, whole fen
                    price = to_fen(extras["price_cny"], what="price_cny", floats=True)
                except InvalidAmount as e:
                    errors["price_cny"] = [e.message]
        tags = self._tags(data, errors)
        # the columns and checks the next upload is published with (catalogue.declared); an
        # update that names neither keeps them: a title fix must never unmask personal data
        declared = None if creating else declared_of(ds.extras)
        schema_in, exps_in = data.get("schema"), data.get("expectations")
        shown: Mapping = data["nsdx"] if isinstance(data.get("nsdx"), Mapping) else {}
        echoed = shown.get("declared")  # a package dict as package_show gave it (a dump)
        if schema_in is None and exps_in is None and isinstance(echoed, Mapping):
            if echoed != declared:
                schema_in, exps_in = echoed.get("schema"), echoed.get("expectations")
        if (
            schema_in is not None
            or exps_in is not None
            or (declared is not None and access != ds.access)
        ):
            have = declared or {}
            declared, refused = check_declaration(
                schema_in if schema_in is not None else have.get("schema"),
                exps_in if exps_in is not None else have.get("expectations"),
                access,
            )
            errors.update(refused)
        state = data.get("state") or "active"
        if state not in ("active", "draft"):
            errors["state"] = [Msg("Must be active or draft")]
        # a dataset's id is the portal's to give; a sysadmin loading another catalogue keeps
        # its ids, anyone else's is ignored (CKAN's empty_if_not_sysadmin)
        given_id = data.get("id") if creating and p.sysadmin else None
        if given_id:
            try:
                uuid.UUID(str(data["id"]))
            except ValueError:
                errors["id"] = ["Must be a UUID"]
            else:
                if s.get(Dataset, str(data["id"])) is not None:
                    errors["id"] = ["Dataset id already exists"]
                elif (
                    s.get(Resource, str(data["id"])) is not None
                    or s.get(LinkResource, str(data["id"])) is not None
                ):
                    errors["id"] = ["That id is a resource's id"]
        if errors:
            raise InvalidInput(errors)
        if given_id:
            ds.id = str(given_id)
        ds.name = str(name)
        ds.title = _str(data.get("title") or name)
        ds.notes = _str(data.get("notes")) or None
        ds.url = _str(data.get("url")) or None
        ds.author = _str(data.get("author")) or None
        ds.license_id = _str(data.get("license_id")) or "notspecified"
        ds.private = private
        ds.state = state
        ds.organization = org
        ds.domain = domain
        ds.access = access
        ds.title_en = _str(extras.get("title_en")) or None
        ds.notes_en = _str(extras.get("notes_en")) or None
        ds.attribution = _str(extras.get("attribution")) or None
        ds.price_fen = price
        ds.extras = {
            k: v
            for k, v in extras.items()
            if k not in COLUMN_EXTRAS + COMPUTED_EXTRAS and k != DECLARED_KEY
        }
        if declared is not None:
            ds.extras[DECLARED_KEY] = declared
        # a sysadmin loading or harvesting a dataset published elsewhere keeps what the
        # origin published (versions, rows, quality...) with it; nobody else can claim them
        copy = p.sysadmin and ds.current_version is None
        origin = _origin_facts(data, extras) if copy else {}
        if origin:
            ds.extras[ORIGIN_KEY] = origin
            c = origin.get("classification")
            if c:  # a copy of important data stays important (exchange.crossborder)
                ds.grade, ds.data_category = c["grade"], c["data_category"]
                ds.has_pi, ds.sensitive_pi = c["has_pi"], c["sensitive_pi"]
        for k in CKAN_FIELDS_IN_EXTRAS:  # CKAN's top-level maintainer, author_email, ...
            v = _str(data.get(k)).strip()
            if k == "license_url" and not v.startswith(("https://", "http://")):
                v = ""
            if v:
                ds.extras[k] = v[:500]
        if {t.tag for t in ds.tags} != set(tags) or creating:
            ds.tags = [DatasetTag(tag=t) for t in tags]
        ds.metadata_modified = utcnow()
        # loading another catalogue keeps its history; so does a harvest updating its copy
        # (the origin's times: a harvest that finds nothing new changes no date here)
        keep_times = p.sysadmin and (creating or bool(origin and extras.get("harvest_source")))
        if creating:
            ds.metadata_created = ds.metadata_modified
        if keep_times:
            ds.metadata_created = _time(data.get("metadata_created")) or ds.metadata_created
            ds.metadata_modified = _time(data.get("metadata_modified")) or ds.metadata_modified
        if creating:
            s.add(ds)
        s.flush()
        if "resources" in data and data["resources"] is not None:
            self._replace_resources(
                s, ds, data["resources"], keep_times=keep_times, copy=bool(origin)
            )

    @staticmethod
    def _tags(data: dict, errors: dict) -> list[str]:
        raw = data.get("tags")
        names: list[str] = []
        if raw is None and data.get("tag_string"):
            raw = [t.strip() for t in str(data["tag_string"]).split(",") if t.strip()]
        if raw is not None and not isinstance(raw, list):
            errors["tags"] = ['Must be a list of tags ({"name": ...} objects or strings)']
            return names
        for t in raw or []:
            n = t.get("name") if isinstance(t, Mapping) else t
            n = _str(n).strip()
            if not TAG_RE.fullmatch(n):
                errors.setdefault("tags", []).append(
                    Msg(
                        "Tag '%(tag)s' must be 2-100 characters: letters, digits, spaces, -_.",
                        tag=n[:100],
                    )
                )
            elif n not in names:
                names.append(n)
        return names

    # -- resources -----------------------------------------------------------------------
    def _replace_resources(
        self,
        s: Session,
        ds: Dataset,
        resources: list,
        *,
        keep_times: bool = False,
        copy: bool = False,
    ) -> None:
        if not isinstance(resources, list):
            raise InvalidInput({"resources": ["Must be a list"]})
        published = {
            r.id: r for r in s.scalars(select(Resource).where(Resource.dataset_id == ds.id))
        }
        links = {
            r.id: r for r in s.scalars(select(LinkResource).where(LinkResource.dataset_id == ds.id))
        }
        keep: set[str] = set()
        pos = 0
        for i, r in enumerate(resources):
            if not isinstance(r, Mapping):
                raise InvalidInput({"resources": [f"Resource {i} must be an object"]})
            rid = r.get("id")
            if rid in published:
                pub = published[rid]
                pub.name = _str(r.get("name")) or pub.name
                pub.description = _str(r.get("description")) or None
                continue
            lr = links.get(rid) if rid else None
            if lr is None:
                lr = LinkResource(dataset_id=ds.id, extras={})
                if rid:
                    lr.id = self._new_resource_id(s, rid, i)
                s.add(lr)
            self._set_link(lr, r, keep_times=keep_times, copy=copy)
            lr.position = pos
            pos += 1
            s.flush()
            keep.add(lr.id)
        for rid, lr in links.items():
            if rid not in keep:
                s.delete(lr)

    @staticmethod
    def _new_resource_id(s: Session, rid: Any, i: int | None = None) -> str:
        """A resource id given by the client, refused (409) if any resource — of any
        dataset, published table or link — or any dataset has it: it would shadow it."""
        rid = str(rid)
        field = "id" if i is None else "resources"
        where = "" if i is None else f"Resource {i}: "
        if len(rid) > 36:
            raise InvalidInput({field: [f"{where}an id has at most 36 characters"]})
        if s.get(LinkResource, rid) is not None or s.get(Resource, rid) is not None:
            raise InvalidInput({field: [f"{where}resource id {rid!r} already exists"]})
        if s.get(Dataset, rid) is not None:
            raise InvalidInput({field: [f"{where}id {rid!r} is a dataset's id"]})
        return rid

    @staticmethod
    def _set_link(
        lr: LinkResource, r: Mapping, *, keep_times: bool = False, copy: bool = False
    ) -> None:
        errors = {}
        url = _str(r.get("url"))
        if len(url) > 2000:
            errors["url"] = ["Must be at most 2000 characters"]
        if errors:
            raise InvalidInput(errors)
        if lr.url != url:  # last_modified tells when the data (the link) changed
            lr.last_modified = utcnow()
        lr.url = url
        lr.name = _str(r.get("name"))
        lr.description = _str(r.get("description"))
        # no format given for a link that had none: the file name's, as CKAN guesses it
        lr.format = _str(r.get("format")) or ("" if lr.format else format_of_url(url))
        lr.extras = {
            str(k): v
            for k, v in r.items()
            if k not in RESOURCE_CORE + RESOURCE_COMPUTED and not str(k).startswith("nsdx_")
        }
        if copy:  # a published table of the origin: its facts and its download URLs
            lr.extras.update(_origin_resource(r))
        if keep_times:
            lr.created = _time(r.get("created")) or lr.created or utcnow()
            lr.last_modified = _time(r.get("last_modified"))

    def _resource(self, s: Session, rid: str) -> tuple[Dataset, LinkResource | Resource]:
        r = s.get(Resource, rid) or s.get(LinkResource, rid)  # a published table first
        if r is None:
            raise ObjectNotFound("resource", rid)
        ds = s.get(Dataset, r.dataset_id)
        if ds is None:  # pragma: no cover - cascades make this impossible
            raise ObjectNotFound("resource", rid)
        return ds, r

    def resource_show(self, p: Principal, rid: str, grants: Grants = NO_GRANTS) -> dict:
        with self.cat.Session() as s:
            ds, _ = self._resource(s, rid)
            require_see(p, DatasetFacts.of(ds), grants, rid)
            for r in render_package(ds, s)["resources"]:
                if r["id"] == rid:
                    return r
            raise ObjectNotFound("resource", rid)  # a table of a superseded version

    def resource_create(self, p: Principal, data: Mapping[str, Any]) -> dict:
        self._require_user(p)
        if not data.get("package_id"):
            raise InvalidInput({"package_id": ["Missing value"]})
        with self.cat.Session.begin() as s:
            ds = find_dataset(s, str(data["package_id"]), include_deleted=True)
            self._check_edit(p, ds.organization_id, ds.name)
            n = s.scalar(select(func.count()).where(LinkResource.dataset_id == ds.id)) or 0
            lr = LinkResource(dataset_id=ds.id, extras={}, position=n)
            if data.get("id"):
                lr.id = self._new_resource_id(s, data["id"])
            self._set_link(lr, data)
            s.add(lr)
            ds.metadata_modified = utcnow()
            s.flush()
            rid = lr.id
        return self.resource_show(p, rid)

    def resource_update(self, p: Principal, data: Mapping[str, Any], *, patch: bool = False):
        self._require_user(p)
        rid = data.get("id")
        if not rid:
            raise InvalidInput({"id": ["Missing value"]})
        current = self.resource_show(p, str(rid)) if patch else {}
        merged = {**current, **dict(data)}
        with self.cat.Session.begin() as s:
            ds, r = self._resource(s, str(rid))
            self._check_edit(p, ds.organization_id, ds.name)
            if isinstance(r, LinkResource):
                self._set_link(r, merged)
            else:  # a published table: only its label changes
                r.name = _str(merged.get("name")) or r.name
                r.description = _str(merged.get("description")) or None
            ds.metadata_modified = utcnow()
        return self.resource_show(p, str(rid))

    def resource_delete(self, p: Principal, rid: str) -> None:
        self._require_user(p)
        with self.cat.Session.begin() as s:
            ds, r = self._resource(s, rid)
            self._check_edit(p, ds.organization_id, ds.name)
            if isinstance(r, Resource):
                raise InvalidInput(
                    {
                        "id": [
                            "This resource is a table of a published version; publish a new "
                            "version of the dataset to change its tables."
                        ]
                    }  # fmt: skip
                )
            s.delete(r)
            ds.metadata_modified = utcnow()
