"""Accounts: users, organisation memberships with roles, API tokens, and who may do what.

Roles
-----
- ``sysadmin`` (user flag): may do anything, sees every private dataset.
- organisation ``admin``: manages the organisation's members and datasets.
- organisation ``editor``: creates and edits the organisation's datasets (a data provider).
- organisation ``member``: reads the organisation's private datasets (e.g. an AI firm that
  bought access).
- ``auditor`` (user flag, not an organisation role): reads the exchange records (offers,
  orders, grants, ledger) of every organisation and changes nothing. It is a user-level
  flag because an auditor's scope is the whole exchange, not one organisation.

Who may see and read which dataset is :mod:`catalogue.access` (the one rule); the
:class:`Principal` lives there too and is re-exported here.

Tokens are ``nsdx_`` + 43 url-safe characters; only their sha256 is stored. They may expire
and can be revoked. The CLI (`nsdx user|org|token`) and the Action API call these functions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest.storage.base import reserved_prefix

from .access import ANONYMOUS, ROLES, SYSTEM, NotAuthorized, Principal, see_clause
from .errors import CatalogueError
from .models import ApiToken, Dataset, Membership, Organization, User, utcnow
from .registry import Catalogue

__all__ = [
    "ANONYMOUS",
    "ROLES",
    "SYSTEM",
    "Accounts",
    "InvalidInput",
    "NotAuthorized",
    "ObjectNotFound",
    "Principal",
]
NAME_RE = re.compile(r"^[a-z0-9_-]{2,100}$")
TOKEN_PREFIX = "nsdx_"


# -- errors shared by the catalogue's write paths ------------------------------------------
class ObjectNotFound(CatalogueError):
    """A user, organisation, resource or job that does not exist (HTTP 404)."""

    status = 404

    def __init__(self, kind: str, name: str, *, hint: str | None = None) -> None:
        super().__init__(f"{kind} {name!r} not found", hint=hint, kind=kind, name=name)


class InvalidInput(CatalogueError):
    """Input that fails validation; ``errors`` maps each field to its messages (HTTP 409,
    CKAN 'Validation Error')."""

    status = 409

    def __init__(self, errors: Mapping[str, list[str]], *, hint: str | None = None) -> None:
        self.errors = {k: list(v) for k, v in errors.items()}
        summary = "; ".join(f"{k}: {' '.join(_flat(v))}" for k, v in self.errors.items())
        super().__init__(f"invalid input: {summary}", hint=hint, errors=self.errors)


def _flat(messages: list) -> list[str]:
    """The messages of a field; a list's field holds one object per entry, CKAN's way
    (``[{}, {"pii": [msg]}]``): its messages are named by entry."""
    out: list[str] = []
    for i, m in enumerate(messages):
        if isinstance(m, Mapping):
            out += [f"[{i}] {k}: {' '.join(map(str, v))}" for k, v in m.items()]
        else:
            out.append(str(m))
    return out


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user_dict(u: User) -> dict:
    return {
        "id": u.id,
        "name": u.name,
        "fullname": u.fullname,
        "email": u.email,
        "sysadmin": u.sysadmin,
        "auditor": u.auditor,
        "reviewer": u.reviewer,
        "state": u.state,
        "created": u.created.isoformat(),
    }


def user_as_seen_by(d: dict, viewer: Principal) -> dict:
    """A user dict as ``viewer`` may see it (CKAN's rule): the e-mail address and the
    nsdx role flags only to sysadmins and to the user themselves; never a password hash or
    a token. Anonymous callers see no users at all (:func:`require_user_details`)."""
    me = viewer.user_id is not None and viewer.user_id == d["id"]
    out = {
        "id": d["id"],
        "name": d["name"],
        "fullname": d.get("fullname") or "",
        "display_name": d.get("fullname") or d["name"],
        "about": "",
        "state": d.get("state") or "active",
        "created": d.get("created"),
        "sysadmin": d.get("sysadmin", False),
        "image_url": "",
    }
    if viewer.sysadmin or me:
        out["email"] = d.get("email") or ""
        out["auditor"] = d.get("auditor", False)
    if "organizations" in d and (viewer.sysadmin or me):
        out["organizations"] = d["organizations"]
    return out


def require_user_details(viewer: Principal) -> None:
    """User details are for signed-in users (CKAN with ckan.auth.public_user_details off)."""
    if viewer.anonymous:
        raise NotAuthorized(
            "Not authorized to see the users of this portal",
            hint="sign in: send an API token in the Authorization header",
        )


def org_dict(o: Organization, *, package_count: int | None = None) -> dict:
    d = {
        "id": o.id,
        "name": o.name,
        "title": o.title or o.name,
        "display_name": o.title or o.name,
        "description": o.description,
        "image_url": o.image_url,
        "state": o.state,
        "type": "organization",
        "is_organization": True,
        "approval_status": "approved",
        "created": o.created.isoformat(),
    }
    if package_count is not None:
        d["package_count"] = package_count
    return d


def _token_dict(t: ApiToken, user_name: str) -> dict:
    now = utcnow()
    status = "active"
    if t.revoked:
        status = "revoked"
    elif t.expires and t.expires <= now:
        status = "expired"
    return {
        "id": t.id,
        "user": user_name,
        "name": t.name,
        "created": t.created.isoformat(),
        "expires": t.expires.isoformat() if t.expires else None,
        "last_used": t.last_used.isoformat() if t.last_used else None,
        "revoked": t.revoked.isoformat() if t.revoked else None,
        "status": status,
    }


class Accounts:
    """Users, organisations, memberships and tokens of one catalogue database."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    # -- lookups -------------------------------------------------------------------------
    @staticmethod
    def _user(s: Session, name_or_id: str) -> User:
        u = s.scalar(select(User).where((User.name == name_or_id) | (User.id == name_or_id)))
        if u is None or u.state == "deleted":
            raise ObjectNotFound("user", name_or_id, hint="create it with `nsdx user create NAME`")
        return u

    @staticmethod
    def org(s: Session, name_or_id: str) -> Organization:
        o = s.scalar(
            select(Organization).where(
                (Organization.name == name_or_id) | (Organization.id == name_or_id)
            )
        )
        if o is None or o.state == "deleted":
            raise ObjectNotFound(
                "organization", name_or_id, hint="create it with `nsdx org create NAME`"
            )
        return o

    # -- users ---------------------------------------------------------------------------
    def create_user(
        self,
        name: str,
        *,
        sysadmin: bool = False,
        auditor: bool = False,
        reviewer: bool = False,
        fullname: str = "",
        email: str = "",
    ) -> dict:
        if not NAME_RE.fullmatch(name or ""):
            raise InvalidInput(
                {"name": ["Must be 2-100 characters: lower-case letters, digits, '-' or '_'."]}
            )
        with self.cat.Session.begin() as s:
            if s.scalar(select(User).where(User.name == name)) is not None:
                raise InvalidInput({"name": [f"User {name!r} already exists."]})
            u = User(
                name=name,
                sysadmin=sysadmin,
                auditor=auditor,
                reviewer=reviewer,
                fullname=fullname,
                email=email,
            )
            s.add(u)
            s.flush()
            return _user_dict(u)

    def user(self, name_or_id: str) -> dict:
        with self.cat.Session() as s:
            u = self._user(s, name_or_id)
            d = _user_dict(u)
            d["organizations"] = [
                {"name": o.name, "role": m.role}
                for m, o in s.execute(
                    select(Membership, Organization)
                    .join(Organization, Organization.id == Membership.organization_id)
                    .where(Membership.user_id == u.id)
                    .order_by(Organization.name)
                )
            ]
            return d

    def users(self) -> list[dict]:
        with self.cat.Session() as s:
            return [
                _user_dict(u)
                for u in s.scalars(select(User).where(User.state != "deleted").order_by(User.name))
            ]

    # -- organisations -------------------------------------------------------------------
    def create_org(
        self,
        name: str,
        *,
        title: str | None = None,
        description: str = "",
        image_url: str = "",
        id: str | None = None,
        creator: Principal = SYSTEM,
    ) -> dict:
        if creator.anonymous:
            raise NotAuthorized("log in (send an API token) to create an organisation")
        if not creator.sysadmin:
            raise NotAuthorized(
                "only a sysadmin may create organisations",
                hint="ask a sysadmin to run `nsdx org create NAME`",
            )
        if not NAME_RE.fullmatch(name or ""):
            raise InvalidInput(
                {"name": ["Must be 2-100 characters: lower-case letters, digits, '-' or '_'."]}
            )
        if reserved_prefix(name):  # the organisation names its datasets' storage folder
            raise InvalidInput({"name": ["This name is kept by the object store; choose another."]})
        with self.cat.Session.begin() as s:
            if s.scalar(select(Organization).where(Organization.name == name)) is not None:
                raise InvalidInput({"name": ["Group name already exists in database"]})
            if id and s.get(Organization, id) is not None:
                raise InvalidInput({"id": ["Organization id already exists"]})
            o = Organization(
                name=name,
                title=title or name,
                description=description or "",
                image_url=image_url or "",
                extras={},
            )
            if id:
                o.id = id
            s.add(o)
            s.flush()
            if creator.user_id and creator.user_id != "system":
                s.add(Membership(organization_id=o.id, user_id=creator.user_id, role="admin"))
            return org_dict(o, package_count=0)

    def org_show(
        self, name_or_id: str, principal: Principal = ANONYMOUS, granted: Collection[str] = ()
    ) -> dict:
        with self.cat.Session() as s:
            o = self.org(s, name_or_id)
            d = org_dict(o, package_count=self._counts(s, principal, granted, o.id).get(o.id, 0))
            d["users"] = [
                {"name": u.name, "capacity": m.role, "id": u.id}
                for m, u in s.execute(
                    select(Membership, User)
                    .join(User, User.id == Membership.user_id)
                    .where(Membership.organization_id == o.id)
                    .order_by(User.name)
                )
            ]
            return d

    @staticmethod
    def _counts(
        s: Session, principal: Principal, granted: Collection[str], org_id: str | None = None
    ) -> dict[str, int]:
        """Active datasets per organisation that ``principal`` may see (the access rule's
        SQL form; drafts and deleted ones are not counted, as package_search does not list
        them by default)."""
        q = (
            select(Dataset.organization_id, func.count())
            .where(Dataset.state == "active", see_clause(principal, granted))
            .group_by(Dataset.organization_id)
        )
        if org_id is not None:
            q = q.where(Dataset.organization_id == org_id)
        return {o: n for o, n in s.execute(q) if o is not None}

    def orgs(self, principal: Principal = ANONYMOUS, granted: Collection[str] = ()) -> list[dict]:
        """Every active organisation with the number of datasets ``principal`` may see in it
        (``granted``: the datasets its organisations hold live grants for; two queries,
        however many organisations)."""
        with self.cat.Session() as s:
            counts = self._counts(s, principal, granted)
            return [
                org_dict(o, package_count=counts.get(o.id, 0))
                for o in s.scalars(
                    select(Organization)
                    .where(Organization.state == "active")
                    .order_by(Organization.name)
                )
            ]

    def add_member(self, org: str, user: str, role: str, *, by: Principal = SYSTEM) -> dict:
        if role not in ROLES:
            raise InvalidInput({"role": [f"Role must be one of {', '.join(ROLES)}, not {role!r}."]})
        with self.cat.Session.begin() as s:
            o = self.org(s, org)
            if not by.can_admin(o.id):
                raise NotAuthorized(f"only an admin of {o.name!r} or a sysadmin may add members")
            u = self._user(s, user)
            m = s.get(Membership, (o.id, u.id))
            if m is None:
                s.add(Membership(organization_id=o.id, user_id=u.id, role=role))
            else:
                m.role = role
            return {"organization": o.name, "user": u.name, "role": role}

    def remove_member(self, org: str, user: str, *, by: Principal = SYSTEM) -> None:
        with self.cat.Session.begin() as s:
            o = self.org(s, org)
            if not by.can_admin(o.id):
                raise NotAuthorized(f"only an admin of {o.name!r} or a sysadmin may remove members")
            u = self._user(s, user)
            m = s.get(Membership, (o.id, u.id))
            if m is None:
                raise ObjectNotFound("member", f"{u.name} in {o.name}")
            s.delete(m)

    # -- tokens --------------------------------------------------------------------------
    def create_token(
        self, user: str, *, expires_days: float | None = None, name: str = ""
    ) -> tuple[str, dict]:
        """A new token for ``user``: (the secret, shown once; its stored description)."""
        if expires_days is not None and expires_days <= 0:
            raise InvalidInput({"expires": ["Must be a positive number of days."]})
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.cat.Session.begin() as s:
            u = self._user(s, user)
            t = ApiToken(
                user_id=u.id,
                name=name or "",
                token_hash=hash_token(secret),
                expires=utcnow() + timedelta(days=expires_days) if expires_days else None,
            )
            s.add(t)
            s.flush()
            return secret, _token_dict(t, u.name)

    def tokens(self, user: str | None = None) -> list[dict]:
        with self.cat.Session() as s:
            q = select(ApiToken, User).join(User, User.id == ApiToken.user_id)
            if user:
                q = q.where(User.id == self._user(s, user).id)
            return [
                _token_dict(t, u.name)
                for t, u in s.execute(q.order_by(User.name, ApiToken.created))
            ]

    def revoke_token(self, token_or_id: str, *, owner: str | None = None) -> dict:
        """Revoke a token given its id (from `nsdx token list`) or the secret itself.
        With ``owner`` (a user name), only that user's tokens may be revoked (the portal's
        own-token page); another user's token is reported as not found."""
        with self.cat.Session.begin() as s:
            if token_or_id.startswith(TOKEN_PREFIX):
                t = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token_or_id)))
            else:
                t = s.get(ApiToken, token_or_id)
            if t is not None and owner is not None and t.user_id != self._user(s, owner).id:
                t = None
            if t is None:
                raise ObjectNotFound("token", token_or_id[:12], hint="see `nsdx token list`")
            if t.revoked is None:
                t.revoked = utcnow()
            u = s.get(User, t.user_id)
            return _token_dict(t, u.name if u else "?")

    def authenticate(self, token: str | None) -> Principal:
        """The principal a token stands for; anonymous when no token is given."""
        if not token:
            return ANONYMOUS
        with self.cat.Session() as s:
            t = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip())))
            now = utcnow()
            if t is None:
                raise NotAuthorized(
                    "the API token is not valid", hint="create one with `nsdx token create`"
                )
            u = self._live_token_user(s, t, now)
            if t.last_used is None or (now - t.last_used) > timedelta(minutes=5):
                try:
                    t.last_used = now
                    s.commit()
                except IntegrityError:  # pragma: no cover - concurrent update
                    s.rollback()
            return replace(self._principal(s, u), token_id=t.id)

    @staticmethod
    def _live_token_user(s: Session, t: ApiToken, now) -> User:
        """The active user of token ``t``; NotAuthorized when it is revoked or expired."""
        if t.revoked is not None:
            raise NotAuthorized("the API token has been revoked")
        if t.expires is not None and t.expires <= now:
            raise NotAuthorized(
                f"the API token expired on {t.expires.isoformat()}",
                hint="create a new one with `nsdx token create --user NAME`",
            )
        u = s.get(User, t.user_id)
        if u is None or u.state != "active":
            raise NotAuthorized("the API token's user is not active")
        return u

    def token_principal(self, token_id: str, user: str) -> Principal:
        """The principal of the still-live token ``token_id`` of user ``user`` (a signed
        URL is bound to the token it was minted with); NotAuthorized when the token is
        unknown, another user's, revoked or expired."""
        with self.cat.Session() as s:
            t = s.get(ApiToken, token_id)
            if t is None:
                raise NotAuthorized("the API token the URL was made with no longer exists")
            u = self._live_token_user(s, t, utcnow())
            if u.name != user:
                raise NotAuthorized("the API token the URL was made with is another user's")
            return replace(self._principal(s, u), token_id=t.id)

    def principal(self, user: str) -> Principal:
        with self.cat.Session() as s:
            return self._principal(s, self._user(s, user))

    @staticmethod
    def _principal(s: Session, u: User) -> Principal:
        roles = {
            m.organization_id: m.role
            for m in s.scalars(select(Membership).where(Membership.user_id == u.id))
        }
        return Principal(
            user_id=u.id, name=u.name, sysadmin=u.sysadmin, auditor=u.auditor, roles=roles
        )
