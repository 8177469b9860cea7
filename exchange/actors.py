"""Who is acting: a user with roles in organisations, or the exchange operator.

Rules (checked in :mod:`exchange.trade`):

* a seller (admin or editor of the organisation that owns the dataset) creates and
  withdraws offers, confirms payments, grants access and refunds — on its own datasets only;
* a buyer (any member of the buying organisation) places orders and takes deliveries —
  on its own orders only;
* an auditor reads every record and changes nothing;
* a sysadmin (the exchange operator) may do anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalogue.access import ANONYMOUS, EDIT_ROLES, MEMBER_ROLES, Principal
from validation.messages import Msg, Term

from .errors import NotAllowed

# the catalogue's role sets, written once (catalogue.access): who edits a dataset sells it
SELLER_ROLES = EDIT_ROLES
BUYER_ROLES = MEMBER_ROLES


@dataclass(frozen=True)
class Actor:
    name: str
    roles: Mapping[str, str] = field(default_factory=dict)  # organisation name -> role
    sysadmin: bool = False
    auditor: bool = False
    reviewer: bool = False  # reviews data-resource registrations (exchange.registration)
    anonymous: bool = False  # a caller without an account (the web's anonymous visitor)

    @classmethod
    def operator(cls, name: str = "operator") -> Actor:
        return cls(name=name, sysadmin=True)

    @classmethod
    def for_org(cls, org: str, role: str = "admin", name: str | None = None) -> Actor:
        return cls(name=name or f"{org}:{role}", roles={org: role})

    @classmethod
    def auditor_(cls, name: str = "auditor") -> Actor:
        return cls(name=name, auditor=True)

    def can_read_all(self) -> bool:
        return self.sysadmin or self.auditor

    def _writable(self, what: str) -> None:
        if self.auditor and not self.sysadmin:
            raise NotAllowed(
                Msg(
                    "%(actor)s is an auditor: auditors read exchange records and cannot %(what)s",
                    actor=self.name,
                    what=what,
                ),
                hint=Msg("use an account of the selling or buying organisation"),
                actor=self.name,
            )

    def require(self, org: str, roles: frozenset[str], what: str) -> None:
        self._writable(what)
        if self.sysadmin:
            return
        if self.roles.get(org) not in roles:
            where = {"actor": self.name, "what": what, "org": repr(org)}
            raise NotAllowed(
                Msg("%(actor)s cannot %(what)s: only the seller organisation %(org)s may", **where)
                if roles == SELLER_ROLES
                else Msg(
                    "%(actor)s cannot %(what)s: only the buyer organisation %(org)s may", **where
                ),
                hint=Msg(
                    "act as an %(roles)s of %(org)s (CLI: --as %(name)s)",
                    roles=_roles(roles),
                    org=repr(org),
                    name=org,
                ),
                actor=self.name,
                organization=org,
            )

    def orgs(self) -> set[str]:
        return set(self.roles)


def _roles(roles: frozenset[str]) -> str:
    """'admin or editor': the roles, named in the reader's language on the portal."""
    r = [Term(x, "role") for x in sorted(roles)]
    if len(r) == 1:
        return r[0]
    if len(r) == 2:
        return Msg("%(a)s or %(b)s", a=r[0], b=r[1])
    if len(r) == 3:
        return Msg("%(a)s or %(b)s or %(c)s", a=r[0], b=r[1], c=r[2])
    return " or ".join(r)


def actor_for_user(s: Session, user_name: str) -> Actor:
    """An :class:`Actor` for a registered user (catalogue accounts, migration 0002)."""
    from catalogue.models import Membership, Organization, User

    user = s.scalar(select(User).where(User.name == user_name))
    if user is None or user.state != "active":
        raise NotAllowed(
            Msg("no active user %(user)s", user=repr(user_name)),
            hint=Msg("create it with `nsdx user create`"),
            actor=user_name,
        )
    rows = s.execute(
        select(Organization.name, Membership.role)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(Membership.user_id == user.id)
    ).all()
    return Actor(
        name=user.name,
        roles={o: r for o, r in rows},
        sysadmin=user.sysadmin,
        auditor=user.auditor,
        reviewer=user.reviewer,
    )


def principal_of(s: Session, actor: Actor | None) -> Principal:
    """The catalogue's principal for an exchange actor (roles keyed by organisation id), for
    the catalogue's one access rule (:mod:`catalogue.access`); ``None``: anonymous."""
    from catalogue.models import Organization

    if actor is None or actor.anonymous:
        return ANONYMOUS
    ids = dict(
        s.execute(
            select(Organization.name, Organization.id).where(
                Organization.name.in_(list(actor.roles))
            )
        ).all()
    )
    roles = {ids[n]: r for n, r in actor.roles.items() if n in ids}
    return Principal(actor.name, actor.name, actor.sysadmin, actor.auditor, roles)
