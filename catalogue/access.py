"""Who may *see* a dataset and who may *read* its data: the one access rule of nsdx.

*See* is the dataset's metadata: ``package_show``, search results, counts and facets,
organisation counts, DCAT and Croissant, the web pages, the status of its upload jobs.
*Read* is its data: the query API, downloads, exchange deliveries and Delta Sharing.

The rule
--------
* **open** (active, not private, ``access: open``): everyone sees and reads.
* **restricted** (active, not private, ``access: restricted``, sold through the exchange):
  everyone sees; the members of its organisation (any role), sysadmins and the members of an
  organisation holding a *live* access grant read.
* **private** and **draft**: the members of its organisation and sysadmins see and read;
  so does an organisation holding a live grant for it (bought before the seller hid it: a
  paying buyer keeps what it paid for until the term ends or the order is refunded).
* **deleted**: the admins and editors of its organisation and sysadmins see it (to restore
  it); nobody reads its data.
* A grant is live when it has started, has not expired, was not revoked and its order is
  paid and not refunded (the exchange decides: :class:`Grants`). Refunded or expired, the
  buyer is like any other organisation.
* Auditors read the exchange's records (offers, orders, grants, ledger), not datasets: in
  the catalogue they are like any signed-in user without an organisation.

One rule, three forms: :func:`may_see` / :func:`may_read` (Python predicates),
:func:`see_clause` / :func:`read_clause` (SQLAlchemy ``WHERE`` clauses over ``datasets``)
and :func:`see_mask` (a boolean mask over the search index's documents). The table
:data:`TABLE` states the rule case by case; ``tests/test_access.py`` checks the three forms
against it and ``tests/test_access_surfaces.py`` drives it through every surface;
``docs/api.md`` shows it (:func:`table_markdown`).

The catalogue must not import the exchange (import-linter layers): the live-grant check is
injected as a :class:`Grants` object, built in the shell (``nsdx.access``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from sqlalchemy import and_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from validation.messages import Msg

from .errors import CatalogueError, DatasetNotFound
from .models import Dataset

EDIT_ROLES = frozenset({"admin", "editor"})  # may edit an organisation's datasets, and sell them
MEMBER_ROLES = frozenset({"admin", "editor", "member"})  # every organisation role
ROLES = ("admin", "editor", "member")


# -- who is asking -------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """The caller of an action: a user with their organisation roles, or anonymous."""

    user_id: str | None = None
    name: str | None = None
    sysadmin: bool = False
    auditor: bool = False
    roles: Mapping[str, str] = field(default_factory=dict)  # organization id -> role
    # the API token the caller authenticated with (signed URLs are bound to it)
    token_id: str | None = field(default=None, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    @property
    def user_name(self) -> str:
        """The signed-in user's name; NotAuthorized (403) for an anonymous caller."""
        if self.user_id is None or self.name is None:
            raise NotAuthorized("this needs a signed-in user", hint="sign in or send a token")
        return self.name

    def insider(self, org_id: str | None) -> bool:
        """A sysadmin, or a member (any role) of organisation ``org_id``."""
        return self.sysadmin or (org_id is not None and org_id in self.roles)

    def can_edit(self, org_id: str | None) -> bool:
        """A sysadmin, or an admin or editor of ``org_id`` (the roles that sell, too)."""
        return self.sysadmin or (org_id is not None and self.roles.get(org_id) in EDIT_ROLES)

    def can_admin(self, org_id: str | None) -> bool:
        return self.sysadmin or (org_id is not None and self.roles.get(org_id) == "admin")


ANONYMOUS = Principal()
SYSTEM = Principal(user_id="system", name="system", sysadmin=True)


# -- what the rule needs to know about a dataset --------------------------------------------
@dataclass(frozen=True)
class DatasetFacts:
    id: str
    name: str
    org_id: str | None
    state: str = "active"  # active | draft | deleted
    private: bool = False
    access: str = "open"  # open | restricted

    @classmethod
    def of(cls, ds: Dataset) -> DatasetFacts:
        return cls(ds.id, ds.name, ds.organization_id, ds.state, bool(ds.private), ds.access)

    @classmethod
    def of_package(cls, pkg: Mapping[str, Any]) -> DatasetFacts:
        """From a package dict (``registry.package_dict``)."""
        nsdx = pkg.get("nsdx") or {}
        return cls(
            pkg["id"],
            pkg["name"],
            pkg.get("owner_org"),
            pkg.get("state") or "active",
            bool(pkg.get("private")),
            nsdx.get("access") or "open",
        )

    @property
    def public(self) -> bool:
        return self.state == "active" and not self.private

    def unpublished(self) -> DatasetFacts:
        """The facts of an upload not yet published to this dataset: seen as a draft."""
        state = "deleted" if self.state == "deleted" else "draft"
        return replace(self, state=state, private=True)


# -- the exchange's live-grant check (injected) ----------------------------------------------
class Grants(Protocol):
    """Which organisations hold a live access grant (built by the shell from the exchange)."""

    def live(self, org_ids: Collection[str], dataset_id: str, version: int | None = None) -> bool:
        """Does one of ``org_ids`` hold a live grant for ``dataset_id`` (covering
        ``version`` when given; ``None``: the dataset's current version)?"""
        ...

    def datasets(self, org_ids: Collection[str]) -> frozenset[str]:
        """The ids of every dataset one of ``org_ids`` holds a live grant for."""
        ...


class NoGrants:
    """No exchange: nobody holds a grant."""

    def live(self, org_ids: Collection[str], dataset_id: str, version: int | None = None) -> bool:
        return False

    def datasets(self, org_ids: Collection[str]) -> frozenset[str]:
        return frozenset()


class Granted:
    """A grant already checked by the caller (Delta Sharing and deliveries hold one in hand)."""

    def live(self, org_ids: Collection[str], dataset_id: str, version: int | None = None) -> bool:
        return True

    def datasets(self, org_ids: Collection[str]) -> frozenset[str]:  # pragma: no cover
        raise TypeError("a grant in hand covers one dataset; it has no list of datasets")


NO_GRANTS: Grants = NoGrants()
GRANTED: Grants = Granted()


def granted_for(p: Principal, grants: Grants) -> frozenset[str]:
    """The datasets ``p``'s organisations hold live grants for (for the SQL and mask forms)."""
    if not p.roles or p.sysadmin:
        return frozenset()
    return grants.datasets(list(p.roles))


def _granted(p: Principal, ds: DatasetFacts, grants: Grants, version: int | None = None) -> bool:
    return bool(p.roles) and grants.live(list(p.roles), ds.id, version)


# -- the rule as Python predicates -----------------------------------------------------------
def may_see(p: Principal, ds: DatasetFacts, grants: Grants = NO_GRANTS) -> bool:
    """May ``p`` see the dataset's metadata?"""
    if ds.state == "deleted":
        return p.can_edit(ds.org_id)
    if ds.public or p.insider(ds.org_id):
        return True
    return _granted(p, ds, grants)


def may_read(
    p: Principal, ds: DatasetFacts, grants: Grants = NO_GRANTS, version: int | None = None
) -> bool:
    """May ``p`` read the dataset's data (``version``: the one read; None for the current)?"""
    if ds.state == "deleted":
        return False
    if p.insider(ds.org_id) or (ds.public and ds.access == "open"):
        return True
    return _granted(p, ds, grants, version)


def may_read_run_reports(p: Principal, ds: DatasetFacts) -> bool:
    """May ``p`` read the provider's own validation reports of the dataset — every run's,
    including runs that published nothing, with the failing values (masked when served)?
    The people who publish it: its organisation's admins and editors, and sysadmins.
    Everyone else who may see the dataset reads the copy published with each version:
    counts and verdicts, no values."""
    return p.can_edit(ds.org_id)


class NotAuthorized(CatalogueError):
    """The caller may not do this (HTTP 403, CKAN 'Authorization Error')."""

    status = 403


class DatasetRestricted(CatalogueError):
    """The caller may see a dataset but not read its data (HTTP 403)."""

    status = 403


def require_see(p: Principal, ds: DatasetFacts, grants: Grants = NO_GRANTS, key: str = "") -> None:
    """Raise unless ``p`` may see the dataset: a deleted one is not found (404), a private
    one or a draft is not authorised (403, as CKAN answers)."""
    if may_see(p, ds, grants):
        return
    if ds.state == "deleted":
        raise DatasetNotFound(key or ds.name)
    raise NotAuthorized(
        f"User {p.name or 'anonymous'} not authorized to read package {ds.name}",
        hint="private datasets and drafts are visible to members of their organisation",
    )


def require_read(
    p: Principal,
    ds: DatasetFacts,
    grants: Grants = NO_GRANTS,
    *,
    version: int | None = None,
    organization: str | None = None,
    view: str | None = None,
) -> None:
    """Raise unless ``p`` may read the dataset's data: :class:`DatasetRestricted` (403), or
    :class:`DatasetNotFound` (404) for a deleted one."""
    if may_read(p, ds, grants, version):
        return
    if ds.state == "deleted":
        raise DatasetNotFound(ds.name)
    who = p.name or "anonymous"
    shown = Msg(" (view %(view)s)", view=view) if view else ""
    org = organization or ds.org_id or ""
    fields = {"dataset": ds.name, "view": view}
    if not ds.public or ds.access == "open":  # private or draft: not for sale
        raise DatasetRestricted(
            Msg(
                "dataset '%(name)s'%(view)s is private to its organisation '%(org)s'; "
                "%(who)s may not read it",
                name=ds.name,
                view=shown,
                org=org,
                who=who,
            ),
            hint=Msg("ask the organisation's admin to add you as a member"),
            **fields,
        )
    raise DatasetRestricted(
        Msg(
            "dataset '%(name)s'%(view)s is restricted: it may be read by members of '%(org)s' "
            "and by organisations holding an active access grant; %(who)s holds none",
            name=ds.name,
            view=shown,
            org=org,
            who=who,
        ),
        hint=(
            Msg("log in with an API token (Authorization header) if your organisation bought it")
            if p.anonymous
            else Msg(
                "buy access on the exchange: see its offers with GET "
                "/api/exchange/offers?dataset=%(name)s (or `nsdx exchange offers`), "
                "order one with POST /api/exchange/orders; reading works once the seller "
                "has confirmed payment and granted access",
                name=ds.name,
            )
        ),
        organization=organization,
        **fields,
    )


# -- the rule as SQL ---------------------------------------------------------------------------
def _edit_orgs(p: Principal) -> list[str]:
    return [o for o, r in p.roles.items() if r in EDIT_ROLES]


def see_clause(p: Principal, granted: Collection[str] = ()) -> ColumnElement[bool]:
    """``WHERE`` clause over ``datasets``: the rows ``p`` may see. ``granted``: the ids
    ``p``'s organisations hold live grants for (:meth:`Grants.datasets`)."""
    if p.sysadmin:
        return true()
    d = Dataset
    alive = d.state != "deleted"
    conds: list[ColumnElement[bool]] = [and_(d.state == "active", d.private.is_(False))]
    if p.roles:
        conds.append(and_(alive, d.organization_id.in_(list(p.roles))))
    if _edit_orgs(p):
        conds.append(and_(d.state == "deleted", d.organization_id.in_(_edit_orgs(p))))
    if granted:
        conds.append(and_(alive, d.id.in_(list(granted))))
    return or_(*conds)


def read_clause(p: Principal, granted: Collection[str] = ()) -> ColumnElement[bool]:
    """``WHERE`` clause over ``datasets``: the rows whose data ``p`` may read."""
    d = Dataset
    alive = d.state != "deleted"
    if p.sysadmin:
        return alive
    conds: list[ColumnElement[bool]] = [
        and_(d.state == "active", d.private.is_(False), d.access == "open")
    ]
    if p.roles:
        conds.append(d.organization_id.in_(list(p.roles)))
    if granted:
        conds.append(d.id.in_(list(granted)))
    return and_(alive, or_(*conds)) if len(conds) > 1 else and_(alive, conds[0])


# -- the rule as a search-index mask -----------------------------------------------------------
@dataclass(frozen=True)
class IndexColumns:
    """Per-document arrays of the search index (one entry per slot; free slots have the
    empty string as id)."""

    ids: np.ndarray  # str
    org_ids: np.ndarray  # str ('' for none)
    states: np.ndarray  # str
    private: np.ndarray  # bool

    @classmethod
    def of(cls, docs: Sequence[Mapping[str, Any] | None]) -> IndexColumns:
        ids, orgs, states, private = [], [], [], []
        for d in docs:
            d = d or {}
            ids.append(d.get("id") or "")
            orgs.append(d.get("owner_org") or "")
            states.append(d.get("state") or "")
            private.append(bool(d.get("private")))
        return cls(
            np.array(ids, dtype=str),
            np.array(orgs, dtype=str),
            np.array(states, dtype=str),
            np.array(private, dtype=bool),
        )


def see_mask(p: Principal, cols: IndexColumns, granted: Collection[str] = ()) -> np.ndarray:
    """The documents ``p`` may see, as a boolean mask (free slots are never seen)."""
    exists = cols.ids != ""
    if p.sysadmin:
        return exists
    deleted = cols.states == "deleted"
    public = (cols.states == "active") & ~cols.private

    def among(values: np.ndarray, wanted: Collection[str]) -> np.ndarray:
        if not wanted:
            return np.zeros(len(values), dtype=bool)
        return np.isin(values, np.array(sorted(wanted), dtype=str))

    insider = among(cols.org_ids, p.roles) & (cols.org_ids != "")
    editor = among(cols.org_ids, _edit_orgs(p)) & (cols.org_ids != "")
    alive_seen = public | insider | among(cols.ids, granted)
    return exists & np.where(deleted, editor, alive_seen)


# -- the table: the rule case by case (tests and docs/api.md use it) ----------------------------
TABLE_ROLES: dict[str, str] = {
    "anonymous": "no token",
    "member": "member of the owning organisation",
    "editor": "editor of the owning organisation",
    "admin": "admin of the owning organisation",
    "other_org": "member of another organisation",
    "auditor": "auditor (user flag)",
    "sysadmin": "sysadmin",
    "buyer": "member of an organisation holding an access grant for the dataset",
}
TABLE_STATES: dict[str, str] = {
    "open": "active, public, access open",
    "restricted": "active, public, access restricted; the buyer holds no grant for it",
    "private": "private (restricted); the buyer's grant is live",
    "draft": "draft (restricted); the buyer's grant is live",
    "deleted": "deleted (restricted); the buyer's grant is live",
    "bought": "active, public, restricted; the buyer's grant is live",
    "refunded": "active, public, restricted; the buyer's order was refunded",
    "expired": "active, public, restricted; the buyer's grant has expired",
}
_ALL = tuple(TABLE_ROLES)
_OWNERS = ("member", "editor", "admin", "sysadmin")


def _row(read: tuple[str, ...], see: tuple[str, ...] = ()) -> dict[str, str]:
    return {r: "read" if r in read else "see" if r in see else "-" for r in _ALL}


# "read": sees the metadata and reads the data; "see": the metadata only; "-": neither
TABLE: dict[str, dict[str, str]] = {
    "open": _row(read=_ALL),
    "restricted": _row(read=_OWNERS, see=_ALL),
    "private": _row(read=(*_OWNERS, "buyer")),
    "draft": _row(read=(*_OWNERS, "buyer")),
    "deleted": _row(read=(), see=("editor", "admin", "sysadmin")),
    "bought": _row(read=(*_OWNERS, "buyer"), see=_ALL),
    "refunded": _row(read=_OWNERS, see=_ALL),
    "expired": _row(read=_OWNERS, see=_ALL),
}


def table_markdown() -> str:
    """The access table as the Markdown of the "Access rules" section of docs/api.md."""
    roles = list(TABLE_ROLES)
    lines = [
        "| dataset | " + " | ".join(roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for state, row in TABLE.items():
        lines.append(f"| {state} | " + " | ".join(row[r] for r in roles) + " |")
    lines.append("")
    lines.append("Roles: " + "; ".join(f"**{k}** — {v}" for k, v in TABLE_ROLES.items()) + ".")
    lines.append("")
    lines.append("Datasets: " + "; ".join(f"**{k}** — {v}" for k, v in TABLE_STATES.items()) + ".")
    return "\n".join(lines) + "\n"


__all__ = [
    "ANONYMOUS",
    "EDIT_ROLES",
    "GRANTED",
    "MEMBER_ROLES",
    "NO_GRANTS",
    "SYSTEM",
    "TABLE",
    "DatasetFacts",
    "DatasetRestricted",
    "Grants",
    "IndexColumns",
    "NotAuthorized",
    "Principal",
    "granted_for",
    "may_read",
    "may_read_run_reports",
    "may_see",
    "read_clause",
    "require_read",
    "require_see",
    "see_clause",
    "see_mask",
    "table_markdown",
]
