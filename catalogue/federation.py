"""Federation with other CKAN portals through ckanapi: push our datasets' metadata to a
portal, harvest a portal's metadata into ours. ckanapi is touched here only."""

from __future__ import annotations

from collections.abc import Iterator

from .auth import SYSTEM, Accounts
from .editing import Packages
from .errors import CatalogueError
from .registry import Catalogue

USER_AGENT = "nsdx-federation/1.0 (+https://github.com/nansha/nsdx)"
# keys of package dicts the receiving portal computes for itself
_LOCAL_KEYS = ("num_resources", "num_tags", "license_title", "isopen")
_NEVER_SENT = ("storage_uri",)  # storage locations stay on the portal that has the data


def _shareable(pkg: dict) -> dict:
    """A package dict without the keys its receiver computes or must never see; the
    published tables' facts (``nsdx``, resources' ``nsdx_*``) travel with it, so the other
    side keeps versions, row counts, schema, quality and file lists."""
    out = {k: v for k, v in pkg.items() if k not in _LOCAL_KEYS}
    if isinstance(out.get("nsdx"), dict):
        out["nsdx"] = {k: v for k, v in out["nsdx"].items() if k not in _NEVER_SENT}
    out["extras"] = [e for e in out.get("extras") or [] if e.get("key") not in _NEVER_SENT]
    out["resources"] = [
        {
            **r,
            **(
                {
                    "nsdx_files": [
                        {k: v for k, v in f.items() if k != "key"} for f in r["nsdx_files"]
                    ]
                }  # fmt: skip
                if isinstance(r.get("nsdx_files"), list)
                else {}
            ),
        }
        for r in out.get("resources") or []
    ]
    return out


PAGE = 100


class PortalUnreachable(CatalogueError):
    """The other CKAN portal did not answer (worth retrying)."""

    transient = True
    status = 502


def _remote(url: str, token: str | None):
    from ckanapi import RemoteCKAN

    return RemoteCKAN(url.rstrip("/"), apikey=token, user_agent=USER_AGENT)


def _unreachable(url: str, e: Exception) -> PortalUnreachable:
    return PortalUnreachable(
        f"cannot reach the CKAN portal at {url}: {type(e).__name__}",
        hint="check the URL (the portal's base URL, without /api/3) and the network",
        url=url,
    )


def outgoing(pkg: dict, owner_org: str) -> dict:
    """Our package dict as another portal should receive it."""
    out = _shareable(pkg)
    out.pop("organization", None)
    out["owner_org"] = owner_org
    return out


def push(
    cat: Catalogue,
    url: str,
    token: str,
    *,
    ids: list[str] | None = None,
    owner_org: str | None = None,
    site: str = "",
) -> dict:
    """Create or update our public datasets (or ``ids``) on the portal at ``url``.

    ``site`` is this portal's public base URL: resource URLs (our download routes) become
    absolute against it. Each dataset goes to ``owner_org`` there, or to an organisation of the same name as ours
    (created when missing). Returns ``{"created": [...], "updated": [...], "failed":
    [{"name", "error"}]}``.
    """
    packages = Packages(cat)
    if ids:
        pkgs = [packages.show(SYSTEM, i) for i in ids]
    else:
        pkgs = [p for p in cat.packages(include_private=False)]
        pkgs = [packages.show(SYSTEM, p["id"]) for p in pkgs]
    if site:  # download URLs point at this portal
        from .downloads import absolute

        pkgs = absolute(pkgs, site)
    report: dict = {"created": [], "updated": [], "failed": []}
    try:
        _push(url, token, pkgs, owner_org, report)
    except OSError as e:  # requests' ConnectionError is an OSError
        raise _unreachable(url, e) from e
    return report


def _push(url: str, token: str, pkgs: list[dict], owner_org: str | None, report: dict) -> None:
    from ckanapi import CKANAPIError, NotFound

    with _remote(url, token) as ckan:
        orgs_seen: dict[str, str] = {}
        for pkg in pkgs:
            try:
                org = owner_org or (pkg["organization"] or {}).get("name")
                if not org:
                    raise ValueError("the dataset has no organisation; pass --owner-org")
                if org not in orgs_seen:
                    orgs_seen[org] = _ensure_org(ckan, org, pkg.get("organization"))
                data = outgoing(pkg, orgs_seen[org])
                try:
                    existing = ckan.action.package_show(id=pkg["name"])
                except NotFound:
                    existing = None
                if existing:
                    data["id"] = existing["id"]
                    ckan.call_action("package_update", data)
                    report["updated"].append(pkg["name"])
                else:
                    ckan.call_action("package_create", data)
                    report["created"].append(pkg["name"])
            except (CKANAPIError, ValueError) as e:
                report["failed"].append({"name": pkg["name"], "error": _err(e)})


def _ensure_org(ckan, name: str, ours: dict | None) -> str:
    from ckanapi import NotFound

    try:
        return ckan.action.organization_show(id=name)["id"]
    except NotFound:
        title = (ours or {}).get("title") or name
        return ckan.action.organization_create(name=name, title=title)["id"]


def _err(e: Exception) -> str:
    from ckanapi import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(f"{k}: {v}" for k, v in e.error_dict.items() if k != "__type")
    return str(e.args[0] if e.args else e)


def remote_packages(url: str, token: str | None = None, q: str | None = None) -> Iterator[dict]:
    """Every dataset of the portal at ``url`` (matching ``q``), page by page."""
    with _remote(url, token) as ckan:
        start = 0
        while True:
            r = ckan.action.package_search(
                q=q or "*:*", rows=PAGE, start=start, include_private=bool(token),
                sort="name asc",
            )  # fmt: skip
            yield from r["results"]
            start += PAGE
            if start >= r["count"] or not r["results"]:
                return


def incoming(pkg: dict, source: str) -> dict:
    """Another portal's package dict as we store it: their metadata (with what they
    published: versions, rows, schema, quality, files and their download URLs), their
    organisation, and an extra naming where it came from."""
    data = _shareable(pkg)
    data["owner_org"] = None
    extras = [e for e in data.get("extras") or [] if e.get("key") != "harvest_source"]
    data["extras"] = extras + [{"key": "harvest_source", "value": source}]
    return data


def origin_of(pkg: dict) -> str | None:
    """The portal a dataset was harvested from; None when it was published here."""
    for e in pkg.get("extras") or []:
        if e.get("key") == "harvest_source":
            return e.get("value") or None
    return None


def harvest(cat: Catalogue, url: str, *, token: str | None = None, q: str | None = None) -> dict:
    """Import the datasets of the portal at ``url`` (their organisations are created here
    when missing). A dataset harvested from that portal before is updated; one of the same
    name that this portal publishes (or that came from another portal) is never
    overwritten: it is reported under ``skipped``."""
    from .errors import DatasetNotFound

    packages = Packages(cat)
    accounts = Accounts(cat)
    report: dict = {"created": [], "updated": [], "skipped": [], "failed": []}
    source = url.rstrip("/")
    try:
        remote = list(remote_packages(url, token, q))
    except OSError as e:
        raise _unreachable(url, e) from e
    for pkg in remote:
        data = incoming(pkg, source)
        org = pkg.get("organization") or {}
        try:
            try:
                mine = packages.show(SYSTEM, pkg["name"])
            except DatasetNotFound:
                mine = None
            if mine and origin_of(mine) != source:
                report["skipped"].append(pkg["name"])  # ours, or another portal's
                continue
            if org.get("name"):
                try:
                    with cat.Session() as s:
                        data["owner_org"] = accounts.org(s, org["name"]).id
                except CatalogueError:
                    data["owner_org"] = accounts.create_org(
                        org["name"], title=org.get("title") or org["name"]
                    )["id"]
            if mine:
                data["id"] = mine["id"]
                packages.update(SYSTEM, data)
                report["updated"].append(pkg["name"])
            else:
                packages.create(SYSTEM, data)
                report["created"].append(pkg["name"])
        except CatalogueError as e:
            report["failed"].append({"name": pkg.get("name"), "error": e.message})
    return report
