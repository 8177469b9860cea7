"""The one access rule (catalogue.access) in its three forms — Python predicate, SQL clause
on SQLite and PostgreSQL, search-index mask — checked against its table, case by case;
and the "Access rules" section of docs/api.md checked against the same table.

The grant check here is a set of (organisation, dataset) pairs: the protocol the exchange
implements (the real exchange drives the same table in tests/test_access_surfaces.py)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pytest
from sqlalchemy import select

from catalogue import access
from catalogue.access import (
    TABLE,
    TABLE_ROLES,
    TABLE_STATES,
    DatasetFacts,
    IndexColumns,
    Principal,
    may_read,
    may_see,
    read_clause,
    see_clause,
    see_mask,
)
from catalogue.auth import Accounts
from catalogue.editing import render_packages
from catalogue.models import Dataset, Organization
from catalogue.registry import Catalogue

ROOT = Path(__file__).resolve().parents[1]
OWNER, OTHER, BUYER = "org-owner", "org-other", "org-buyer"


class SetGrants:
    """Live grants as a set of (organisation id, dataset id)."""

    def __init__(self, pairs: set[tuple[str, str]]) -> None:
        self.pairs = pairs

    def live(self, org_ids: Collection[str], dataset_id: str, version: int | None = None) -> bool:
        return any((o, dataset_id) in self.pairs for o in org_ids)

    def datasets(self, org_ids: Collection[str]) -> frozenset[str]:
        return frozenset(d for o, d in self.pairs if o in org_ids)


def facts_of(state: str) -> DatasetFacts:
    """The dataset of each row of the table (ids are the state names)."""
    kw = {
        "open": dict(access="open"),
        "private": dict(private=True),
        "draft": dict(state="draft"),
        "deleted": dict(state="deleted"),
    }.get(state, {})
    return DatasetFacts(
        **{"access": "restricted", **kw, "id": state, "name": state, "org_id": OWNER}
    )


# the buyer's live grants: bought before the seller hid or deleted the dataset, and "bought"
GRANTS = SetGrants({(BUYER, s) for s in ("private", "draft", "deleted", "bought")})

PRINCIPALS = {
    "anonymous": Principal(),
    "member": Principal("u1", "member", roles={OWNER: "member"}),
    "editor": Principal("u2", "editor", roles={OWNER: "editor"}),
    "admin": Principal("u3", "admin", roles={OWNER: "admin"}),
    "other_org": Principal("u4", "other", roles={OTHER: "admin"}),
    "auditor": Principal("u5", "auditor", auditor=True),
    "sysadmin": Principal("u6", "root", sysadmin=True),
    "buyer": Principal("u7", "buyer", roles={BUYER: "member"}),
}
CASES = [(role, state) for state in TABLE for role in TABLE_ROLES]


def expected(role: str, state: str) -> tuple[bool, bool]:
    cell = TABLE[state][role]
    return cell in ("see", "read"), cell == "read"


def test_table_covers_every_role_and_state():
    assert set(PRINCIPALS) == set(TABLE_ROLES)
    assert set(TABLE) == set(TABLE_STATES) == {
        "open", "restricted", "private", "draft", "deleted", "bought", "refunded", "expired",
    }  # fmt: skip
    for row in TABLE.values():
        assert set(row) == set(TABLE_ROLES) and set(row.values()) <= {"read", "see", "-"}


@pytest.mark.parametrize(("role", "state"), CASES)
def test_predicates(role, state):
    p, ds = PRINCIPALS[role], facts_of(state)
    see, read = expected(role, state)
    assert may_see(p, ds, GRANTS) is see
    assert may_read(p, ds, GRANTS) is read
    assert not read or see  # whoever reads sees


def test_without_the_exchange_a_buyer_is_any_other_organisation():
    buyer, other = PRINCIPALS["buyer"], PRINCIPALS["other_org"]
    for state in TABLE:
        ds = facts_of(state)
        assert may_see(buyer, ds) == may_see(other, ds)
        assert may_read(buyer, ds) == may_read(other, ds)


def test_role_sets_written_once():
    from exchange.actors import BUYER_ROLES, SELLER_ROLES

    assert SELLER_ROLES is access.EDIT_ROLES == {"admin", "editor"}
    assert BUYER_ROLES is access.MEMBER_ROLES == set(access.ROLES)
    for role in access.ROLES:
        p = Principal("u", "u", roles={OWNER: role})
        assert p.can_edit(OWNER) is (role in SELLER_ROLES)
        assert not p.can_edit(OTHER)


@pytest.fixture
def catalogue(database_url) -> Catalogue:
    cat = Catalogue(database_url)
    with cat.Session.begin() as s:
        for org in (OWNER, OTHER, BUYER):
            s.add(Organization(id=org, name=org, title=org, extras={}))
        s.flush()
        for state in TABLE:
            f = facts_of(state)
            s.add(
                Dataset(
                    id=f.id, name=f.name, title=f.name, domain="test", access=f.access,
                    private=f.private, state=f.state, organization_id=f.org_id, extras={},
                )
            )  # fmt: skip
    return cat


def test_sql_clauses_and_index_mask_agree_with_the_table(catalogue):
    with catalogue.Session() as s:
        docs = render_packages(s, list(s.scalars(select(Dataset).order_by(Dataset.id))))
    cols = IndexColumns.of([None, *docs, None])  # free slots are never seen
    for role, p in PRINCIPALS.items():
        granted = GRANTS.datasets(list(p.roles))
        with catalogue.Session() as s:
            seen = set(s.scalars(select(Dataset.id).where(see_clause(p, granted))))
            read = set(s.scalars(select(Dataset.id).where(read_clause(p, granted))))
        mask = see_mask(p, cols, granted)
        masked = {docs[i - 1]["id"] for i in range(len(mask)) if mask[i]}
        want_see = {st for st in TABLE if expected(role, st)[0]}
        want_read = {st for st in TABLE if expected(role, st)[1]}
        assert seen == want_see, role
        assert masked == want_see, role
        assert read == want_read, role


def test_organisation_counts_follow_the_rule(catalogue):
    """organization_list's package_count: active datasets the caller sees."""
    acc = Accounts(catalogue)
    for role, p in PRINCIPALS.items():
        granted = GRANTS.datasets(list(p.roles))
        counts = {o["name"]: o["package_count"] for o in acc.orgs(p, granted)}
        active = {st for st in TABLE if facts_of(st).state == "active"}
        want = sum(1 for st in active if expected(role, st)[0])
        assert counts[OWNER] == want, role
        assert acc.org_show(OWNER, p, granted)["package_count"] == want


def test_docs_show_the_table():
    """docs/api.md's "Access rules" section is generated from catalogue.access.TABLE:
    regenerate it with `make docs` (scripts/gen_access_docs.py)."""
    doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    begin, end = "<!-- access-table:begin -->\n", "<!-- access-table:end -->"
    assert begin in doc and end in doc
    shown = doc.split(begin, 1)[1].split(end, 1)[0]
    assert shown == access.table_markdown()
